"""The listening test in a real headless browser (Debian's chromium + chromedriver through selenium).

Two raters complete a small study over a real server; one reloads mid-way, closes the browser and comes
back; the tally equals the clicks made (mapped to systems through study.json, not through the server);
audio really plays. RR_LISTEN_SCREENSHOT=PATH keeps a screenshot of a trial page there.
"""
import os
import shutil
import tempfile
import threading
import time
import typing as tp
from pathlib import Path

import pytest

from listen_fixtures import token_systems, write_systems
from rr_audiocraft.listen import prepare_study
from rr_audiocraft.listen.app import create_app
from rr_audiocraft.listen.study import Study
from rr_audiocraft.listen.tally import format_tally, tally

# Debian's packages, which `make install` installs: a missing browser is a failed install, not a skip.
CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
CAPTIONS = ['a dog barks twice', 'rain on a tin roof', 'a bell rings <b>loudly</b>']


@pytest.fixture(scope='module')
def served(tmp_path_factory) -> tp.Iterator[tp.Tuple[str, Path]]:
    """A 2-system, 3-prompt study with one catch trial, served by werkzeug on a free port."""
    from werkzeug.serving import make_server
    root = tmp_path_factory.mktemp('listen_browser')
    study = prepare_study(write_systems(root, CAPTIONS, seconds=0.4), root / 'study', catch_trials=1, seed=1)
    server = make_server('127.0.0.1', 0, create_app(study), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_port}', study
    server.shutdown()


def open_browser() -> tp.Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix='rr_listen_chromium_')
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ['--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync',
                 f'--user-data-dir={profile}', '--autoplay-policy=no-user-gesture-required', '--mute-audio',
                 '--window-size=1000,760']:
        options.add_argument(flag)
    # The driver path is given: Selenium Manager would otherwise try to download one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver._rr_profile = profile
    return driver


def close_browser(driver) -> None:
    driver.quit()
    shutil.rmtree(driver._rr_profile, ignore_errors=True)


def wait_for(driver, script: str, timeout: float = 10.0) -> tp.Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


def sign_in(driver, url: str, name: str) -> None:
    from selenium.webdriver.common.by import By
    driver.get(url + '/')
    field = driver.find_element(By.NAME, 'rater')
    field.clear()
    field.send_keys(name)
    driver.find_element(By.CSS_SELECTOR, '[data-action="start"]').click()
    wait_for(driver, "return document.querySelector('[data-trial]') !== null")


def play_both(driver) -> None:
    """Play slot 1 then slot 2 to the end, checking that time advances; the answers unlock only then."""
    buttons = "document.querySelectorAll('button[data-choice]')"
    for slot in ('1', '2'):
        assert driver.execute_script(f"return Array.from({buttons}).every(b => b.disabled)")
        driver.execute_script(f"document.querySelector('audio[data-slot=\"{slot}\"]').play()")
        wait_for(driver, f"return document.querySelector('audio[data-slot=\"{slot}\"]').ended")
        assert driver.execute_script(f"return document.querySelector('audio[data-slot=\"{slot}\"]').currentTime") > 0.3
    wait_for(driver, f"return Array.from({buttons}).every(b => !b.disabled)")


def answer(driver, decide: tp.Callable[[tp.List[str], str], int], clicks: tp.List[dict], rater: str) -> str:
    """Play, click the slot `decide(tokens, caption)` picks, record the click, wait for the next page."""
    from selenium.webdriver.common.by import By
    trial = driver.execute_script("return document.querySelector('[data-trial]').dataset.trial")
    tokens = driver.execute_script(
        "return Array.from(document.querySelectorAll('audio[data-slot]')).map(a => a.src.split('/').pop())")
    caption = driver.find_element(By.CSS_SELECTOR, 'blockquote.prompt').text
    play_both(driver)
    slot = decide(tokens, caption)
    driver.find_element(By.CSS_SELECTOR, f'button[data-choice="{slot + 1}"]').click()
    clicks.append({'rater': rater, 'trial': trial, 'token': tokens[slot]})
    wait_for(driver, f"return !document.querySelector('[data-trial=\"{trial}\"]')")
    return trial


def test_two_raters_in_a_real_browser(served):
    url, study = served
    to_system = token_systems(study)
    total = len(Study(study).trials)
    clicks: tp.List[dict] = []
    captions = Study(study).captions

    def attentive(tokens: tp.List[str], caption: str) -> int:
        """Rater 1 picks the rr clip, and on a catch trial (one system twice) the clip of the shown caption."""
        (system_1, prompt_1), (system_2, _) = to_system[tokens[0]], to_system[tokens[1]]
        if system_1 == system_2:
            return 0 if captions[prompt_1] == caption else 1
        return [system_1, system_2].index('rr')

    left = lambda tokens, caption: 0  # noqa: E731  (rater 2 always takes the left clip)
    driver = open_browser()
    try:
        sign_in(driver, url, 'ana')
        assert driver.find_element('css selector', 'blockquote.prompt').text in CAPTIONS  # <b> shown as text
        screenshot = os.environ.get('RR_LISTEN_SCREENSHOT')
        if screenshot:  # once both clips know their length and clip 1 has played: answers still locked
            wait_for(driver, "return Array.from(document.querySelectorAll('audio')).every(a => a.readyState >= 1)")
            driver.execute_script("document.querySelector('audio[data-slot=\"1\"]').play()")
            wait_for(driver, "return document.querySelector('audio[data-slot=\"1\"]').ended")
            driver.save_screenshot(screenshot)
        for _ in range(total):
            answer(driver, attentive, clicks, 'ana')
        assert 'Thank you' in driver.page_source
    finally:
        close_browser(driver)

    driver = open_browser()
    try:
        sign_in(driver, url, 'ben')
        answer(driver, left, clicks, 'ben')
        shown = driver.execute_script("return document.querySelector('[data-trial]').dataset.trial")
        driver.refresh()  # a reload mid-way: the same trial again, progress kept
        wait_for(driver, "return document.querySelector('[data-trial]') !== null")
        assert driver.execute_script("return document.querySelector('[data-trial]').dataset.trial") == shown
        assert driver.execute_script("return document.querySelector('progress').value") == 1
        answer(driver, left, clicks, 'ben')
    finally:
        close_browser(driver)
    driver = open_browser()  # the tab closed for good: a new browser, the same name resumes
    try:
        sign_in(driver, url, 'ben')
        assert f'Pair 3 of {total}' in driver.page_source
        while driver.execute_script("return document.querySelector('[data-trial]') !== null"):
            answer(driver, left, clicks, 'ben')
        assert 'Thank you' in driver.page_source
    finally:
        close_browser(driver)

    assert len(clicks) == 2 * total and len({(c['rater'], c['trial']) for c in clicks}) == 2 * total
    result = tally(study, bootstrap=200)
    catch_ids = {tid for tid, trial in Study(study).trials.items() if trial['kind'] == 'catch'}
    expected = {'baseline': 0, 'rr': 0}
    for click in clicks:
        if click['trial'] not in catch_ids:
            expected[to_system[click['token']][0]] += 1
    (comparison,) = result['all_raters']['comparisons']
    assert comparison['wins'] == expected and comparison['ties'] == 0
    assert {a['rater'] for a in result['answers']} == {'ana', 'ben'} and len(result['answers']) == 2 * total
    assert result['catch_trials']['per_rater']['ana'] == {'answered': 1, 'missed': 0}
    report = os.environ.get('RR_LISTEN_REPORT')
    if report:
        Path(report).write_text(format_tally(result))
