// The trial page: both clips must play to the end before an answer can be given; one clip plays at a
// time; the answer is posted as JSON and the next unanswered trial is loaded. No other script, no CDN.
(function () {
  'use strict';
  var trial = document.querySelector('[data-trial]');
  if (!trial) { return; }
  var shownAt = performance.now();
  var players = Array.prototype.slice.call(trial.querySelectorAll('audio[data-slot]'));
  var buttons = Array.prototype.slice.call(trial.querySelectorAll('button[data-choice]'));
  var hint = trial.querySelector('[data-hint]');
  var error = trial.querySelector('[data-error]');
  var played = {};
  var sending = false;

  function updateButtons() {
    var ready = players.every(function (p) { return played[p.dataset.slot]; });
    buttons.forEach(function (b) { b.disabled = !ready || sending; });
    if (hint) { hint.hidden = ready; }
  }

  players.forEach(function (player) {
    player.addEventListener('play', function () {
      players.forEach(function (other) { if (other !== player) { other.pause(); } });
    });
    player.addEventListener('ended', function () {
      played[player.dataset.slot] = true;
      var mark = trial.querySelector('[data-played-for="' + player.dataset.slot + '"]');
      if (mark) { mark.textContent = 'played'; mark.classList.add('done'); }
      updateButtons();
    });
  });

  buttons.forEach(function (button) {
    button.addEventListener('click', function () {
      if (sending) { return; }
      sending = true;
      updateButtons();
      players.forEach(function (p) { p.pause(); });
      fetch('/api/answer', {
        method: 'POST',
        credentials: 'same-origin',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({
          trial: trial.dataset.trial,
          choice: button.dataset.choice,
          elapsed_s: (performance.now() - shownAt) / 1000
        })
      }).then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) { throw new Error(body.error || response.statusText); }
          window.location.replace(body.next);
        });
      }).catch(function (err) {
        sending = false;
        error.hidden = false;
        error.textContent = 'Your answer could not be saved (' + err.message + '). Please try again.';
        updateButtons();
      });
    });
  });
  updateButtons();
})();
