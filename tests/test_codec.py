"""Tests of the shipped codec (rr_audiocraft.assets), its recipe (`make codec`, rr_audiocraft.recipes.codec) and its
diagnosis (rr_audiocraft.metrics.codec)."""
import numpy as np
import pytest
import scipy.signal

from rr_audiocraft.metrics.codec import band_error_db


def bands_at_16k():
    return ['0-500 Hz', '500-1000 Hz', '1000-2000 Hz', '2000-4000 Hz', '4000-8000 Hz']


def test_band_error_shows_which_bands_a_round_trip_loses():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((4, 16000))
    # A "codec" that keeps everything under 1 kHz and drops the rest.
    lowpass = scipy.signal.butter(8, 1000, fs=16000, output='sos')
    decoded = scipy.signal.sosfiltfilt(lowpass, reference, axis=-1)
    bands = band_error_db(reference, decoded, 16000)
    assert list(bands) == bands_at_16k()
    assert bands['0-500 Hz'] < -10          # kept (the filter's edge sits at 1 kHz)
    for band in ('2000-4000 Hz', '4000-8000 Hz'):
        assert bands[band] == pytest.approx(0., abs=0.05)  # nothing comes through
    nearly_lossless = band_error_db(reference, reference + 1e-6 * rng.standard_normal(reference.shape), 16000)
    assert all(db < -100 for db in nearly_lossless.values())


def test_band_error_skips_empty_and_unreachable_bands():
    t = np.arange(16000) / 8000
    tone = np.sin(2 * np.pi * 440 * t)[None]  # nothing above 1 kHz; 8 kHz rate: no band above 4 kHz
    bands = band_error_db(tone, 0.5 * tone, 8000)
    assert list(bands) == ['0-500 Hz', '500-1000 Hz', '1000-2000 Hz', '2000-4000 Hz']
    assert bands['0-500 Hz'] == pytest.approx(20 * np.log10(0.5), abs=1e-6)
    silence = np.zeros((2, 1000))
    assert band_error_db(silence, silence + 0.1, 16000) == dict.fromkeys(bands_at_16k(), None)
    with pytest.raises(ValueError, match='same shape'):
        band_error_db(tone, tone[:, :100], 8000)


# ---------------------------------------------------------------------------------------------
# The shipped artefact (assets/encodec_synth_8khz).
# ---------------------------------------------------------------------------------------------

def shipped_copy(tmp_path):
    import shutil
    from rr_audiocraft.assets import asset_dir
    copy = tmp_path / 'codec'
    shutil.copytree(asset_dir(), copy)
    return copy


def test_the_shipped_codec_loads_in_stock_audiocraft_and_matches_its_record():
    import json
    from audiocraft.models import CompressionModel
    from rr_audiocraft.assets import MANIFEST_FILE, STATE_FILE, asset_dir, verify_asset
    manifest = json.loads((asset_dir() / MANIFEST_FILE).read_text())
    assert verify_asset(asset_dir()) == asset_dir() / STATE_FILE
    assert manifest['bytes'] == (asset_dir() / STATE_FILE).stat().st_size <= 20_000_000
    assert manifest['command'].startswith('make codec') and manifest['training_seconds'] > 0
    for key in ('relative_mse', 'band_error_db', 'codebook_perplexity'):
        assert key in manifest['test_report']
    # Stock loading, both forms: the folder, and the file LM configs name after //pretrained/.
    for name in (asset_dir(), asset_dir() / STATE_FILE):
        model = CompressionModel.get_pretrained(str(name))
        assert (model.sample_rate, model.frame_rate, model.num_codebooks, model.cardinality) == (8000, 50, 4, 256)


def test_a_corrupted_or_incomplete_codec_is_refused_with_the_fix(tmp_path):
    from rr_audiocraft.assets import STATE_FILE, AssetError, verify_asset, verify_compression_reference
    copy = shipped_copy(tmp_path)
    assert verify_asset(copy) == copy / STATE_FILE
    data = bytearray((copy / STATE_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    (copy / STATE_FILE).write_bytes(bytes(data))
    with pytest.raises(AssetError, match=rf'{copy / STATE_FILE} is corrupted: its sha256 is .*make codec'):
        verify_asset(copy)
    # What an LM config names: the same check, before anything is loaded.
    with pytest.raises(AssetError, match='is corrupted'):
        verify_compression_reference(f'//pretrained/{copy / STATE_FILE}')
    verify_compression_reference('//pretrained/facebook/encodec_32khz')  # not an asset: left alone
    (copy / 'asset.json').unlink()
    with pytest.raises(AssetError, match=r'asset\.json is missing'):
        verify_asset(copy)


def test_the_shipped_codec_reconstructs_the_benchmark():
    """On 40 held-out-pair clips it keeps most of the signal under 2 kHz, where the benchmark's sources
    live, and uses its codebooks (silence would score relative MSE 1 and 0 dB in every band)."""
    from rr_audiocraft.metrics.codec import codec_report, load_asset
    from rr_audiocraft.data import synth
    rng = np.random.default_rng(2024)
    wavs = [synth.synthesize_clip(synth.sample_spec(rng, 'test'))[0] for _ in range(40)]
    report = codec_report(load_asset(), wavs, synth.DEFAULT_SAMPLE_RATE)
    print(report)
    assert report['relative_mse'] < 0.25  # here 0.117; 0.106-0.128 on the 60-clip test splits of seeds 0-3
    bands = report['band_error_db']  # here -13.0 / -9.3 / -7.7 dB
    assert bands['0-500 Hz'] < -9 and bands['500-1000 Hz'] < -6 and bands['1000-2000 Hz'] < -4
    assert min(report['codebook_perplexity']) > 4  # no codebook collapsed onto a few codes (here: 7.7-17.6)


def test_rr_solver_refuses_a_corrupted_codec_before_building_anything(tmp_path, tiny_data):
    from conftest import datasource_overrides
    from rr_audiocraft.assets import STATE_FILE, AssetError
    from rr_audiocraft.solvers import RRAudioGenSolver
    from rr_audiocraft.train import main
    copy = shipped_copy(tmp_path)
    (copy / STATE_FILE).write_bytes((copy / STATE_FILE).read_bytes()[:-100])  # a truncated copy
    cfg = main.get_xp(['solver=rr_audiogen/tiny', f'compression_model_checkpoint=//pretrained/{copy / STATE_FILE}',
                       *datasource_overrides(tiny_data)]).cfg
    with pytest.raises(AssetError, match='is corrupted'):
        RRAudioGenSolver(cfg)
    from conftest import run_dora  # the real entry point: one message naming the file, no traceback
    proc = run_dora('run', 'solver=rr_audiogen/tiny', f'compression_model_checkpoint=//pretrained/{copy / STATE_FILE}',
                    *datasource_overrides(tiny_data), check=False)
    assert proc.returncode == 2 and f'{copy / STATE_FILE} is corrupted' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_make_codec_trains_both_stages_through_dora_and_exports_a_checked_asset(tmp_path, tiny_data, monkeypatch):
    """`make codec`'s train and export stages on tiny settings, through the real entry point: the
    first XP warms up without the quantizer (stock DummyQuantizer: full-rate latent, no codes) and
    then trains the RVQ; the second continues from its weights with the mel loss; the export is a
    stock compression state whose asset.json records both stages and the sha256 it is checked by."""
    import json
    from audiocraft.models import CompressionModel
    from conftest import run_dora, xp_dir
    from rr_audiocraft import assets
    from rr_audiocraft.recipes import codec
    data_dir = tmp_path / 'codec'
    (data_dir / 'excerpts').mkdir(parents=True)
    (data_dir / 'excerpts' / 'egs').symlink_to(tiny_data / 'egs')
    extra = ['optim.epochs=3', 'optim.updates_per_epoch=2', 'dataset.train.num_samples=16',
             'dataset.valid.num_samples=8', 'dataset.evaluate.num_samples=8', 'num_threads=1']
    first, second = codec.train_stage(data_dir, extra)
    history = json.loads((xp_dir(first.sig) / 'history.json').read_text())
    assert [epoch['train']['quantized'] for epoch in history] == [0., 0., 1.]  # quantizer_warmup_epochs: 2
    assert history[0]['train']['bandwidth'] > 100 and history[2]['train']['bandwidth'] == pytest.approx(1.6)
    assert 'penalty' in history[2]['train'] and 'penalty' not in history[0]['train']
    assert f'continue_from=//sig/{first.sig}' in second.argv
    assert f'Continuing from provided checkpoint: //sig/{first.sig}' in (xp_dir(second.sig) / 'codec.log').read_text()
    history = json.loads((xp_dir(second.sig) / 'history.json').read_text())
    assert [epoch['train']['quantized'] for epoch in history] == [1., 1., 1.]
    assert second.cfg.losses.msspec > 0 and first.cfg.losses.msspec == 0  # trained on in the second stage only
    assert codec.train_stage(data_dir, extra)[1].sig == second.sig  # a rerun finds both trained

    monkeypatch.setattr(assets, 'ASSETS_DIR', tmp_path / 'assets')
    folder = codec.export_stage([first, second])
    state = codec.verify_asset(folder)
    manifest = json.loads((folder / codec.MANIFEST_FILE).read_text())
    stages = manifest['recipe']['stages']
    assert [stage['xp_sig'] for stage in stages] == [first.sig, second.sig]
    assert [stage['solver_config'] for stage in stages] == [f'config/solver/{solver}.yaml' for solver in codec.SOLVERS]
    assert manifest['training_seconds'] == pytest.approx(sum(stage['training_seconds'] for stage in stages), abs=0.2)
    model = CompressionModel.get_pretrained(str(state))
    assert model.sample_rate == 8000 and model.num_codebooks == 4

    overrides = [override for override in codec.stage_overrides(data_dir, extra, None, codec.SOLVERS[0])
                 if not override.startswith('optim.epochs=')]
    proc = run_dora('run', *overrides, 'optim.epochs=2', 'quantizer_warmup_epochs=2', check=False)
    assert proc.returncode != 0
    assert 'quantizer_warmup_epochs=2 must be a whole number of epochs in [0, optim.epochs=2)' in proc.stderr
