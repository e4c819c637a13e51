"""`python -m rr_audiocraft.demo --until ceiling`: the judge's scale on a small benchmark, and bad input."""
import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


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
    assert results['ceiling']['codec']['relative_mse'] < 0.6  # 0.41-0.45 on 60-clip splits, 0.51 on this 15-clip one
    # A rerun reuses the benchmark and the judge fitted on it.
    again = run_demo('--data', str(data), '--out', str(out), '--data-seed', '7', '--clips', '150', '--until', 'ceiling')
    assert again.returncode == 0 and 'loaded' in again.stdout and 'fitting' not in again.stdout
    # The same folder asked for as another seed is refused before anything is computed.
    other = run_demo('--data', str(data), '--out', str(out), '--data-seed', '8', '--clips', '150', '--until', 'ceiling')
    assert other.returncode != 0
    assert f"{data / 'benchmark.json'} records another benchmark: seed 7 (wanted 8)" in other.stderr
    assert 'python -m rr_audiocraft.data.synth' in other.stderr and 'Traceback' not in other.stderr


def test_a_corrupted_codec_stops_the_demo_first(tmp_path):
    import shutil
    from rr_audiocraft.codec import STATE_FILE, asset_dir
    codec = tmp_path / 'codec'
    shutil.copytree(asset_dir(), codec)
    (codec / STATE_FILE).write_bytes(b'0' * 100)
    proc = run_demo('--data', str(tmp_path / 'bench'), '--out', str(tmp_path / 'out'), '--codec', str(codec),
                    '--until', 'ceiling', timeout=600)
    assert proc.returncode != 0
    assert f'The codec artefact {codec / STATE_FILE} is corrupted' in proc.stderr and 'Traceback' not in proc.stderr
    assert not (tmp_path / 'bench').exists()  # stopped before the benchmark was even written
