"""`python -m rr_audiocraft.demo --until ceiling`: the judge's scale on a small benchmark, and bad input."""
import json
from pathlib import Path
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, run_cli, xp_dir


def run_demo(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'rr_audiocraft.demo', *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_until_ceiling_writes_the_scale_of_a_fresh_benchmark(tmp_path):
    data, out = tmp_path / 'bench', tmp_path / 'out'
    proc = run_demo('--data', str(data), '--out', str(out), '--data-seed', '7', '--clips', '150', '--until', 'ceiling')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'xFormers' not in proc.stdout + proc.stderr  # no "reinstall xformers" advice on a CPU-only machine
    results = json.loads((out / 'results.json').read_text())
    assert results['benchmark']['seed'] == 7 and results['benchmark']['num_clips'] == 150
    for name in ('judge_clean', 'ceiling', 'floor'):
        for key in ('count_acc', 'source_f1', 'order_acc'):
            assert 0. <= results[name][key] <= 1., (name, key)
        assert results[name]['num_clips'] == 15
    print({name: {key: results[name][key] for key in ('count_acc', 'source_f1', 'order_acc')}
           for name in ('judge_clean', 'ceiling', 'floor')})
    # The judge hears the references' captions, and the codec keeps most of it; shuffled captions do not match.
    assert results['judge_clean']['source_f1'] > results['floor']['source_f1'] + 0.4
    assert results['ceiling']['source_f1'] > results['floor']['source_f1'] + 0.3
    assert results['ceiling']['codec']['relative_mse'] < 0.25  # 0.106-0.128 on the 60-clip splits of seeds 0-3
    # The same folder asked for as another seed is refused before anything is computed.
    other = run_demo('--data', str(data), '--out', str(out), '--data-seed', '8', '--clips', '150', '--until', 'ceiling')
    assert other.returncode != 0
    assert f"{data / 'benchmark.json'} records another benchmark: seed 7 (wanted 8)" in other.stderr
    assert 'python -m rr_audiocraft.data.synth' in other.stderr and 'Traceback' not in other.stderr

    # The whole demo on that benchmark, shrunk (2 seeds x λ=0 / λ=3, the demo's LMs for 4 updates): the benchmark
    # and the judge fitted on it are reused, results.json holds the rows and the paired comparison, every
    # sample pairs with its reference.
    shrink = ['--seeds', '0,1', '--lm', 'optim.epochs=1', 'optim.updates_per_epoch=4', 'dataset.train.num_samples=64',
              'dataset.valid.num_samples=8', 'dataset.evaluate.num_samples=8', 'generate.lm.gen_duration=0.5']
    full = run_demo('--data', str(data), '--out', str(out), '--data-seed', '7', '--clips', '150', *shrink, timeout=900)
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
    assert 'loaded' in full.stdout and 'fitting' not in full.stdout and 'synthesising' not in full.stdout
    results = json.loads((out / 'results.json').read_text())
    assert [(row['pool'], row['lambda'], row['seeds']) for row in results['rows']] == [('–', 0., [0, 1]),
                                                                                        ('max', 3., [0, 1])]
    [versus] = results['vs_baseline']
    assert (versus['pool'], versus['lambda']) == ('max', 3.) and 0 <= versus['count_acc']['p_value'] <= 1
    references = sorted(path.stem for path in (data / 'test').glob('*.wav'))
    for run in results['runs']:
        assert sorted(path.stem for path in Path(run['samples']).glob('*.wav')) == references
        assert (out / 'xps' / run['sig'] / 'judge.json').is_file()
        assert all('judge' not in epoch for epoch in json.loads((xp_dir(run['sig']) / 'history.json').read_text()))
    assert (out / 'study' / 'study.json').is_file() and (out / 'comparison.png').is_file()
    assert (out / 'curves.png').is_file() and (out / 'spectrograms.png').is_file()
    # The LMs read their batches from the token cache its two writers made; every row logs valid rr.
    assert 'rr_ablation_tiny_cache: 2 XPs' in full.stdout
    for run in results['runs']:
        assert run['metrics']['valid_rr'] >= 0 and -1 <= run['metrics']['valid_rr_corr'] <= 1
        assert any((xp_dir(run['sig']) / 'tensorboard').rglob('events.out.tfevents.*'))
    for row in results['rows']:
        assert set(row['valid_rr']) == {'mean', 'ci95'}
    # The unconditional floor: the first λ=0 LM given no caption, scored against the real captions.
    assert results['unconditional']['sig'] == results['runs'][0]['sig']
    assert 0 <= results['unconditional']['source_f1'] <= 1 and 'given empty captions' in full.stdout
    assert sorted(p.stem for p in (out / 'samples' / 'unconditional').glob('*.wav')) == references
    # A rerun trains and generates nothing again.
    rerun = run_demo('--data', str(data), '--out', str(out), '--data-seed', '7', '--clips', '150', *shrink, timeout=900)
    assert rerun.returncode == 0 and rerun.stdout.count(': cached') == 5, rerun.stdout[-3000:]
    assert json.loads((out / 'results.json').read_text())['rows'] == results['rows']
    # Scores cached before a metric was added (here: the count slope's outcomes taken out of one XP's
    # record) are recomputed from that XP's samples on disk; nothing is trained or generated again.
    from rr_audiocraft.metrics.judge.scores import OUTCOME_KEYS
    judge_json = out / 'xps' / results['runs'][0]['sig'] / 'judge.json'
    record = json.loads(judge_json.read_text())
    for key in ('asked', 'heard', 'asked_squared', 'asked_heard'):
        del record['metrics']['clip_outcomes'][key]
    judge_json.write_text(json.dumps(record))
    samples = {path: path.stat().st_mtime_ns for path in Path(results['runs'][0]['samples']).glob('*.wav')}
    rejudged = run_demo('--data', str(data), '--out', str(out), '--data-seed', '7', '--clips', '150', *shrink,
                        timeout=900)
    assert rejudged.returncode == 0 and rejudged.stdout.count(': cached') == 5, rejudged.stdout[-3000:]
    assert rejudged.stdout.count('re-judging its samples on disk') == 1, rejudged.stdout[-3000:]
    assert set(json.loads(judge_json.read_text())['metrics']['clip_outcomes']) == set(OUTCOME_KEYS)
    assert {path: path.stat().st_mtime_ns for path in samples} == samples
    rows = json.loads((out / 'results.json').read_text())['rows']
    for row, before in zip(rows, results['rows'], strict=True):
        for key in ('source_f1', 'count_acc', 'count_slope'):
            assert set(row[key]) == {'mean', 'ci95'}
        # The samples on disk are 16-bit: a judge decision may flip on one of the 30 clips, no more.
        assert abs(row['count_acc']['mean'] - before['count_acc']['mean']) <= 1 / 30 + 1e-9


def test_a_corrupted_codec_stops_the_demo_first(tmp_path):
    import shutil
    from rr_audiocraft.assets import STATE_FILE, asset_dir
    codec = tmp_path / 'codec'
    shutil.copytree(asset_dir(), codec)
    (codec / STATE_FILE).write_bytes(b'0' * 100)
    proc = run_demo('--data', str(tmp_path / 'bench'), '--out', str(tmp_path / 'out'), '--codec', str(codec),
                    '--until', 'ceiling', timeout=600)
    assert proc.returncode != 0
    assert f'The codec artefact {codec / STATE_FILE} is corrupted' in proc.stderr and 'Traceback' not in proc.stderr
    assert not (tmp_path / 'bench').exists()  # stopped before the benchmark was even written


def test_results_layout_rows_and_paired_comparisons_with_the_baseline():
    """`summarise` gives the rows of results.json (each metric {'mean', 'ci95'}) and every row against
    the (–, 0.1, 0) baseline, paired over the same seeds and captions; unpaired seeds are refused."""
    import math
    import numpy as np
    from rr_audiocraft.demo.report import format_table
    from rr_audiocraft.metrics.summary import summarise
    from rr_audiocraft.metrics.judge.scores import OUTCOME_KEYS
    rng = np.random.default_rng(0)

    def run(row, seed, count_p):
        hits = (rng.random(40) < count_p).astype(int).tolist()
        outcomes = {key: [1] * 40 for key in OUTCOME_KEYS}
        outcomes.update(count_hit=hits, true_positives=[1 + h for h in hits], false_negatives=[1 - h for h in hits],
                        false_positives=[0] * 40, order_hit=hits)
        return {'sig': f'{seed}{row[2]}', 'row': list(row), 'seed': seed, 'samples': '',
                'metrics': {'clip_outcomes': outcomes, 'kl': 0.5 + seed, 'fd': 3.0, 'valid_ce': 2.0 + 0.1 * seed}}
    runs = [run(row, seed, p) for seed in (0, 1, 2) for row, p in ((('–', 0.1, 0.0), 0.3), (('max', 0.1, 3.0), 0.9))]
    rows, vs_baseline = summarise(runs)
    assert [(r['pool'], r['cfg'], r['lambda'], r['seeds']) for r in rows] == [('–', 0.1, 0.0, [0, 1, 2]),
                                                                           ('max', 0.1, 3.0, [0, 1, 2])]
    for entry in rows:
        for key in ('source_f1', 'count_acc', 'order_acc', 'kl', 'fd', 'valid_ce'):
            assert set(entry[key]) == {'mean', 'ci95'} and len(entry[key]['ci95']) == 2
            low, high = entry[key]['ci95']
            assert low <= entry[key]['mean'] <= high
    assert rows[1]['kl']['mean'] == 1.5 and rows[0]['count_acc']['mean'] < 0.45 < rows[1]['count_acc']['mean']
    [rr] = vs_baseline
    assert (rr['pool'], rr['cfg'], rr['lambda']) == ('max', 0.1, 3.0)
    for key in ('source_f1', 'count_acc', 'order_acc'):
        assert rr[key]['ci95'][0] > 0 and rr[key]['p_value'] < 0.01
    assert math.isclose(rr['count_acc']['difference'], rows[1]['count_acc']['mean'] - rows[0]['count_acc']['mean'])
    scale = {name: {'count_acc': 0.9, 'source_f1': 0.9, 'order_acc': 0.9, 'num_clips': 40}
             for name in ('judge_clean', 'ceiling', 'floor')}
    table = format_table(rows, vs_baseline, scale)
    assert 'Δ count acc' in table and 'ceiling' in table and 'floor' in table
    with pytest.raises(ValueError, match='paired comparisons need the same seeds'):
        summarise(runs[:-1])


@pytest.mark.parametrize('preset', ['demo', 'reproduce'])
def test_the_shipped_judge_is_the_one_each_preset_benchmark_and_codec_need(tmp_path, preset):
    """assets/judge_synth (the demo's benchmark) and assets/judge_synth-seed0-2000clips (reproduce's) were
    fitted on what the presets ask for today (benchmark version, judge version and settings, codec sha256):
    a change to any of them fails here until `make judge` refits them. A corrupted copy is refused with the
    command that fixes it."""
    import shutil
    from rr_audiocraft.assets import AssetError, asset_dir
    from rr_audiocraft.data.synth import benchmark_stamp
    from rr_audiocraft.demo.presets import PRESETS
    from rr_audiocraft.metrics.judge.asset import JUDGE_FILE, judge_asset, judge_wanted, shipped_judge
    codec_sha = json.loads((asset_dir() / 'asset.json').read_text())['sha256']
    wanted = judge_wanted(benchmark_stamp(num_clips=PRESETS[preset].clips, seed=0), codec_sha)
    judge = shipped_judge(wanted)
    assert judge is not None, f"{judge_asset(wanted['benchmark'])} is stale or missing: run `make judge`"
    assert judge.fitted_on == json.loads(json.dumps(wanted))
    other = judge_wanted(benchmark_stamp(num_clips=150, seed=7), codec_sha)
    assert shipped_judge(other) is None  # no asset for that benchmark: the run fits its own
    assert shipped_judge(other, folder=judge_asset(wanted['benchmark'])) is None  # fitted on another benchmark
    copy = tmp_path / 'judge_synth'
    shutil.copytree(judge_asset(wanted['benchmark']), copy)
    (copy / JUDGE_FILE).write_bytes((copy / JUDGE_FILE).read_bytes()[:-10] + b'0' * 10)
    with pytest.raises(AssetError, match='The shipped judge .* is corrupted: its sha256 .*make judge'):
        shipped_judge(wanted, folder=copy)


def test_presets_ask_for_what_the_two_commands_promise():
    """`make demo`: λ=0 vs λ=3 over 3 seeds on the default benchmark; `make reproduce`: the nine Table 1
    rows over at least 3 seeds and at least 200 test captions (10 % of the clips), written to results/reproduce.md;
    each benchmark size gets its own folder (its judge is fitted on it); each preset's LM is a solver config."""
    from rr_audiocraft.demo.presets import DEFAULT_DATA, PRESETS, default_data
    from rr_audiocraft.table1 import BASELINE, BEST_RR, TABLE1
    demo, reproduce = PRESETS['demo'], PRESETS['reproduce']
    assert demo.rows == (BASELINE, BEST_RR) and len(demo.seeds) == 3 and demo.clips == 600
    assert reproduce.rows == TABLE1 and len(reproduce.seeds) >= 3 and reproduce.clips // 10 >= 200
    assert reproduce.page == REPO_ROOT / 'results' / 'reproduce.md' and demo.page == REPO_ROOT / 'results' / 'demo.md'
    for preset in (demo, reproduce):
        assert (REPO_ROOT / 'config' / 'solver' / f'{preset.solver}.yaml').is_file()
    assert default_data(0, 600) == DEFAULT_DATA
    assert default_data(0, 2000).name == 'synth-seed0-2000clips' and default_data(3, 600).name == 'synth-seed3'


def test_device_is_resolved_before_any_work_and_reproduce_is_scaled_up_on_cuda(tmp_path, monkeypatch, capsys):
    """`--device auto` trains and generates on CUDA when torch sees a GPU, else on the CPU; `--device cuda`
    without one stops the demo with one line before the codec is checked. On CUDA the reproduce preset
    takes its larger LMs (solver=rr_audiogen/reproduce_gpu) into its own folder and page; the demo's XPs stay
    the same ones, since Dora leaves `device` out of the signature (an XP finished on the CPU is reused on a
    GPU and back)."""
    import torch
    from rr_audiocraft.demo.__main__ import main as demo_main
    from rr_audiocraft.demo.presets import preset_for, resolve_device
    from rr_audiocraft.train import main as dora_main
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert resolve_device('auto') == 'cpu' and resolve_device('cpu') == 'cpu'
    with pytest.raises(ValueError, match='sees no CUDA device'):
        resolve_device('cuda')
    with pytest.raises(ValueError, match='device must be one of auto, cpu, cuda'):
        resolve_device('gpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert resolve_device('auto') == 'cuda' and resolve_device('cuda') == 'cuda' and resolve_device('cpu') == 'cpu'

    cpu, gpu = preset_for('reproduce', 'cpu'), preset_for('reproduce', 'cuda')
    assert cpu.solver == 'rr_audiogen/reproduce' and gpu.solver == 'rr_audiogen/reproduce_gpu' and cpu.jobs == 2
    assert cpu.out.name == 'reproduce_out' and gpu.out.name == 'reproduce_gpu_out'
    assert gpu.page != cpu.page and gpu.clips == cpu.clips and gpu.seeds == cpu.seeds and gpu.rows == cpu.rows
    small, large = (dora_main.get_xp([f'solver={preset.solver}']).cfg.transformer_lm for preset in (cpu, gpu))
    assert large.dim > small.dim and large.num_layers > small.num_layers
    assert preset_for('demo', 'cuda') == preset_for('demo', 'cpu')
    xp = [f"solver={preset_for('demo', 'cpu').solver}"]
    assert dora_main.get_xp(xp + ['device=cuda']).sig == dora_main.get_xp(xp).sig
    assert dora_main.get_xp(xp + ['device=cuda']).cfg.device == 'cuda'

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)  # in process: also on a machine with a GPU
    code, _, err = run_cli(demo_main, ['--data', str(tmp_path / 'bench'), '--out', str(tmp_path / 'out'),
                                       '--device', 'cuda'], capsys)
    assert code == 2 and '--device cuda: torch' in err and 'sees no CUDA device' in err
    assert not (tmp_path / 'bench').exists() and not (tmp_path / 'out').exists()


def test_a_run_with_its_own_rows_or_folder_leaves_the_presets_results_page_alone(tmp_path, capsys):
    """results/reproduce.md holds `make reproduce`'s own run: a replication with other rows or another --out
    (here stopped at once by a missing codec) says it will not write that page, unless --results-md asks."""
    from rr_audiocraft.demo.__main__ import main as demo_main
    page = REPO_ROOT / 'results' / 'reproduce.md'
    before = page.read_bytes()
    common = ['--preset', 'reproduce', '--device', 'cpu', '--codec', str(tmp_path / 'no_codec'),
              '--data', str(tmp_path / 'bench')]
    for extra in (['--out', str(tmp_path / 'out')],
                  ['--rows', 'none/0.1/0,average/0.1/3', '--out', str(tmp_path / 'o2')]):
        code, out, err = run_cli(demo_main, common + extra, capsys)
        assert code not in (0, None) and 'error:' in str(code) + err + out
        assert f"not writing {page}" in out
    code, out, err = run_cli(demo_main,
                             common + ['--out', str(tmp_path / 'o3'), '--results-md', str(tmp_path / 'r.md')], capsys)
    assert 'not writing' not in out
    assert page.read_bytes() == before


def test_a_results_page_is_written_whole_and_the_reading_lives_apart(tmp_path):
    """A rerun replaces a generated page whole, in one rename (no half page, no leftover); the hand-written
    reading (docs/results.md) is its own file and links to the generated ones."""
    from rr_audiocraft.demo.report import write_page
    page = tmp_path / 'results' / 'reproduce.md'
    write_page(page, '# Table\n\nrun 1\n')
    assert page.read_text() == '# Table\n\nrun 1\n'
    write_page(page, '# Table\n\nrun 2')
    assert page.read_text() == '# Table\n\nrun 2\n' and [p.name for p in page.parent.iterdir()] == ['reproduce.md']
    generated = (REPO_ROOT / 'results' / 'reproduce.md').read_text()
    assert generated.startswith('# Miniature Table 1') and 'Written whole by' in generated
    assert (REPO_ROOT / 'results' / 'reproduce.png').is_file()
    reading = (REPO_ROOT / 'docs' / 'results.md').read_text()
    assert '](../results/reproduce.md)' in reading and '## Reading this run' in reading


def test_the_shuffled_floor_is_the_expectation_over_every_other_caption_not_one_draw():
    """The floor scores each reference against every other clip's caption once: for references heard
    exactly, its count acc is the chance that another caption asks the same count, sum n_c(n_c-1) / N(N-1),
    whatever the order of the clips; one derangement would give any of several values."""
    import random
    from rr_audiocraft.demo.scale import shuffled_floor
    counts = [1, 1, 1, 2, 2, 3, 3, 3, 3, 2]
    sources = ['bell', 'beep', 'clap', 'bell', 'whistle', 'pluck', 'bell', 'beep', 'clap', 'pluck']
    truths = [{'sources': [src], 'count': c, 'relation': 'single'} for src, c in zip(sources, counts, strict=True)]
    predictions = [{'sources': t['sources'], 'count': t['count'], 'order': t['sources'], 'relation': 'single'}
                   for t in truths]
    floor = shuffled_floor(predictions, truths)
    n = len(truths)
    assert floor['num_clips'] == n and floor['pairs'] == n * (n - 1)
    same_count = sum(k * (k - 1) for k in (3, 3, 4)) / (n * (n - 1))
    assert floor['count_acc'] == pytest.approx(same_count)
    same_source = sum(k * (k - 1) for k in (3, 2, 2, 1, 2)) / (n * (n - 1))
    assert floor['source_f1'] == pytest.approx(same_source)  # one source each: F1 = share of pairs that match
    order = list(range(n))
    random.Random(0).shuffle(order)
    again = shuffled_floor([predictions[i] for i in order], [truths[i] for i in order])
    assert all(again[key] == pytest.approx(floor[key]) for key in ('count_acc', 'source_f1', 'count_slope'))
    with pytest.raises(ValueError, match='at least 2 test clips'):
        shuffled_floor(predictions[:1], truths[:1])


def test_rows_chosen_on_the_command_line_are_parsed_or_refused_before_any_work(tmp_path):
    """`--rows` trains a chosen subset of Table 1 (e.g. a replication of two rows against the baseline):
    POOL/CFG/λ items become the grid's (pooling, CFG ratio, λ) rows; a malformed set stops the demo with
    one line naming the row, before the codec is checked or a benchmark written."""
    from rr_audiocraft.table1 import Row, parse_rows
    assert parse_rows('none/0.1/0,max/0.1/3,average/0.1/3') == [Row(None, 0.1, 0.), Row('max', 0.1, 3.),
                                                                 Row('average', 0.1, 3.)]
    assert parse_rows('max/0.2/3, –/0.1/0') == [Row('max', 0.2, 3.), Row(None, 0.1, 0.)]
    assert [Row.parse(row.label) for row in parse_rows('none/0.1/0,max/0.2/3')] == parse_rows('none/0.1/0,max/0.2/3')
    for bad, message in [('max/0.1/3', 'must include the baseline none/0.1/0'),
                         ('none/0.1/0,max/0.1', "'max/0.1' is not POOL/CFG/LAMBDA"),
                         ('none/0.1/0,mean/0.1/3', "pooling must be max, average or none"),
                         ('none/0.1/0,none/0.2/3', "give a pooling with λ > 0"),
                         ('none/0.1/0,max/0.1/0', "give a pooling with λ > 0"),
                         ('none/0.1/0,max/1.5/3', r'CFG dropout must be in \[0, 1\)'),
                         ('none/0.1/0,none/0.1/0', 'given twice'), ('none/x/0', 'must be numbers')]:
        with pytest.raises(ValueError, match=message):
            parse_rows(bad)
    proc = run_demo('--data', str(tmp_path / 'bench'), '--out', str(tmp_path / 'out'), '--rows', 'max/0.1/3',
                    timeout=120)
    assert proc.returncode == 2 and '--rows: the rows must include the baseline' in proc.stderr
    assert 'Traceback' not in proc.stderr and not (tmp_path / 'bench').exists() and not (tmp_path / 'out').exists()


def test_combine_pools_runs_of_other_benchmarks_over_all_their_captions(tmp_path):
    """`--combine`: runs of the same rows on two benchmarks become one table whose judge metrics are those
    of all their clips together, compared with the baseline as one paired set; rows missing from a run
    are left out and named; the same benchmark twice, different codecs or a missing baseline are refused."""
    import numpy as np
    from rr_audiocraft.metrics.summary import combine_results
    from rr_audiocraft.metrics.judge.scores import OUTCOME_KEYS
    rng = np.random.default_rng(0)

    def run(row, seed, count_p, num=40):
        hits = (rng.random(num) < count_p).astype(int).tolist()
        outcomes = {key: [1] * num for key in OUTCOME_KEYS}
        outcomes.update(count_hit=hits, true_positives=[1] * num, false_negatives=[0] * num, false_positives=[0] * num)
        return {'sig': f'{seed}{row}', 'row': list(row), 'seed': seed, 'samples': '',
                'metrics': {'clip_outcomes': outcomes, 'kl': 1.0 + seed, 'fd': 2.0, 'valid_ce': 1.5}}

    def write(name, data_seed, rows, codec='c0'):
        runs = [run(row, seed, p) for seed in (0, 1, 2) for row, p in rows]
        folder = tmp_path / name
        folder.mkdir()
        (folder / 'results.json').write_text(json.dumps({
            'benchmark': {'seed': data_seed, 'num_clips': 2000, 'version': 3, 'path': str(folder)},
            'codec': {'sha256': codec}, 'runs': runs}))
        return folder, runs
    base, rr, other = ('–', 0.1, 0.0), ('max', 0.1, 3.0), ('average', 0.1, 3.0)
    first, first_runs = write('a', 0, [(base, 0.3), (rr, 0.6), (other, 0.5)])
    second, second_runs = write('b', 1, [(base, 0.3), (rr, 0.6)])
    combined = combine_results([first, second])
    assert [(r['pool'], r['cfg'], r['lambda'], r['seeds']) for r in combined['rows']] == [('–', 0.1, 0.0, [0, 1, 2]),
                                                                                       ('max', 0.1, 3.0, [0, 1, 2])]
    assert combined['dropped_rows'] == [['average', 0.1, 3.0]]
    pooled_hits = [sum(run['metrics']['clip_outcomes']['count_hit']) for run in first_runs + second_runs
                   if tuple(run['row']) == rr]
    assert combined['rows'][1]['count_acc']['mean'] == pytest.approx(sum(pooled_hits) / (6 * 40))
    assert combined['rows'][0]['kl']['mean'] == pytest.approx(2.0)  # per seed the benchmarks' mean, then over seeds
    [versus] = combined['vs_baseline']
    assert versus['count_acc']['ci95'][0] > 0 and versus['count_acc']['p_value'] < 0.01
    assert [b['seed'] for b in combined['benchmarks']] == [0, 1]
    twin, _ = write('c', 0, [(base, 0.3), (rr, 0.6)])
    with pytest.raises(ValueError, match='same benchmark'):
        combine_results([first, twin])
    recoded, _ = write('d', 2, [(base, 0.3), (rr, 0.6)], codec='c1')
    with pytest.raises(ValueError, match='different codecs'):
        combine_results([first, recoded])
    no_base, _ = write('e', 3, [(rr, 0.6)])
    with pytest.raises(ValueError, match='baseline row'):
        combine_results([first, no_base])
    older, older_runs = write('f', 4, [(base, 0.3), (rr, 0.6)])
    for old_run in older_runs:
        del old_run['metrics']['clip_outcomes']['asked_heard']  # judged before the count slope existed
    (older / 'results.json').write_text(json.dumps({**json.loads((older / 'results.json').read_text()),
                                                    'runs': older_runs}))
    with pytest.raises(ValueError, match=r"different outcomes \(\['asked_heard'\]\).*re-judge"):
        combine_results([first, older])
    with pytest.raises(ValueError, match='at least two'):
        combine_results([first])
    with pytest.raises(ValueError, match='does not exist'):
        combine_results([first, tmp_path / 'missing'])
    proc = run_demo('--combine', str(first), str(second), '--out', str(tmp_path / 'pooled'), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = (tmp_path / 'pooled' / 'combined.md').read_text()
    assert 'Δ count acc' in page and "left out: [['average', 0.1, 3.0]]" in page
    written = json.loads((tmp_path / 'pooled' / 'combined.json').read_text())
    assert written['rows'] == json.loads(json.dumps(combined['rows']))
    proc = run_demo('--combine', str(first), str(twin), timeout=120)
    assert proc.returncode != 0 and 'error: --combine:' in proc.stderr and 'Traceback' not in proc.stderr
