"""Tests of the synthetic benchmark generator (rr_audiocraft.data.synth)."""
import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from rr_audiocraft.data import synth


NUM_CLIPS = 30  # 24 train, 3 valid, 3 test.


@pytest.fixture(scope='module')
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('synth') / 'bench'
    synth.generate_dataset(root, NUM_CLIPS, seed=7)
    return root


def _files(root: Path):
    return sorted(path for path in root.rglob('*') if path.suffix in ('.wav', '.json'))


def test_layout_and_split_sizes(dataset):
    sizes = synth.split_sizes(NUM_CLIPS)
    assert sizes == {'train': 24, 'valid': 3, 'test': 3}
    for split, size in sizes.items():
        assert len(list((dataset / split).glob('*.wav'))) == size
        assert len(list((dataset / split).glob('*.json'))) == size
        lines = (dataset / 'egs' / split / 'data.jsonl').read_text().splitlines()
        assert len(lines) == size


def test_same_seed_gives_identical_bytes_and_other_seed_differs(dataset, tmp_path):
    again = tmp_path / 'again'
    synth.generate_dataset(again, NUM_CLIPS, seed=7)
    files, files_again = _files(dataset), _files(again)
    assert [p.relative_to(dataset) for p in files] == [p.relative_to(again) for p in files_again]
    for path, path_again in zip(files, files_again, strict=True):
        assert path.read_bytes() == path_again.read_bytes(), path
    other = tmp_path / 'other'
    synth.generate_dataset(other, NUM_CLIPS, seed=8)
    differing = [path for path in files
                 if path.read_bytes() != (other / path.relative_to(dataset)).read_bytes()]
    assert len(differing) == len(files)


def test_synthesize_clip_is_pure_and_well_formed():
    spec = synth.ClipSpec(sources=['bell', 'hum'], count=3, relation='while', register='low', seed=11)
    wav, events = synth.synthesize_clip(spec, sample_rate=16000, duration=4.0)
    wav_again, _ = synth.synthesize_clip(spec.to_dict(), sample_rate=16000, duration=4.0)
    assert wav.dtype == np.float32 and wav.shape == (64000,)
    np.testing.assert_array_equal(wav, wav_again)
    assert 0.1 < np.abs(wav).max() < 1.0
    assert [event.source for event in events].count('bell') == 3
    background = [event for event in events if event.sustained]
    assert len(background) == 1 and background[0].source == 'hum'
    # The background starts first and covers every counted event.
    assert events[0].sustained
    assert all(background[0].onset < event.onset and event.offset < background[0].offset
               for event in events if not event.sustained)
    # Changing only the seed changes the audio.
    other, _ = synth.synthesize_clip(synth.ClipSpec(['bell', 'hum'], 3, 'while', 'low', seed=12))
    assert not np.array_equal(wav, other)


def test_sources_have_distinct_timbres():
    """Spectral centroids of the sources spread over octaves: kick/hum low, chirp/noise high; every
    source but the white noise keeps at least 70 % of its energy under 2.5 kHz (what the 8 kHz codec
    carries; a high bell, 77 %, has its second partial at 2.8 kHz)."""
    centroids = {}
    freqs = np.fft.rfftfreq(int(synth.DEFAULT_DURATION * 16000), 1 / 16000)
    for source in synth.SOURCES:
        register = 'mid' if source in synth.PITCHED_SOURCES else None
        wav, _ = synth.synthesize_clip(synth.ClipSpec([source], 1, 'single', register, seed=0))
        spectrum = np.abs(np.fft.rfft(wav)) ** 2
        centroids[source] = float((spectrum * freqs).sum() / spectrum.sum())
        for register in (synth.REGISTERS if source in synth.PITCHED_SOURCES else [None]):
            wav, _ = synth.synthesize_clip(synth.ClipSpec([source], 3, 'single', register, seed=1))
            spectrum = np.abs(np.fft.rfft(wav)) ** 2
            if source != 'noise':
                assert spectrum[freqs < 2500].sum() > 0.7 * spectrum.sum(), (source, register)
    assert centroids['kick'] < 300 < centroids['bell']
    assert 1000 < centroids['chirp'] < 2500 and centroids['noise'] > 2000
    assert centroids['hum'] < centroids['beep'] < centroids['whistle']
    # Registers move pitched sources.
    low, _ = synth.synthesize_clip(synth.ClipSpec(['beep'], 1, 'single', 'low', seed=0))
    high, _ = synth.synthesize_clip(synth.ClipSpec(['beep'], 1, 'single', 'high', seed=0))
    assert np.argmax(np.abs(np.fft.rfft(high))) > 3 * np.argmax(np.abs(np.fft.rfft(low)))


def test_events_stay_apart_and_inside_short_clips():
    rng = np.random.default_rng(0)
    for _ in range(200):
        spec = synth.sample_spec(rng, 'train')
        duration = float(rng.choice([2.0, 3.0, 4.0, 10.0]))
        wav, events = synth.synthesize_clip(spec, duration=duration)
        assert wav.shape == (int(duration * 16000),)
        assert all(0 <= event.onset < event.offset <= duration for event in events)
        counted = [event for event in events if event.source == spec.sources[0]]
        assert len(counted) == spec.count
        gaps = [later.onset - earlier.offset for earlier, later in zip(counted, counted[1:], strict=False)]
        assert all(gap >= 0.149 * min(1, duration / 4) for gap in gaps)


def test_held_out_pairs_only_in_test():
    rng = np.random.default_rng(0)
    for split in ('train', 'valid', 'test'):
        pairs = {frozenset(spec.sources) for spec in (synth.sample_spec(rng, split) for _ in range(2000))
                 if len(spec.sources) == 2}
        if split == 'test':
            assert pairs == set(synth.HELD_OUT_PAIRS)
        else:
            assert not pairs & synth.HELD_OUT_PAIRS
            assert len(pairs) > 30
    # Every source still occurs in train, alone and in pairs.
    train = [synth.sample_spec(rng, 'train') for _ in range(2000)]
    assert {spec.sources[0] for spec in train if spec.relation == 'single'} == set(synth.SOURCES)
    assert {source for spec in train if spec.relation != 'single' for source in spec.sources} == set(synth.SOURCES)


def test_written_test_split_uses_held_out_pairs(tmp_path):
    synth.generate_dataset(tmp_path, 100, seed=0)
    for split in synth.SPLITS:
        for sidecar in (tmp_path / split).glob('*.json'):
            sources = json.loads(sidecar.read_text())['sources']
            if len(sources) == 2:
                assert (frozenset(sources) in synth.HELD_OUT_PAIRS) == (split == 'test'), sidecar


def test_sidecar_contents(dataset):
    for sidecar_path in sorted(dataset.glob('*/*.json')):
        info = json.loads(sidecar_path.read_text())
        assert isinstance(info['description'], str) and len(info['description']) > 5
        for key in synth.MUSIC_INFO_KEYS:
            assert key in info
        assert info['name'] == sidecar_path.stem
        spec = synth.ClipSpec.from_dict(info)  # Validates sources, count, relation, register.
        assert info['seed'] == spec.seed and 1 <= info['count'] <= 3
        assert info['relation'] in synth.RELATIONS
        assert info['split'] == sidecar_path.parent.name
        assert sorted(info['order']) == sorted(info['sources'])
        counted = [event for event in info['events'] if event['source'] == info['sources'][0]]
        assert len(counted) == info['count']
        # The sidecar's events are the ones the audio was rendered with.
        _, events = synth.synthesize_clip(spec)
        assert [event.source for event in events] == [event['source'] for event in info['events']]


def test_manifest_format(dataset):
    from audiocraft.data.audio_dataset import AudioMeta, load_audio_meta
    for split in synth.SPLITS:
        manifest = dataset / 'egs' / split / 'data.jsonl'
        meta = load_audio_meta(manifest)
        for line, entry in zip(manifest.read_text().splitlines(), meta, strict=True):
            assert json.loads(line) == AudioMeta.from_dict(json.loads(line)).to_dict()
            assert Path(entry.path).is_absolute() and Path(entry.path).exists()
            assert entry.path.startswith(str((dataset / split).absolute()))
            assert entry.duration == 4.0 and entry.sample_rate == 16000


def test_audiocraft_datasets_read_the_benchmark(dataset):
    from audiocraft.data.audio_dataset import AudioDataset
    from audiocraft.data.music_dataset import MusicDataset
    from audiocraft.data.sound_dataset import SoundDataset

    audio = AudioDataset.from_meta(dataset / 'egs' / 'valid', sample_rate=16000, channels=1,
                                   segment_duration=2.0, num_samples=4, shuffle=False)
    assert audio[0].shape == (1, 32000)

    sound = SoundDataset.from_meta(dataset / 'egs' / 'train', sample_rate=16000, channels=1,
                                   segment_duration=None, shuffle=False)
    wav, info = sound[0]
    sidecar = json.loads(Path(info.meta.path).with_suffix('.json').read_text())
    assert wav.shape == (1, 64000)
    assert info.description == sidecar['description'].lower()  # SoundInfo lower-cases keywords.
    assert info.to_condition_attributes().text['description'] == info.description
    batch_wav, batch_info = sound.collater([sound[0], sound[1]])
    assert batch_wav.shape == (2, 1, 64000) and len(batch_info) == 2

    music = MusicDataset.from_meta(dataset / 'egs' / 'test', sample_rate=16000, channels=1,
                                   segment_duration=4.0, num_samples=3, shuffle=False,
                                   info_fields_required=True)
    wav, info = music[0]
    sidecar = json.loads(Path(info.meta.path).with_suffix('.json').read_text())
    assert wav.shape == (1, 64000)
    assert info.description == sidecar['description'] and info.has_music_meta
    assert info.keywords == sidecar['sources']


def test_captions_paraphrase():
    spec = synth.ClipSpec(['beep'], 2, 'single', 'high', seed=0)
    captions = {synth.describe(spec, np.random.default_rng(seed)) for seed in range(100)}
    assert len(captions) > 30
    assert all('twice' in caption or 'two' in caption.lower() or 'pair' in caption for caption in captions)
    assert any('high' in caption for caption in captions) and any('shrill' in caption for caption in captions)
    assert any('bleep' in caption for caption in captions) and any('beep' in caption for caption in captions)

    rng = np.random.default_rng(1)
    specs = [synth.sample_spec(rng, 'train') for _ in range(300)]
    captions = [synth.describe(spec, rng) for spec in specs]
    assert len(set(captions)) > 250
    for spec, caption in zip(specs, captions, strict=True):
        lower = caption.lower()
        count_words = {1: ('once', 'one', 'single'), 2: ('twice', 'two', 'pair'), 3: ('three', 'thrice')}
        assert any(word in lower for word in count_words[spec.count]), caption
        if spec.register is not None:
            assert any(word in lower for word in synth._REGISTER_WORDS[spec.register]), caption
    then_captions = [caption for spec, caption in zip(specs, captions, strict=True) if spec.relation == 'then']
    while_captions = [caption for spec, caption in zip(specs, captions, strict=True) if spec.relation == 'while']
    assert len({caption.split()[0] for caption in then_captions}) > 3
    assert any(' while ' in caption for caption in while_captions)
    assert any(' over ' in caption for caption in while_captions)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match='num_clips'):
        synth.generate_dataset(tmp_path, 0, seed=0)
    with pytest.raises(ValueError, match='duration'):
        synth.generate_dataset(tmp_path, 3, seed=0, duration=1.0)
    with pytest.raises(ValueError, match='sample_rate'):
        synth.generate_dataset(tmp_path, 3, seed=0, sample_rate=8000)
    with pytest.raises(ValueError, match='distinct'):
        synth.ClipSpec(['beep', 'beep'], 1, 'then', 'low', 0)
    with pytest.raises(ValueError, match='background'):
        synth.ClipSpec(['beep', 'knock'], 1, 'while', 'low', 0)
    with pytest.raises(ValueError, match='count'):
        synth.ClipSpec(['knock'], 4, 'single', None, 0)
    with pytest.raises(ValueError, match='register'):
        synth.ClipSpec(['beep'], 1, 'single', None, 0)
    with pytest.raises(ValueError, match='No clips'):
        synth.load_clips(tmp_path)
    result = subprocess.run([sys.executable, '-m', 'rr_audiocraft.data.synth', str(tmp_path / 'x'),
                             '--num-clips', '0', '--seed', '0'], capture_output=True, text=True)
    assert result.returncode == 2 and 'num_clips must be at least 1' in result.stderr
    assert not (tmp_path / 'x').exists()


def test_cli_writes_a_dataset(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'rr_audiocraft.data.synth', str(tmp_path / 'bench'),
                             '--num-clips', '5', '--seed', '1', '--duration', '3', '--sample-rate', '24000'],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert 'RuntimeWarning' not in result.stderr
    wavs, infos, sample_rate = synth.load_clips(tmp_path / 'bench' / 'egs' / 'train')
    assert sample_rate == 24000 and len(wavs) == 3 and wavs[0].shape == (72000,)
    assert all(info['split'] == 'train' for info in infos)
