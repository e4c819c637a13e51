"""The rater's web page: a small Flask app over a prepared study (`python -m rr_audiocraft.listen serve`).

Pages: `/` (name, instructions, and the access code when one is set), `/trial` (the rater's next
unanswered trial: a reload or a closed tab resumes there), `/done`. `/api/answer` stores one answer;
`/audio/TOKEN` sends a clip by its opaque token, with HTTP Range. Blindness: no page, URL or header
carries a system name, a source path or whether a trial is a catch trial; the systems are resolved on
the server when an answer arrives. Everything the page needs ships in this package (no CDN), and a
Content-Security-Policy keeps the page to its own origin.
"""
import hmac
import hashlib
import os
import re
import secrets
import typing as tp
from datetime import timedelta
from pathlib import Path

from flask import Flask, abort, jsonify, redirect, render_template, request, send_file, session, url_for

from .plan import draw_plan, slots
from .storage import Storage
from .study import ANSWERS_FILE, Study

SECRET_FILE = 'secret_key'  # signs the rater cookie; kept in the study so a restarted server resumes raters
MAX_RATER_NAME = 64
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; media-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
# The only pages reachable without the access code: the form that asks for it.
OPEN_ENDPOINTS = {'index', 'start'}


def _secret_key(folder: Path) -> bytes:
    path = folder / SECRET_FILE
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, 'wb') as file:
                file.write(secrets.token_bytes(32))
        except FileExistsError:  # another server process made it first
            pass
    return path.read_bytes()


def _code_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def clean_rater_name(name: str) -> str:
    """A typed name as the rater id: printable, single spaces, at most 64 characters; '' when nothing is left."""
    name = re.sub(r'\s+', ' ', ''.join(c for c in name if c.isprintable())).strip()
    return name[:MAX_RATER_NAME]


def create_app(study_dir: tp.Union[str, Path], access_code: tp.Optional[str] = None) -> Flask:
    """The Flask app serving one study.

    Args:
        study_dir (Path): A folder made by `prepare_study`.
        access_code (str, optional): When set, nothing but the form asking for it is served without it.
    """
    study = Study(study_dir)
    storage = Storage(study.folder / ANSWERS_FILE)
    app = Flask(__name__, static_folder='static', template_folder='templates')
    app.config.update(SECRET_KEY=_secret_key(study.folder), SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE='Strict', SESSION_COOKIE_NAME='rr_listen',
                      PERMANENT_SESSION_LIFETIME=timedelta(days=30), SEND_FILE_MAX_AGE_DEFAULT=0)
    app.extensions['rr_listen'] = {'study': study, 'storage': storage}
    needed = _code_digest(access_code) if access_code else None

    def has_access() -> bool:
        return needed is None or hmac.compare_digest(session.get('access', ''), needed)

    def plan_of(rater: str) -> tp.List[dict]:
        return storage.rater_plan(rater, lambda: draw_plan(study, rater))

    @app.before_request
    def check_access():
        if not has_access() and request.endpoint not in OPEN_ENDPOINTS:
            abort(403)

    @app.after_request
    def security_headers(response):
        response.headers['Content-Security-Policy'] = CSP
        response.headers['X-Content-Type-Options'] = 'nosniff'
        response.headers['Referrer-Policy'] = 'no-referrer'
        if response.mimetype == 'text/html' or request.path.startswith('/api/'):
            response.headers['Cache-Control'] = 'no-store'
        return response

    @app.get('/')
    def index():
        return render_template('start.html', rater=session.get('rater', ''), ask_code=not has_access(),
                               num_trials=len(study.trials), ties=study.ties, question=study.question,
                               error=None)

    @app.post('/start')
    def start():
        if needed is not None:
            code = request.form.get('code', '')
            if not hmac.compare_digest(_code_digest(code), needed) and not has_access():
                return render_template('start.html', rater='', ask_code=True, num_trials=len(study.trials),
                                       ties=study.ties, question=study.question,
                                       error="That access code is not right."), 403
            session['access'] = needed
        rater = clean_rater_name(request.form.get('rater', '')) or f'rater-{secrets.token_hex(4)}'
        session['rater'] = rater
        session.permanent = True
        plan_of(rater)
        return redirect(url_for('trial'), code=303)

    @app.get('/trial')
    def trial():
        rater = session.get('rater')
        if not rater:
            return redirect(url_for('index'))
        plan = plan_of(rater)
        answered = storage.answered(rater)
        position = next((i for i, step in enumerate(plan) if step['trial'] not in answered), None)
        if position is None:
            return redirect(url_for('done'))
        step = plan[position]
        shown = study.trials[step['trial']]
        first, second = slots(step)
        return render_template('trial.html', trial_id=step['trial'], position=position + 1, total=len(plan),
                               done=len(answered), caption=study.captions[shown['prompt']],
                               tokens=[shown['tokens'][first], shown['tokens'][second]],
                               ties=study.ties, question=study.question)

    @app.post('/api/answer')
    def answer():
        rater = session.get('rater')
        if not rater:
            return jsonify(error="no rater: start from the first page"), 401
        payload = request.get_json(silent=True) or {}
        plan = plan_of(rater)
        position = next((i for i, step in enumerate(plan) if step['trial'] == payload.get('trial')), None)
        if position is None:
            return jsonify(error="no such trial"), 404
        choice = payload.get('choice')
        allowed = ('1', '2', 'tie') if study.ties else ('1', '2')
        if choice not in allowed:
            return jsonify(error=f"choice must be one of {', '.join(allowed)}"), 400
        elapsed = payload.get('elapsed_s')
        elapsed = float(elapsed) if isinstance(elapsed, (int, float)) and 0 <= elapsed < 1e6 else None
        step = plan[position]
        shown = study.trials[step['trial']]
        first, second = slots(step)
        side = {'1': 'left', '2': 'right', 'tie': 'tie'}[choice]
        correct = None
        if shown['kind'] == 'catch':  # the trial's first clip is the one of the shown prompt
            correct = int(side != 'tie' and (first if side == 'left' else second) == 0)
        stored = storage.add_answer({
            'rater': rater, 'trial': step['trial'], 'position': position, 'kind': shown['kind'],
            'prompt': shown['prompt'], 'system_left': shown['systems'][first],
            'system_right': shown['systems'][second], 'choice': side, 'correct': correct, 'elapsed_s': elapsed})
        remaining = len(plan) - len(storage.answered(rater))
        return jsonify(stored=stored, remaining=remaining, next=url_for('trial') if remaining else url_for('done'))

    @app.get('/done')
    def done():
        rater = session.get('rater')
        if not rater:
            return redirect(url_for('index'))
        return render_template('done.html', answered=len(storage.answered(rater)), total=len(plan_of(rater)))

    @app.get('/audio/<token>')
    def audio(token: str):
        path = study.audio.get(token)
        if path is None or not path.is_file():
            abort(404)
        return send_file(path, mimetype='audio/wav', conditional=True, download_name=f'{token}.wav', max_age=0)

    return app


def serve(study_dir: tp.Union[str, Path], host: str = '127.0.0.1', port: int = 8000,
          access_code: tp.Optional[str] = None) -> None:
    """Serve a study until interrupted (threaded: several raters at once)."""
    from werkzeug.serving import run_simple
    app = create_app(study_dir, access_code)
    if host not in ('127.0.0.1', 'localhost', '::1'):
        print(f"[listen] serving on {host}: reachable from other machines"
              + ("" if access_code else " by anyone (consider --access-code)"))
    print(f"[listen] raters open http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/ ; "
          f"answers go to {Path(study_dir) / ANSWERS_FILE} as they are given; Ctrl-C stops")
    run_simple(host, port, app, threaded=True)
