"""`make bench` at a tiny size (not a timed test), and the step optimisation the bench motivated."""
import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, datasource_overrides


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def test_bench_runs_at_tiny_size_and_writes_its_files(tmp_path):
    proc = subprocess.run([sys.executable, '-m', 'rr_audiocraft.bench', '--tiny', '--before-after',
                           '--out', str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / 'rr_bench.json').read_text())
    assert [(row['size'], row['steps']) for row in result['steps']] == [('tiny', 'cfg'), ('tiny', 'normal')]
    for row in result['steps']:
        assert row['stock_s'] > 0 and row['rr_s'] > 0 and row['time_ratio'] > 0 and row['cpu_time_ratio'] > 0
        assert len(row['stock_times_s']) == len(row['rr_times_s']) == result['meta']['rounds']
        # A training step allocates activations and gradients: a zero peak would mean nothing was measured.
        assert row['stock_peak_bytes'] > 0 and row['rr_peak_bytes'] > 0
    cfg_row, normal_row = result['steps']
    assert cfg_row['text_encoder_pass_s'] > 0 and cfg_row['cpu_time_ratio_before'] > 0
    assert cfg_row['cpu_time_ratio_cold'] > 0  # captions not cached yet: RR encodes them
    assert 'cpu_time_ratio_before' not in normal_row  # the optimisations only touch CFG steps
    assert 'cpu_time_ratio_cold' not in normal_row
    assert {(r['batch_size'], r['width']) for r in result['rr_loss']} == {(8, 384), (64, 384)}
    # The caption cache with AudioGen's mixing on: two epochs, the second finds captions the first kept.
    cache_rows = result['caption_cache']
    assert [row['epoch'] for row in cache_rows] == [1, 2]
    assert all(0 < row['cached_captions'] < row['distinct_captions_seen'] for row in cache_rows)
    assert cache_rows[1]['rr_text_cached'] is not None and 0 <= cache_rows[1]['rr_text_cached'] <= 1
    table = (tmp_path / 'rr_bench.md').read_text()
    assert '| tiny (' in table and 'RR/stock wall' in table and 'RR/stock CPU' in table
    assert 'captions not cached yet' in table and 'before the CFG-step optimisations' in table
    assert "Caption cache under AudioGen's mixing" in table
    assert '| tiny (' in proc.stdout  # the table is printed too


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@pytest.fixture(scope='module')
def compression(tiny_data, tmp_path_factory) -> str:
    """A tiny EnCodec checkpoint, RVQ k-means-initialised on the clips (the bench's; not trained)."""
    from rr_audiocraft.bench import build_compression_checkpoint
    return str(build_compression_checkpoint(tiny_data, 256, tmp_path_factory.mktemp('encodec') / 'encodec.th'))


def test_skipping_the_nulled_caption_encoder_pass_keeps_weight_zero_exactly_stock(tiny_data, compression):
    """On CFG-dropped steps RR skips the frozen encoder's pass over the nulled captions (the bench's
    optimisation): the text encoder runs once per step, and λ = 0 still trains bit for bit like stock."""
    from rr_audiocraft import bench
    overrides = ['solver=rr_audiogen/tiny', f'compression_model_checkpoint={compression}',
                 'rr.weight=0', 'optim.updates_per_epoch=4', 'classifier_free_guidance.training_dropout=0.3',
                 'dataset.segment_duration=2', *datasource_overrides(tiny_data)]
    xp = bench._compose(overrides)
    with xp.enter():
        stock, ours = bench.build_solvers(overrides)
        calls = []
        encoder = ours.model.condition_provider.conditioners['description'].encoder
        handle = encoder.register_forward_pre_hook(lambda *_: calls.append(1))
        metrics = {}
        for name, solver in (('stock', stock), ('rr', ours)):
            _seed(1)  # the same batches for both
            metrics[name] = solver.run_stage('train', solver.train)
        handle.remove()
    assert metrics['rr']['cfg_dropped'] == 0.5  # the CFG draws (seed 1234, p = 0.3): dropped, kept, dropped, kept
    # One pass per step: the originals on every step (cross-attention or T), never the nulled captions.
    assert len(calls) == 4
    assert metrics['rr']['ce'] == metrics['stock']['ce']
    stock_state, our_state = stock.model.state_dict(), ours.model.state_dict()
    assert list(stock_state) == list(our_state)
    assert all(torch.equal(stock_state[k], our_state[k]) for k in stock_state)
