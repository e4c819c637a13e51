"""The real entry point: `dora -P rr_audiocraft run` of tiny XPs, checked through their artefacts."""
import json
import math

import pytest

from conftest import datasource_overrides, run_dora, run_xp, xp_dir


@pytest.mark.parametrize('solver', ['rr_audiogen/tiny', 'rr_musicgen/tiny'])
def test_dora_run_trains_with_rr_and_leaves_checkpoint_and_history(tiny_data, solver):
    # No compression setting: the tiny configs train on the shipped codec (assets/encodec_synth_8khz).
    sig = run_xp(f'solver={solver}',
                 # p = 0.5 so that both kinds of steps occur in 20 updates (the draw is seeded).
                 'classifier_free_guidance.training_dropout=0.5', *datasource_overrides(tiny_data))
    folder = xp_dir(sig)
    history = json.loads((folder / 'history.json').read_text())
    assert len(history) == 2  # two epochs
    for epoch in history:
        train, valid = epoch['train'], epoch['valid']
        assert 0 < train['cfg_dropped'] < 1
        assert math.isfinite(train['rr']) and train['rr'] > 0
        assert -1 <= train['rr_corr'] <= 1
        assert math.isfinite(train['ce']) and math.isfinite(valid['ce'])
        # Valid measures L_rr and its correlation with the captions nulled (what RR acts on); never a loss there.
        assert math.isfinite(valid['rr']) and valid['rr'] >= 0 and -1 <= valid['rr_corr'] <= 1
        assert valid['rr_steps'] == 1 and 'cfg_dropped' not in valid
    # Generated samples from the last-epoch generate stage exist (the stock stage ran on our model).
    assert any((folder / 'samples').rglob('*.wav'))


def test_dora_run_rejects_bad_rr_settings_at_start_up(tiny_data, tiny_compression_sig):
    proc = run_dora('run', 'solver=rr_audiogen/tiny', f'compression_model_checkpoint=//sig/{tiny_compression_sig}',
                    'rr.pooling=median', *datasource_overrides(tiny_data), check=False, timeout=300)
    assert proc.returncode != 0
    assert "rr.pooling='median' is not supported; allowed values: ['max', 'average']" in proc.stderr
    assert 'Train |' not in proc.stderr  # no training step ran


def test_dora_run_reports_all_bad_settings_in_one_message_without_a_traceback():
    # No data, no compression model: the settings are checked before either is looked at.
    proc = run_dora('run', 'solver=rr_audiogen/tiny', 'rr.pooling=median', 'rr.gather=maybe',
                    'compression_model_checkpoint=null', check=False, timeout=300)
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    for problem in ("rr.pooling='median' is not supported; allowed values: ['max', 'average']",
                    "rr.gather='maybe' must be true or false", 'compression_model_checkpoint is not set'):
        assert problem in proc.stderr, proc.stderr[-3000:]
