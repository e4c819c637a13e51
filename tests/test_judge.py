"""Tests of the benchmark judge (rr_audiocraft.metrics.judge)."""
import time

import numpy as np
import pytest
import torch

from rr_audiocraft.data import synth
from rr_audiocraft.metrics.judge import Judge, frechet_distance


NUM_TRAIN_CLIPS = 400
NUM_HELD_OUT_CLIPS = 100


@pytest.fixture(scope='module')
def judge_and_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('judge') / 'bench'
    synth.generate_dataset(root, num_clips=NUM_TRAIN_CLIPS * 5 // 4, seed=0)  # 80% of it is train.
    begin = time.time()
    judge = Judge.fit(root / 'egs' / 'train', seed=0)
    fit_seconds = time.time() - begin
    # Held-out references drawn like the test split (held-out pairs), rendered in memory.
    rng = np.random.default_rng(1234)
    truths = [synth.sample_spec(rng, 'test') for _ in range(NUM_HELD_OUT_CLIPS)]
    wavs = [synth.synthesize_clip(spec)[0] for spec in truths]
    truths = [spec.to_dict() for spec in truths]
    return judge, wavs, truths, fit_seconds, root


def test_self_check_on_held_out_pairs(judge_and_data):
    judge, wavs, truths, fit_seconds, _ = judge_and_data
    metrics = judge.self_check(wavs, truths)
    print(f"judge self-check on {len(wavs)} held-out clips: {metrics}, fit {fit_seconds:.1f} s")
    assert metrics['num_clips'] == NUM_HELD_OUT_CLIPS
    assert metrics['count_acc'] >= 0.9
    assert metrics['source_f1'] >= 0.9
    assert metrics['order_acc'] >= 0.9


def test_predict_outputs(judge_and_data):
    judge, wavs, truths, _, _ = judge_and_data
    predictions = judge.predict([torch.from_numpy(wav)[None] for wav in wavs[:4]])  # [1, T] tensors.
    batch_predictions = judge.predict(np.stack(wavs[:4]))  # One [B, T] array.
    for prediction, batch_prediction in zip(predictions, batch_predictions):
        assert set(prediction) >= {'sources', 'count', 'order', 'relation', 'posteriors', 'embedding', 'source_probs'}
        assert prediction['posteriors'].shape == (len(synth.SOURCES),)
        assert prediction['posteriors'].sum() == pytest.approx(1., abs=1e-5)
        assert prediction['embedding'].shape == (2 * judge.config.hidden,)
        assert sorted(prediction['order']) == prediction['sources']
        assert prediction['sources'] == batch_prediction['sources'] and prediction['count'] == batch_prediction['count']
        np.testing.assert_allclose(prediction['embedding'], batch_prediction['embedding'], atol=1e-4)


def test_resampled_input_gives_same_judgement(judge_and_data):
    judge, wavs, truths, _, _ = judge_and_data
    spec = synth.ClipSpec(['kick', 'beep'], 3, 'then', 'mid', seed=5)
    wav_16k, _ = synth.synthesize_clip(spec, sample_rate=16000)
    wav_32k, _ = synth.synthesize_clip(spec, sample_rate=32000)
    [at_16k], [at_32k] = judge.predict([wav_16k]), judge.predict([wav_32k], sample_rate=32000)
    assert at_16k['sources'] == at_32k['sources'] == ['beep', 'kick']
    assert at_16k['count'] == at_32k['count'] == 3
    assert at_16k['order'] == at_32k['order'] == ['kick', 'beep']
    # report() takes generated clips at the generator's rate and references at 16 kHz.
    metrics = judge.report([wav_32k, wav_32k], [spec.to_dict()] * 2, [wav_16k, wav_16k], sample_rate=32000)
    assert metrics['count_acc'] == 1. and metrics['kl'] < 0.05


def test_report_sanity(judge_and_data):
    judge, wavs, truths, _, _ = judge_and_data
    wavs, truths = wavs[:40], truths[:40]
    identical = judge.report(wavs, truths, wavs)
    assert identical['kl'] == pytest.approx(0., abs=1e-5)
    assert identical['fd'] < 1e-3
    assert identical['source_f1'] >= 0.85 and identical['count_acc'] >= 0.8

    rng = np.random.default_rng(0)
    silence = [np.zeros_like(wav) for wav in wavs]
    noise = [0.3 * rng.standard_normal(wav.shape).astype(np.float32) for wav in wavs]
    for name, generated in [('silence', silence), ('noise', noise)]:
        metrics = judge.report(generated, truths, wavs)
        assert metrics['kl'] > identical['kl'] + 0.5, name
        assert metrics['fd'] > identical['fd'] + 1., name
        assert metrics['source_f1'] < identical['source_f1'] - 0.3, name
        assert metrics['count_acc'] < identical['count_acc'] - 0.3, name
        if name == 'silence':
            assert metrics['source_f1'] == 0. and metrics['count_acc'] == 0.
    # Right audio for the wrong captions: per-clip metrics collapse, the set-level FD does not.
    shuffled = judge.report(wavs[1:] + wavs[:1], truths, wavs)
    assert shuffled['kl'] > identical['kl'] + 0.5
    assert shuffled['source_f1'] < identical['source_f1'] - 0.3
    assert shuffled['fd'] == pytest.approx(identical['fd'], abs=1e-3)


def test_save_load_roundtrip(judge_and_data, tmp_path):
    judge, wavs, _, _, _ = judge_and_data
    judge.save(tmp_path / 'judge.pt')
    loaded = Judge.load(tmp_path / 'judge.pt')
    assert loaded.sources == judge.sources and loaded.config == judge.config
    for original, reloaded in zip(judge.predict(wavs[:5]), loaded.predict(wavs[:5])):
        assert original['sources'] == reloaded['sources'] and original['count'] == reloaded['count']
        np.testing.assert_allclose(original['embedding'], reloaded['embedding'], atol=1e-6)
    # A judge saved by an older version of the code is refused with a clear message.
    package = torch.load(tmp_path / 'judge.pt', weights_only=True)
    package['version'] = 1
    torch.save(package, tmp_path / 'old.pt')
    with pytest.raises(ValueError, match='fit a new one'):
        Judge.load(tmp_path / 'old.pt')


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 4))
    assert frechet_distance(a, a) == pytest.approx(0., abs=1e-6)
    # Shifting the mean by 2 in every dimension costs 4 per dimension.
    assert frechet_distance(a, a + 2.) == pytest.approx(16., rel=1e-6)
    # Fewer clips than dimensions: singular covariances are handled by the ridge.
    small = rng.standard_normal((5, 64))
    assert np.isfinite(frechet_distance(small, small + 0.1))
    with pytest.raises(ValueError, match='at least 2'):
        frechet_distance(a[:1], a)


def test_bad_inputs(judge_and_data, tmp_path):
    judge, wavs, truths, _, _ = judge_and_data
    with pytest.raises(ValueError, match='No clips'):
        judge.predict([])
    with pytest.raises(ValueError, match='mono'):
        judge.predict([np.zeros((2, 16000), dtype=np.float32)])
    with pytest.raises(ValueError, match=r'\[B, T\]'):
        judge.predict(np.zeros((2, 2, 16000), dtype=np.float32))
    with pytest.raises(ValueError, match='window'):
        judge.predict([np.zeros(100, dtype=np.float32)])
    with pytest.raises(ValueError, match='ground truths'):
        judge.report(wavs[:3], truths[:2], wavs[:3])
    with pytest.raises(ValueError, match='references'):
        judge.report(wavs[:3], truths[:3], wavs[:2])
    with pytest.raises(ValueError, match='No clips'):
        Judge.fit(tmp_path)
    with pytest.raises(FileNotFoundError):
        Judge.fit(tmp_path / 'missing')


def test_source_errors_say_what_was_heard_wrongly():
    truths = [{'sources': ['bell'], 'count': 1}, {'sources': ['kick', 'hum'], 'count': 2},
              {'sources': ['clap'], 'count': 3}]
    predictions = [{'sources': ['bell', 'noise'], 'count': 1}, {'sources': ['noise'], 'count': 2},
                   {'sources': ['clap', 'hum', 'noise'], 'count': 1}]
    errors = Judge.source_errors(predictions, truths)
    assert errors == {'heard_absent': {'noise': 3, 'hum': 1}, 'missed': {'hum': 1, 'kick': 1}}
    assert list(errors['heard_absent']) == ['noise', 'hum']  # most frequent first
    # 2 true positives (bell, clap), 4 heard but absent, 2 missed.
    metrics = Judge.score(predictions, truths)
    assert metrics['num_clips'] == 3
    assert metrics['count_acc'] == pytest.approx(2 / 3)
    assert metrics['source_f1'] == pytest.approx(2 * 2 / (2 * 2 + 4 + 2))
    with pytest.raises(ValueError, match='2 clips but 3 ground truths'):
        Judge.source_errors(predictions[:2], truths)
