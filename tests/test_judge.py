"""Tests of the benchmark judge (rr_audiocraft.metrics.judge: detector, augment, scores)."""
import time

import numpy as np
import pytest
import torch

from rr_audiocraft.data import synth
from rr_audiocraft.metrics.judge import Judge, JudgeConfig, frechet_distance, score_predictions


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
    metrics = judge.score(wavs, truths)
    print(f"judge self-check on {len(wavs)} held-out clips: {metrics}, fit {fit_seconds:.1f} s")
    assert metrics['num_clips'] == NUM_HELD_OUT_CLIPS
    assert metrics['count_acc'] >= 0.9
    assert metrics['source_f1'] >= 0.9
    assert metrics['order_acc'] >= 0.9


def test_predict_outputs(judge_and_data):
    judge, wavs, truths, _, _ = judge_and_data
    predictions = judge.predict([torch.from_numpy(wav)[None] for wav in wavs[:4]])  # [1, T] tensors.
    batch_predictions = judge.predict(np.stack(wavs[:4]))  # One [B, T] array.
    for prediction, batch_prediction in zip(predictions, batch_predictions, strict=True):
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
    # score() takes generated clips at the generator's rate and references at 16 kHz.
    metrics = judge.score([wav_32k, wav_32k], [spec.to_dict()] * 2, sample_rate=32000, references=[wav_16k, wav_16k])
    # (KL 0.078 on this stack for the same clip at two rates; clips with other labels give > 0.5.)
    assert metrics['count_acc'] == 1. and metrics['kl'] < 0.1


def test_report_sanity(judge_and_data):
    judge, wavs, truths, _, _ = judge_and_data
    wavs, truths = wavs[:40], truths[:40]
    identical = judge.score(wavs, truths, references=wavs)
    assert identical['kl'] == pytest.approx(0., abs=1e-5)
    assert identical['fd'] < 1e-3
    assert identical['source_f1'] >= 0.85 and identical['count_acc'] >= 0.8

    rng = np.random.default_rng(0)
    silence = [np.zeros_like(wav) for wav in wavs]
    noise = [0.3 * rng.standard_normal(wav.shape).astype(np.float32) for wav in wavs]
    for name, generated in [('silence', silence), ('noise', noise)]:
        metrics = judge.score(generated, truths, references=wavs)
        assert metrics['kl'] > identical['kl'] + 0.5, name
        assert metrics['fd'] > identical['fd'] + 1., name
        assert metrics['source_f1'] < identical['source_f1'] - 0.3, name
        assert metrics['count_acc'] < identical['count_acc'] - 0.3, name
        if name == 'silence':
            assert metrics['source_f1'] == 0. and metrics['count_acc'] == 0.
    # Right audio for the wrong captions: per-clip metrics collapse, the set-level FD does not.
    shuffled = judge.score(wavs[1:] + wavs[:1], truths, references=wavs)
    assert shuffled['kl'] > identical['kl'] + 0.5
    assert shuffled['source_f1'] < identical['source_f1'] - 0.3
    assert shuffled['fd'] == pytest.approx(identical['fd'], abs=1e-3)


def test_save_load_roundtrip(judge_and_data, tmp_path):
    judge, wavs, _, _, _ = judge_and_data
    judge.save(tmp_path / 'judge.pt')
    loaded = Judge.load(tmp_path / 'judge.pt')
    assert loaded.sources == judge.sources and loaded.config == judge.config
    for original, reloaded in zip(judge.predict(wavs[:5]), loaded.predict(wavs[:5]), strict=True):
        assert original['sources'] == reloaded['sources'] and original['count'] == reloaded['count']
        np.testing.assert_allclose(original['embedding'], reloaded['embedding'], atol=1e-6)
    # A judge saved by an older version of the code is refused with a clear message.
    package = torch.load(tmp_path / 'judge.pt', weights_only=True)
    package['version'] = 1
    torch.save(package, tmp_path / 'old.pt')
    with pytest.raises(ValueError,
                       match=r'old\.pt holds a judge of version 1, saved by other judge code.*--until ceiling'):
        Judge.load(tmp_path / 'old.pt')
    (tmp_path / 'garbage.pt').write_bytes(b'not a judge')
    with pytest.raises(ValueError, match=r'garbage\.pt is not a readable judge'):
        Judge.load(tmp_path / 'garbage.pt')
    assert loaded.fitted_on == judge.fitted_on


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
        judge.score(wavs[:3], truths[:2], references=wavs[:3])
    with pytest.raises(ValueError, match='references'):
        judge.score(wavs[:3], truths[:3], references=wavs[:2])
    with pytest.raises(ValueError, match='No clips'):
        Judge.fit(tmp_path)
    with pytest.raises(FileNotFoundError):
        Judge.fit(tmp_path / 'missing')


def test_source_errors_say_what_was_heard_wrongly():
    truths = [{'sources': ['bell'], 'count': 1}, {'sources': ['kick', 'hum'], 'count': 2},
              {'sources': ['clap'], 'count': 3}]
    predictions = [{'sources': ['bell', 'noise'], 'count': 1}, {'sources': ['noise'], 'count': 2},
                   {'sources': ['clap', 'hum', 'noise'], 'count': 1}]
    metrics = score_predictions(predictions, truths)
    assert metrics['heard_absent'] == {'noise': 3, 'hum': 1} and metrics['missed'] == {'hum': 1, 'kick': 1}
    assert list(metrics['heard_absent']) == ['noise', 'hum']  # most frequent first
    # 2 true positives (bell, clap), 4 heard but absent, 2 missed.
    assert metrics['num_clips'] == 3
    assert metrics['count_acc'] == pytest.approx(2 / 3)
    assert metrics['source_f1'] == pytest.approx(2 * 2 / (2 * 2 + 4 + 2))
    with pytest.raises(ValueError, match='2 clips but 3 ground truths'):
        score_predictions(predictions[:2], truths)


def test_fit_on_round_trips_hears_what_the_round_trip_keeps(tmp_path):
    """A judge fitted with a round trip also learns from the clips after it; one that returns the wrong
    shape or NaN is refused before training."""
    root = tmp_path / 'bench'
    synth.generate_dataset(root, num_clips=100, seed=3)
    config = JudgeConfig(epochs=6)

    def lowpass(batch):  # a codec that keeps nothing above 2 kHz
        spectrum = torch.fft.rfft(batch)
        spectrum[..., int(2000 / 8000 * spectrum.shape[-1]):] = 0
        return torch.fft.irfft(spectrum, n=batch.shape[-1])
    rng = np.random.default_rng(7)
    truths = [synth.sample_spec(rng, 'test') for _ in range(30)]
    wavs = torch.stack([torch.from_numpy(synth.synthesize_clip(spec)[0]) for spec in truths])
    truths = [spec.to_dict() for spec in truths]
    plain = Judge.fit(root, seed=0, config=config)
    fitted = Judge.fit(root, seed=0, config=config, round_trip=lowpass, fitted_on={'codec': 'lowpass'})
    assert fitted.fitted_on == {'codec': 'lowpass'} and plain.fitted_on == {}
    on_round_trips, clean_only = fitted.score(lowpass(wavs), truths), plain.score(lowpass(wavs), truths)
    print(f"judge on low-passed clips: fitted on them {on_round_trips}, clean only {clean_only}")
    # Six epochs on 80 clips teach little, but the clean-only judge hears low-passing as sources that are
    # not there (52 of them, clap and whistle) and the one fitted on the round trips does not (0).
    assert sum(on_round_trips['heard_absent'].values()) < sum(clean_only['heard_absent'].values()) / 4
    with pytest.raises(ValueError, match='round_trip must return finite clips of the shape'):
        Judge.fit(root, config=config, round_trip=lambda batch: batch[..., :-10])
    with pytest.raises(ValueError, match='round_trip must return finite clips'):
        Judge.fit(root, config=config, round_trip=lambda batch: batch * float('nan'))
