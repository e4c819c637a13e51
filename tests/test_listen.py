"""The listening test without a browser: prepare's checks, the page's API, storage and security rules
(Flask test client), each rater's plan, the statistics and the tally."""
import json
import re
import sqlite3
import threading
import typing as tp
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from listen_fixtures import token_systems, write_system, write_systems
from rr_audiocraft.listen import prepare_study
from rr_audiocraft.listen.__main__ import main as listen_main
from rr_audiocraft.listen.app import create_app
from rr_audiocraft.listen.stats import binomial_summary, bradley_terry, cluster_bootstrap, fleiss_kappa
from rr_audiocraft.listen.storage import Storage
from rr_audiocraft.listen.study import Study
from rr_audiocraft.listen.tally import format_tally, tally, write_results

CAPTIONS = ['a dog barks twice', 'rain on a tin roof', 'a bell rings <script>alert(1)</script>', 'wind & birds']


def run_listen(argv: tp.List[str], capsys) -> tp.Tuple[int, str, str]:
    return run_cli(listen_main, argv, capsys)


@pytest.fixture
def systems(tmp_path) -> tp.Dict[str, Path]:
    return write_systems(tmp_path, CAPTIONS)


@pytest.fixture
def study(tmp_path, systems) -> Path:
    return prepare_study(systems, tmp_path / 'study', catch_trials=2, seed=3)


def start(app, rater: str, **form) -> tp.Any:
    client = app.test_client()
    response = client.post('/start', data={'rater': rater, **form})
    assert response.status_code == 303, response.status_code
    return client


def current_trial(client) -> tp.Tuple[str, tp.List[str], str]:
    """(trial id, the two clip tokens in slot order, html) of the rater's current trial page."""
    html = client.get('/trial').get_data(as_text=True)
    trial = re.search(r'data-trial="([^"]+)"', html).group(1)
    tokens = re.findall(r'<audio data-slot="\d" src="/audio/([^"]+)"', html)
    return trial, tokens, html


# --- prepare -------------------------------------------------------------------------------------------------

def test_prepare_writes_a_blind_study(study, systems):
    data = json.loads((study / 'study.json').read_text())
    assert data['systems'] == ['baseline', 'rr'] and not data['ties']
    kinds = [trial['kind'] for trial in data['trials']]
    assert kinds.count('pair') == len(CAPTIONS) and kinds.count('catch') == 2
    audio = sorted(p.name for p in (study / 'audio').iterdir())
    assert len(audio) == 2 * len(CAPTIONS)
    for name in audio:  # file names are the opaque tokens, nothing of the source name or system survives
        assert re.fullmatch(r'[A-Za-z0-9_-]{24}\.wav', name) and 'baseline' not in name and '000' not in name
    for trial in data['trials']:
        if trial['kind'] == 'catch':  # same system, the foil from another prompt
            (sys_a, prompt_a), (sys_b, prompt_b) = trial['clips']
            assert sys_a == sys_b and prompt_a == trial['prompt'] != prompt_b


@pytest.mark.parametrize('breakage, named', [
    ('missing', 'clips_rr'), ('extra', '004.wav'), ('not_audio', '001.wav'), ('mismatched', '002.json'),
    ('no_caption', '003.wav'),
])
def test_prepare_refuses_bad_input_naming_the_file(tmp_path, systems, capsys, breakage, named):
    rr = systems['rr']
    if breakage == 'missing':
        (rr / '001.wav').unlink()
    elif breakage == 'extra':
        write_system(tmp_path / 'more', CAPTIONS + ['one more'], 440.0)
        (tmp_path / 'more' / '004.wav').rename(rr / '004.wav')
        (tmp_path / 'more' / '004.json').rename(rr / '004.json')
    elif breakage == 'not_audio':
        (rr / '001.wav').write_text('this is not audio')
    elif breakage == 'mismatched':
        (rr / '002.json').write_text(json.dumps({'description': 'something else'}))
    elif breakage == 'no_caption':
        for folder in systems.values():
            (folder / '003.json').unlink()
    out = tmp_path / 'study'
    code, stdout, err = run_listen(['prepare', '--system', f'baseline={systems["baseline"]}', '--system', f'rr={rr}',
                                 '--out', str(out)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and named in lines[0], err
    assert not out.exists()  # checked before any work


def test_prepare_captions_from_prompts_file_and_options(tmp_path, capsys):
    # Names as `rr_audiocraft.generate` writes them, captions only in a prompts file.
    from rr_audiocraft.generate import file_stem
    folders = {}
    for name in ('a', 'b', 'c'):
        folder = write_system(tmp_path / name, CAPTIONS, 300.0)
        for index, caption in enumerate(CAPTIONS):
            (folder / f'{index:03d}.json').unlink()
            (folder / f'{index:03d}.wav').rename(folder / f'{file_stem(index, caption)}.wav')
        folders[name] = folder
    prompts = tmp_path / 'prompts.txt'
    prompts.write_text('\n'.join(CAPTIONS) + '\n\n')
    out = tmp_path / 'study'
    code, stdout, err = run_listen(['prepare', *[arg for n, f in folders.items() for arg in ('--system', f'{n}={f}')],
                                 '--prompts', str(prompts), '--num-prompts', '3', '--catch', '1', '--ties',
                                 '--out', str(out)], capsys)
    assert code == 0, err
    made = Study(out)
    assert made.ties and len(made.captions) == 3 and set(made.captions.values()) <= set(CAPTIONS)
    assert sum(t['kind'] == 'pair' for t in made.trials.values()) == 3 * 3  # 3 prompts x 3 system pairs
    # An existing study is never overwritten.
    code, _, err = run_listen(['prepare', '--system', f'a={folders["a"]}', '--system', f'b={folders["b"]}',
                            '--prompts', str(prompts), '--out', str(out)], capsys)
    assert code == 2 and 'already holds a study' in err


def test_prepare_from_models_checks_before_generating(tmp_path, capsys):
    prompts = tmp_path / 'prompts.txt'
    prompts.write_text('a dog barks\n')
    out = tmp_path / 'study'
    code, _, err = run_listen(['prepare', '--from-models', 'A=debug', 'B=//sig/doesnotexist', '--prompts', str(prompts),
                            '--out', str(out)], capsys)
    assert code == 2 and "system 'B'" in err and 'doesnotexist' in err and not out.exists()
    code, _, err = run_listen(['prepare', '--from-models', 'A=debug', 'B=debug',
                               '--prompts', str(tmp_path / 'nope.txt'), '--out', str(out)], capsys)
    assert code == 2 and 'nope.txt' in err and not out.exists()


# --- the page ------------------------------------------------------------------------------------------------

def test_pages_never_reveal_systems_and_escape_captions(study, systems):
    app = create_app(study)
    client = start(app, 'alice')
    secrets_of_study = ['baseline', 'clips_', str(study), 'study.json'] + [str(p) for p in systems.values()]
    seen = 0
    while True:
        response = client.get('/trial')
        if response.status_code != 200:
            break
        html = response.get_data(as_text=True)
        for secret in secrets_of_study:
            assert secret not in html
        assert '<script>alert' not in html  # the caption shows as text
        if 'a bell rings' in html:
            assert '&lt;script&gt;alert(1)&lt;/script&gt;' in html
        assert "script-src 'self'" in response.headers['Content-Security-Policy']
        trial, tokens, _ = current_trial(client)
        for token in tokens:
            audio = client.get(f'/audio/{token}')
            assert audio.status_code == 200 and audio.mimetype == 'audio/wav'
            assert not any(s in audio.headers.get('Content-Disposition', '') for s in secrets_of_study)
        assert client.post('/api/answer', json={'trial': trial, 'choice': '1'}).status_code == 200
        seen += 1
    assert seen == len(Study(study).trials)
    assert client.get('/done').status_code == 200


def test_audio_range_and_unknown_paths(study):
    app = create_app(study)
    client = start(app, 'alice')
    _, tokens, _ = current_trial(client)
    whole = client.get(f'/audio/{tokens[0]}').data
    part = client.get(f'/audio/{tokens[0]}', headers={'Range': 'bytes=100-199'})
    assert part.status_code == 206 and part.data == whole[100:200]
    assert part.headers['Content-Range'] == f'bytes 100-199/{len(whole)}'
    guessed = tokens[0][:-1] + ('A' if tokens[0][-1] != 'A' else 'B')
    for path in [f'/audio/{guessed}', '/audio/..%2Fstudy.json', '/audio/../study.json', '/audio/%2e%2e',
                 '/static/../study.json', '/static/..%2Fstudy.json', '/study.json', '/audio/secret_key',
                 '/static/../../listen/study.py']:
        assert client.get(path).status_code == 404, path


def test_answers_stored_once_and_validated(study):
    app = create_app(study)
    client = start(app, 'alice')
    trial, _, _ = current_trial(client)
    assert client.post('/api/answer', json={'trial': trial, 'choice': 'tie'}).status_code == 400  # ties off
    assert client.post('/api/answer', json={'trial': trial, 'choice': '3'}).status_code == 400
    assert client.post('/api/answer', json={'trial': 'nope', 'choice': '1'}).status_code == 404
    assert app.test_client().post('/api/answer', json={'trial': trial, 'choice': '1'}).status_code == 401
    first = client.post('/api/answer', json={'trial': trial, 'choice': '2', 'elapsed_s': 3.5}).get_json()
    again = client.post('/api/answer', json={'trial': trial, 'choice': '1'}).get_json()
    assert first['stored'] and not again['stored'] and again['remaining'] == first['remaining']
    rows = Storage(study / 'answers.sqlite').answers()
    assert len(rows) == 1 and rows[0]['choice'] == 'right' and rows[0]['elapsed_s'] == 3.5
    # The next page is the next trial; a restarted server (new app) resumes the same rater there.
    next_trial, _, _ = current_trial(client)
    assert next_trial != trial
    assert current_trial(client)[0] == next_trial  # a reload shows the same trial
    restarted = create_app(study)
    with restarted.test_client() as other:
        other.set_cookie('rr_listen', client.get_cookie('rr_listen').value)
        assert current_trial(other)[0] == next_trial
    # Typing the same name again (another browser) resumes too.
    assert current_trial(start(restarted, 'alice'))[0] == next_trial
    with sqlite3.connect(study / 'answers.sqlite') as db:
        assert db.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("INSERT INTO answers SELECT * FROM answers")


def test_concurrent_raters_lose_nothing(study):
    app = create_app(study)
    total = len(Study(study).trials)
    errors = []

    def rate(name: str) -> None:
        try:
            client = start(app, name)
            for _ in range(total):
                trial, _, _ = current_trial(client)
                for _ in range(2):  # every answer sent twice: must count once
                    assert client.post('/api/answer', json={'trial': trial, 'choice': '1'}).status_code == 200
        except Exception as error:  # reported in the main thread
            errors.append(error)

    threads = [threading.Thread(target=rate, args=(f'r{i}',)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    rows = Storage(study / 'answers.sqlite').answers()
    assert len(rows) == 6 * total and len({(r['rater'], r['trial']) for r in rows}) == 6 * total


def test_access_code_guards_everything(study):
    app = create_app(study, access_code='letmein')
    client = app.test_client()
    assert 'name="code"' in client.get('/').get_data(as_text=True)
    for path in ['/trial', '/done', '/static/listen.js', '/static/listen.css']:
        assert client.get(path).status_code == 403, path
    assert client.post('/api/answer', json={'trial': 'x', 'choice': '1'}).status_code == 403
    assert client.post('/start', data={'rater': 'eve', 'code': 'wrong'}).status_code == 403
    assert client.get('/trial').status_code == 403
    assert client.post('/start', data={'rater': 'ann', 'code': 'letmein'}).status_code == 303
    _, tokens, _ = current_trial(client)
    assert client.get(f'/audio/{tokens[0]}').status_code == 200
    assert app.test_client().get(f'/audio/{tokens[0]}').status_code == 403


def test_serve_binds_localhost_by_default():
    import inspect
    from rr_audiocraft.listen.__main__ import get_parser
    from rr_audiocraft.listen.app import serve
    assert inspect.signature(serve).parameters['host'].default == '127.0.0.1'
    assert get_parser().parse_args(['serve', 'x']).host == '127.0.0.1'


def test_plan_random_order_and_counterbalanced_sides(tmp_path):
    systems = write_systems(tmp_path, [f'caption {i}' for i in range(10)], seconds=0.05)
    study = prepare_study(systems, tmp_path / 'study', catch_trials=4)
    app = create_app(study)
    orders = []
    for rater in ('a', 'b', 'c'):
        client = start(app, rater)
        plan = app.extensions['rr_listen']['storage'].rater_plan(rater, lambda: pytest.fail('plan not stored'))
        data = Study(study)
        pair_swaps = [step['swap'] for step in plan if data.trials[step['trial']]['kind'] == 'pair']
        catch_swaps = [step['swap'] for step in plan if data.trials[step['trial']]['kind'] == 'catch']
        assert sum(pair_swaps) == 5 and sum(catch_swaps) == 2  # half on each side, per rater
        orders.append([step['trial'] for step in plan])
        # The page follows the plan: the first trial, with the clips on the planned sides.
        trial, tokens, _ = current_trial(client)
        first = plan[0]
        shown = data.trials[first['trial']]['tokens']
        assert trial == first['trial'] and tokens == (shown[::-1] if first['swap'] else shown)
    assert len({tuple(order) for order in orders}) == 3


# --- statistics and tally ------------------------------------------------------------------------------------

def test_statistics_known_values():
    # The research note's example: 107/160 answers, but a 13/20 prompt majority.
    assert binomial_summary(107, 160)['p_value'] == pytest.approx(2.4e-5, rel=0.05)
    assert binomial_summary(13, 20)['p_value'] == pytest.approx(0.263, abs=0.001)
    # Wilson's interval by its formula.
    share, n, z = 107 / 160, 160, 1.959964
    center = (share + z ** 2 / (2 * n)) / (1 + z ** 2 / n)
    half = z / (1 + z ** 2 / n) * np.sqrt(share * (1 - share) / n + z ** 2 / (4 * n ** 2))
    summary = binomial_summary(107, 160)
    assert summary['ci_low'] == pytest.approx(center - half, abs=1e-5)
    assert summary['ci_high'] == pytest.approx(center + half, abs=1e-5)
    # Fleiss' kappa, the worked example of Fleiss (1971) as on Wikipedia: 10 items, 14 raters, 5 categories.
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                      [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=1e-3)
    assert fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0]])) == pytest.approx(1.0)
    # Bradley-Terry: two systems give the win share; three satisfy the likelihood equations.
    strength = bradley_terry(np.array([[0, 3], [7, 0]]))
    assert strength[1] / strength.sum() == pytest.approx(0.7)
    wins = np.array([[0, 6, 8], [4, 0, 7], [2, 3, 0]], dtype=float)
    p = bradley_terry(wins)
    games = wins + wins.T
    expected = (games * p[:, None] / (p[:, None] + p[None, :])).sum(axis=1)
    assert np.allclose(expected, wins.sum(axis=1), atol=1e-6) and p[0] > p[1] > p[2]


def test_bootstrap_widens_for_clustered_answers():
    # 4 raters x 10 prompts: two raters always prefer the system, two never: answers are not independent.
    raters = [r for r in range(4) for _ in range(10)]
    prompts = [p for _ in range(4) for p in range(10)]
    wins = [int(r < 2) for r in raters]
    low, high = cluster_bootstrap(raters, prompts, wins, num_samples=2000, seed=0)
    wilson = binomial_summary(sum(wins), len(wins))
    assert high - low > 1.5 * (wilson['ci_high'] - wilson['ci_low'])
    assert cluster_bootstrap(raters, prompts, [1] * len(raters)) == (1.0, 1.0)


def test_tally_counts_answers_catch_failures_and_exports(study, tmp_path):
    app = create_app(study)
    tokens_to = token_systems(study)
    data = Study(study)
    expected = {'alice': {'baseline': 0, 'rr': 0}, 'bob': {'baseline': 0, 'rr': 0}}
    for rater in ('alice', 'bob'):
        client = start(app, rater)
        while client.get('/trial').status_code == 200:
            trial, tokens, _ = current_trial(client)
            kind = data.trials[trial]['kind']
            if kind == 'catch':  # alice finds the clip of the prompt, bob picks the foil
                right = [tokens_to[t][1] for t in tokens].index(data.trials[trial]['prompt'])
                slot = right if rater == 'alice' else 1 - right
            else:  # alice prefers rr, bob the clip on the left
                slot = [tokens_to[t][0] for t in tokens].index('rr') if rater == 'alice' else 0
                expected[rater][tokens_to[tokens[slot]][0]] += 1
            client.post('/api/answer', json={'trial': trial, 'choice': str(slot + 1), 'elapsed_s': 1.0})
    result = tally(study, bootstrap=200)
    (comparison,) = result['all_raters']['comparisons']
    assert comparison['wins'] == {s: expected['alice'][s] + expected['bob'][s] for s in ('baseline', 'rr')}
    assert result['catch_trials']['failed_raters'] == ['bob']
    assert result['catch_trials']['per_rater'] == {'alice': {'answered': 2, 'missed': 0},
                                                   'bob': {'answered': 2, 'missed': 2}}
    (kept,) = result['without_failed_raters']['comparisons']
    assert kept['wins'] == expected['alice'] and kept['preference']['rr'] == 1.0
    assert result['all_raters']['position_bias']['left_choices'] == len(CAPTIONS) + sum(
        1 for a in result['answers'] if a['rater'] == 'alice' and a['kind'] == 'pair' and a['choice'] == 'left')
    paths = write_results(result, tmp_path / 'results')
    import csv
    with paths['answers.csv'].open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2 * len(data.trials) == len(json.loads(paths['answers.json'].read_text()))
    assert {'rater', 'prompt', 'caption', 'system_left', 'system_right', 'choice', 'chosen',
            'elapsed_s'} <= set(rows[0])
    report = format_tally(result)
    assert 'baseline vs rr' in report and 'failed: bob' in report and "Fleiss' kappa" in report


def test_prepare_from_models_generates_with_the_project_loader(tmp_path, capsys, one_torch_thread):
    # AudioCraft's tiny random `debug` model, built offline: what matters is the path through the loader.
    prompts = tmp_path / 'prompts.txt'
    prompts.write_text('a dog barks\nrain on a roof\n')
    out = tmp_path / 'study'
    code, stdout, err = run_listen(['prepare', '--from-models', 'A=debug', 'B=debug', '--prompts', str(prompts),
                                 '--duration', '0.5', '--catch', '1', '--out', str(out)], capsys)
    assert code == 0, err
    made = Study(out)
    assert sorted(made.captions.values()) == ['a dog barks', 'rain on a roof'] and len(made.trials) == 3
    assert json.loads((out / 'generated' / 'A' / 'generations.json').read_text())['model'] == 'debug'


def test_demo_study_from_the_demo_sample_folders(tmp_path, capsys):
    # The demo's layout: samples/<row>/seed<k>/<reference stem>.wav, captions from the test split's sidecars.
    from rr_audiocraft.demo.study import prepare_demo_study
    truths = [{'description': f'caption {i}', 'name': f'{i:03d}'} for i in range(25)]
    runs = []
    for row, frequency in ((['–', 0.1, 0.0], 200.0), (['max', 0.1, 3.0], 400.0)):
        for seed in (1, 0):
            folder = write_system(tmp_path / 'samples' / f'{row[0]}-{row[2]}' / f'seed{seed}', [''] * 25, frequency,
                                  seconds=0.05)
            for sidecar in folder.glob('*.json'):  # the demo writes wavs only
                sidecar.unlink()
            runs.append({'row': row, 'seed': seed, 'samples': str(folder)})
    study = prepare_demo_study(runs, truths, tmp_path / 'study')
    made = Study(study)
    assert made.systems == ['baseline (λ=0)', 'RR (λ=3)'] and len(made.captions) == 20
    assert all(source.endswith('seed0') for source in made.data['sources'].values())
    assert all(made.captions[p] == f'caption {int(p)}' for p in made.captions)
    # A rerun replaces a study without answers, and keeps one with answers.
    assert prepare_demo_study(runs, truths, tmp_path / 'study') == study
    Storage(study / 'answers.sqlite')
    assert prepare_demo_study(runs, truths, tmp_path / 'study') is None
    assert 'never replaced' in capsys.readouterr().out
