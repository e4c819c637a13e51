"""`python -m rr_audiocraft.data.prepare`: each caption format on clips laid out as the dataset ships them,
every defect class, --strict, the split, the probe cache; read back through stock SoundDataset/MusicDataset
and trained on by a tiny RR AudioGen."""
import csv
import gzip
import json
import os
import typing as tp
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from audiocraft.data.audio_dataset import AudioDataset, load_audio_meta
from audiocraft.data.music_dataset import MusicDataset
from audiocraft.data.sound_dataset import SoundDataset
from rr_audiocraft.data import prepare
from conftest import run_cli, run_xp

MUSIC_KEYS = {'title', 'artist', 'key', 'bpm', 'genre', 'moods', 'keywords', 'description', 'name', 'instrument'}
# Captions a converter must not alter: unicode, quotes, HTML, commas, leading/trailing text as written.
ODD_CAPTION = 'Ünïcödé “quotes”, "double" & <b>HTML</b> — 日本語'


def write_clip(path: Path, sample_rate: int = 16000, seconds: float = 1.5, amplitude: float = 0.3,
               channels: int = 1, freq: float = 440.0) -> Path:
    """A sine clip (any extension soundfile writes: wav, flac, ogg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    wav = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    soundfile.write(path, np.stack([wav] * channels, axis=1), sample_rate)
    return path


def write_csv(path: Path, header: tp.List[str], rows: tp.List[tp.List[tp.Any]]) -> Path:
    with open(path, 'w', newline='', encoding='utf-8') as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def run(capsys, *argv: tp.Any) -> tp.Tuple[int, str]:
    code, out, err = run_cli(prepare.main, [str(arg) for arg in argv] + ['--no-progress'], capsys)
    return code, out + err


def report(out: Path) -> dict:
    return json.loads((out / 'report.json').read_text(encoding='utf-8'))


def report_absent(out: Path) -> bool:
    return not out.exists()


def sidecars(split: Path) -> tp.Dict[str, tp.Any]:
    """Sidecar of each manifest entry (found as stock does: next to the manifest's path), by the link's name."""
    found = {}
    for meta in load_audio_meta(split / 'data.jsonl.gz'):
        info = Path(meta.path).with_suffix('.json')
        found[Path(meta.path).name] = json.loads(info.read_text())
    return found


def dataset_kwargs(sample_rate: int) -> dict:
    """What AudioCraft's `get_audio_datasets` passes to `from_meta` (whole short clips, in order)."""
    return dict(segment_duration=1.0, sample_rate=sample_rate, channels=1, num_samples=4, shuffle=False,
                min_segment_ratio=0.5, return_info=True)


def audiocaps_layout(root: Path) -> Path:
    """AudioCaps: one row per caption, several per clip; files `Y<id>.wav` or `<id>_<start>.wav`."""
    audio = root / 'audio'
    write_clip(audio / 'Yabc123XYZ_.wav')     # id ending in '_' found as Y + id
    write_clip(audio / 'd_e-f_30.wav')        # id containing '_' found as {id}_{start}
    write_clip(audio / 'ghi456.wav', seconds=2.0)
    return write_csv(root / 'train.csv', ['audiocap_id', 'youtube_id', 'start_time', 'caption'], [
        [1, 'abc123XYZ_', 0, 'A dog barks'], [2, 'abc123XYZ_', 0, ODD_CAPTION], [3, 'd_e-f', 30, 'Rain falls'],
        [4, 'ghi456', 10, 'A car passes '], [5, 'abc123XYZ_', 0, 'Barking far away'],
    ])


def test_audiocaps(tmp_path, capsys):
    captions = audiocaps_layout(tmp_path)
    out = tmp_path / 'out'
    code, text = run(capsys, 'audiocaps', '--captions', captions, '--audio', tmp_path / 'audio', '--out', out)
    assert code == 0, text
    assert not report(out)['problem_counts']
    assert sidecars(out) == {
        'Yabc123XYZ_.wav': {'description': ['A dog barks', ODD_CAPTION, 'Barking far away']},
        'd_e-f_30.wav': {'description': 'Rain falls'},
        'ghi456.wav': {'description': 'A car passes '},
    }
    assert sorted(os.listdir(tmp_path / 'audio')) == ['Yabc123XYZ_.wav', 'd_e-f_30.wav', 'ghi456.wav']
    metas = {Path(m.path).name: m for m in load_audio_meta(out / 'data.jsonl.gz')}
    assert metas['ghi456.wav'].duration == pytest.approx(2.0) and metas['ghi456.wav'].sample_rate == 16000
    assert len(AudioDataset.from_meta(out, segment_duration=1.0, sample_rate=16000, channels=1).meta) == 3

    dataset = SoundDataset.from_meta(out, **dataset_kwargs(16000))
    for index in range(len(dataset)):
        wav, info = dataset[index]
        assert wav.shape == (1, 16000) and torch.isfinite(wav).all()
        name = Path(info.meta.path).name
        allowed = sidecars(out)[name]['description']
        allowed = allowed if isinstance(allowed, list) else [allowed]
        # Stock draws one caption per item and lowercases it (get_keyword); the sidecar keeps it as written.
        assert info.description in {caption.strip().lower() for caption in allowed}


def test_audiocaps_audio_name_template(tmp_path, capsys):
    audio = tmp_path / 'audio'
    write_clip(audio / 'abc_30.000.flac')
    write_clip(audio / 'abc_40.000.flac')  # same id, another start: found by the template, ambiguous without
    captions = write_csv(tmp_path / 'c.csv', ['audiocap_id', 'youtube_id', 'start_time', 'caption'],
                         [[1, 'abc', '30.000', 'first']])
    code, text = run(capsys, 'audiocaps', '--captions', captions, '--audio', audio, '--out', tmp_path / 'plain')
    assert code == 2 and report_absent(tmp_path / 'plain')
    assert 'ambiguous_file (1)' in text and 'abc_30.000.flac, abc_40.000.flac' in text
    code, text = run(capsys, 'audiocaps', '--captions', captions, '--audio', audio, '--out', tmp_path / 'out',
                     '--audio-name', '{youtube_id}_{start_time}.flac')
    assert code == 0, text
    assert sidecars(tmp_path / 'out') == {'abc_30.000.flac': {'description': 'first'}}
    code, text = run(capsys, 'audiocaps', '--captions', captions, '--audio', audio, '--out', tmp_path / 'bad',
                     '--audio-name', '{ytid}.flac')
    assert code == 2 and text.count('\n') == 1 and "'ytid'" in text


def test_clotho(tmp_path, capsys):
    """Clotho: `file_name,caption_1..caption_5`, files (names with spaces) in development/; --audio the parent."""
    audio = tmp_path / 'clotho'
    write_clip(audio / 'development' / 'Water dripping 01.wav', sample_rate=44100)
    write_clip(audio / 'development' / 'birds.at.dawn.wav', sample_rate=44100)
    five = [f'caption {i} of the water' for i in range(1, 6)]
    captions = write_csv(tmp_path / 'clotho_captions_development.csv',
                         ['file_name'] + [f'caption_{i}' for i in range(1, 6)],
                         [['Water dripping 01.wav', *five], ['birds.at.dawn.wav', ODD_CAPTION, 'b', 'c', 'd', 'e']])
    out = tmp_path / 'out'
    code, text = run(capsys, 'clotho', '--captions', captions, '--audio', audio, '--out', out)
    assert code == 0, text
    found = sidecars(out)
    assert found['Water dripping 01.wav'] == {'description': five}
    assert found['birds.at.dawn.wav'] == {'description': [ODD_CAPTION, 'b', 'c', 'd', 'e']}
    assert (out / 'audio' / 'development' / 'birds.at.dawn.json').exists()  # with_suffix, as stock looks
    dataset = SoundDataset.from_meta(out, **dataset_kwargs(16000))  # 44.1 kHz sources resampled by stock
    _, info = dataset[0]
    assert info.description in {caption.lower() for caption in [*five, ODD_CAPTION, 'b', 'c', 'd', 'e']}


MUSICCAPS_COLUMNS = ['ytid', 'start_s', 'end_s', 'audioset_positive_labels', 'aspect_list', 'caption', 'author_id',
                     'is_balanced_subset', 'is_audioset_eval']


def test_musiccaps(tmp_path, capsys):
    """MusicCaps: its public csv; 32 kHz clips (one stereo) named by ytid; a 16 kHz one is below the recipe."""
    audio = tmp_path / 'music'
    write_clip(audio / '-0Gj8-vB1q4.wav', sample_rate=32000, channels=2)
    write_clip(audio / 'Y-0SdAVK79lg.wav', sample_rate=48000)
    write_clip(audio / 'low16k.wav', sample_rate=16000)
    captions = write_csv(tmp_path / 'musiccaps-public.csv', MUSICCAPS_COLUMNS, [
        ['-0Gj8-vB1q4', 30, 40, "['/m/0140xf']", "['low quality', 'sustained strings melody']",
         'The low quality recording features a "sustained" strings melody.', 4, False, True],
        ['-0SdAVK79lg', 30, 40, "['/m/0155w']", "['guitar song', 'piano']", ODD_CAPTION, 0, False, False],
        ['low16k', 0, 10, '', "['x']", 'Too low a rate', 1, False, False],
    ])
    out = tmp_path / 'out'
    code, text = run(capsys, 'musiccaps', '--captions', captions, '--audio', audio, '--out', out)
    assert code == 0, text
    assert report(out)['problem_counts'] == {'low_sample_rate': 1}
    found = sidecars(out)
    assert set(found) == {'-0Gj8-vB1q4.wav', 'Y-0SdAVK79lg.wav'}
    for sidecar in found.values():
        assert set(sidecar) == MUSIC_KEYS and isinstance(sidecar['description'], str)
    assert found['Y-0SdAVK79lg.wav']['description'] == ODD_CAPTION
    assert found['-0Gj8-vB1q4.wav']['keywords'] == ['low quality', 'sustained strings melody']

    # Stock MusicDataset with its defaults (every MusicInfo key required, text augmentation off).
    dataset = MusicDataset.from_meta(out, **dataset_kwargs(32000))
    descriptions = set()
    for index in range(len(dataset)):
        wav, info = dataset[index]
        assert wav.shape == (1, 32000)
        descriptions.add(info.description)
    assert descriptions == {'The low quality recording features a "sustained" strings melody.', ODD_CAPTION}


def test_wavcaps(tmp_path, capsys):
    """WavCaps json: the processed `caption` (string or list), never the raw web `description`."""
    audio = tmp_path / 'SoundBible_flac'
    write_clip(audio / '2219.flac')
    write_clip(audio / '1001.flac')
    document = {'num_captions_per_audio': 1, 'data': [
        {'title': 'Airplane Landing Airport', 'description': 'Large commercial airplane landing <a href=x>here</a>',
         'author': 'Daniel Simion', 'href': '2219-Airplane.html', 'caption': 'An airplane is landing.',
         'id': '2219', 'duration': 1.5, 'audio': 'wav_path', 'download_link': 'http://x'},
        {'id': '1001', 'caption': [ODD_CAPTION, 'second'], 'description': 'RAW TEXT', 'audio': '/elsewhere/1001.flac'},
    ]}
    captions = tmp_path / 'sb_final.json'
    captions.write_text(json.dumps(document), encoding='utf-8')
    out = tmp_path / 'out'
    code, text = run(capsys, 'wavcaps', '--captions', captions, '--audio', audio, '--out', out)
    assert code == 0, text
    assert sidecars(out) == {'2219.flac': {'description': 'An airplane is landing.'},
                             '1001.flac': {'description': [ODD_CAPTION, 'second']}}
    _, info = SoundDataset.from_meta(out, **dataset_kwargs(16000))[0]
    assert info.description in {'an airplane is landing.', ODD_CAPTION.lower(), 'second'}


def test_csv_custom_columns(tmp_path, capsys):
    audio = tmp_path / 'mine'
    write_clip(audio / 'a' / 'one.ogg')
    write_clip(audio / 'b' / 'two.wav', sample_rate=32000)
    captions = write_csv(tmp_path / 'mine.csv', ['file', 'text', 'genre'], [
        ['a/one.ogg', 'first of one', 'rock'], ['b/two.wav', 'two', 'jazz'], ['a/one.ogg', 'second of one', 'x']])
    out = tmp_path / 'sound'
    code, text = run(capsys, 'csv', '--captions', captions, '--audio', audio, '--out', out,
                     '--path-column', 'file', '--caption-column', 'text')
    assert code == 0, text
    assert sidecars(out) == {'one.ogg': {'description': ['first of one', 'second of one']},
                             'two.wav': {'description': 'two'}}
    # Music: MusicInfo columns kept, one description per clip (a second row of a file is a duplicate).
    code, text = run(capsys, 'csv', '--captions', captions, '--audio', audio, '--out', tmp_path / 'music',
                     '--path-column', 'file', '--caption-column', 'text', '--kind', 'music', '--min-sample-rate', 16000)
    assert code == 0, text
    assert report(tmp_path / 'music')['problem_counts'] == {'duplicate_id': 1}
    music = sidecars(tmp_path / 'music')
    assert music['one.ogg']['description'] == 'first of one' and music['one.ogg']['genre'] == 'rock'
    assert set(music['two.wav']) == MUSIC_KEYS
    dataset = MusicDataset.from_meta(tmp_path / 'music', **dataset_kwargs(32000))
    read = {(info.description, info.genre) for info in (dataset[index][1] for index in range(len(dataset)))}
    assert read == {('first of one', 'rock'), ('two', 'jazz')}  # shuffle off: draws seeded by index, both files
    code, text = run(capsys, 'csv', '--captions', captions, '--audio', audio, '--out', tmp_path / 'x',
                     '--caption-column', 'text')
    assert code == 2 and "no column 'path'" in text and text.count('\n') == 1


def broken_folder(root: Path) -> tp.Tuple[Path, Path]:
    """A csv and folder with one clip of each defect class, and three good clips."""
    audio = root / 'audio'
    for name in ('good1.wav', 'good2.wav', 'good3.flac', 'nocaption.wav', 'dup.wav'):
        write_clip(audio / name)
    write_clip(audio / 'quiet.wav', amplitude=0.0)
    write_clip(audio / 'short.wav', seconds=0.4)
    write_clip(audio / 'low.wav', sample_rate=8000)
    (audio / 'empty.wav').write_bytes(b'')
    (audio / 'garbage.wav').write_bytes(b'RIFF not really a wave file' * 20)
    write_clip(root / 'secret.wav')                       # outside --audio
    os.symlink(root / 'secret.wav', audio / 'link_out.wav')
    os.symlink('dup.wav', audio / 'alias.wav')            # another name of dup.wav: the same clip twice
    rows = [
        ['good1.wav', 'good one'], ['good2.wav', 'good two'], ['good3.flac', 'good three'],
        ['missing.wav', 'no such file'], ['garbage.wav', 'unreadable'], ['empty.wav', 'empty'],
        ['quiet.wav', 'silent'], ['short.wav', 'too short'], ['low.wav', 'low rate'], ['nocaption.wav', '  '],
        ['', 'row naming no file'], ['../secret.wav', 'escapes'], ['link_out.wav', 'escapes by a link'],
        ['dup.wav', 'dup'], ['./dup.wav', 'dup, second caption'], ['alias.wav', 'the same file again'],
    ]
    return write_csv(root / 'captions.csv', ['path', 'caption'], rows), audio


EXPECTED_BROKEN = {'no_file_named': 1, 'escapes_audio_dir': 2, 'missing_file': 1, 'duplicate_id': 1,
                   'empty_caption': 1, 'empty_file': 1, 'unreadable': 1, 'silent': 1, 'too_short': 1,
                   'low_sample_rate': 1}


def test_broken_folder_reports_every_defect_and_keeps_the_good(tmp_path, capsys):
    captions, audio = broken_folder(tmp_path)
    out = tmp_path / 'out'
    code, text = run(capsys, 'csv', '--captions', captions, '--audio', audio, '--out', out)
    assert code == 0, text
    result = report(out)
    assert result['problem_counts'] == EXPECTED_BROKEN
    assert sorted(sidecars(out)) == ['dup.wav', 'good1.wav', 'good2.wav', 'good3.flac']
    for kind, count in EXPECTED_BROKEN.items():
        assert f'{kind} ({count})' in text
    escaped = {item['path'] for item in result['problems']['escapes_audio_dir']}
    assert escaped == {'../secret.wav', 'link_out.wav'}
    # Refused paths are never read: the probe cache holds only files inside --audio.
    with gzip.open(out / prepare.CACHE, 'rt') as file:
        probed = json.load(file)
    assert not any('secret' in path or 'link_out' in path for path in probed)
    assert sorted(os.listdir(audio)) == sorted(['good1.wav', 'good2.wav', 'good3.flac', 'nocaption.wav', 'dup.wav',
                                                'quiet.wav', 'short.wav', 'low.wav', 'empty.wav', 'garbage.wav',
                                                'link_out.wav', 'alias.wav'])
    assert sidecars(out)['dup.wav'] == {'description': ['dup', 'dup, second caption']}


def test_audiocaps_duplicate_caption_id_and_conflicting_start(tmp_path, capsys):
    audio = tmp_path / 'audio'
    write_clip(audio / 'Yaaa.wav')
    captions = write_csv(tmp_path / 'c.csv', ['audiocap_id', 'youtube_id', 'start_time', 'caption'], [
        [7, 'aaa', 0, 'one'], [7, 'aaa', 0, 'same caption id'], [8, 'aaa', 20, 'another start'], [9, 'aaa', 0, 'two']])
    code, text = run(capsys, 'audiocaps', '--captions', captions, '--audio', audio, '--out', tmp_path / 'out')
    assert code == 0, text
    assert report(tmp_path / 'out')['problem_counts'] == {'duplicate_id': 2}
    assert sidecars(tmp_path / 'out') == {'Yaaa.wav': {'description': ['one', 'two']}}


def test_strict_writes_nothing(tmp_path, capsys):
    captions, audio = broken_folder(tmp_path)
    out = tmp_path / 'out'
    code, text = run(capsys, 'csv', '--captions', captions, '--audio', audio, '--out', out, '--strict')
    assert code == 2 and 'nothing written' in text and 'silent (1)' in text
    assert not out.exists()


def split_layout(root: Path, count: int) -> Path:
    for index in range(count):
        write_clip(root / 'audio' / f'c{index:02d}.wav', seconds=1.0, freq=200 + 20 * index)
    return write_csv(root / 'c.csv', ['path', 'caption'], [[f'c{i:02d}.wav', f'clip {i}'] for i in range(count)])


def split_sets(out: Path) -> tp.Dict[str, tp.Set[str]]:
    return {split: set(sidecars(out / split)) for split in ('train', 'valid')}


def test_valid_fraction_split_is_deterministic(tmp_path, capsys):
    captions = split_layout(tmp_path, 20)
    common = ['csv', '--captions', captions, '--audio', tmp_path / 'audio', '--valid-fraction', 0.25]
    assert run(capsys, *common, '--seed', 3, '--out', tmp_path / 'a')[0] == 0
    assert run(capsys, *common, '--seed', 3, '--out', tmp_path / 'b')[0] == 0
    assert run(capsys, *common, '--seed', 4, '--out', tmp_path / 'c')[0] == 0
    first = split_sets(tmp_path / 'a')
    assert first == split_sets(tmp_path / 'b')
    assert first != split_sets(tmp_path / 'c')
    assert not first['train'] & first['valid'] and len(first['train'] | first['valid']) == 20
    assert first['valid'] and first['train']
    assert report(tmp_path / 'a')['splits']['valid']['clips'] == len(first['valid'])
    # A clip's split depends only on (seed, clip): dropping other clips moves none of the rest.
    write_csv(tmp_path / 'fewer.csv', ['path', 'caption'], [[f'c{i:02d}.wav', f'clip {i}'] for i in range(0, 20, 2)])
    assert run(capsys, 'csv', '--captions', tmp_path / 'fewer.csv', '--audio', tmp_path / 'audio',
               '--valid-fraction', 0.25, '--seed', 3, '--out', tmp_path / 'd')[0] == 0
    fewer = split_sets(tmp_path / 'd')
    if fewer['valid'] <= first['valid']:  # unless the small set's valid was topped up from train (none here)
        assert fewer['valid'] == {name for name in first['valid'] if int(name[1:3]) % 2 == 0}
    else:
        raise AssertionError(f'valid of the subset {fewer} not within {first}')
    SoundDataset.from_meta(tmp_path / 'a' / 'valid', **dataset_kwargs(16000))[0]
    # One clip cannot fill both splits: refused, nothing written (not an empty manifest).
    write_csv(tmp_path / 'one.csv', ['path', 'caption'], [['c00.wav', 'alone']])
    code, text = run(capsys, 'csv', '--captions', tmp_path / 'one.csv', '--audio', tmp_path / 'audio',
                     '--valid-fraction', 0.25, '--out', tmp_path / 'e')
    assert code == 2 and 'cannot fill both train and valid' in text and not (tmp_path / 'e').exists()


def test_rerun_reuses_the_probe_of_unchanged_files(tmp_path, capsys):
    captions = split_layout(tmp_path, 5)
    common = ['csv', '--captions', captions, '--audio', tmp_path / 'audio', '--out', tmp_path / 'out']
    assert run(capsys, *common)[0] == 0
    first = (tmp_path / 'out' / 'data.jsonl.gz').read_bytes()
    assert report(tmp_path / 'out')['probe'] | {'seconds': 0} == {
        'files': 5, 'read': 5, 'cached': 0, 'seconds': 0, 'workers': prepare.get_parser().get_default('workers'),
        'pool': 'thread'}
    assert run(capsys, *common)[0] == 0
    assert (report(tmp_path / 'out')['probe']['read'], report(tmp_path / 'out')['probe']['cached']) == (0, 5)
    assert gzip.decompress((tmp_path / 'out' / 'data.jsonl.gz').read_bytes()) == gzip.decompress(first)
    write_clip(tmp_path / 'audio' / 'c01.wav', seconds=2.0)  # changed: size and mtime
    os.utime(tmp_path / 'audio' / 'c01.wav', ns=(1, 1))
    assert run(capsys, *common)[0] == 0
    assert (report(tmp_path / 'out')['probe']['read'], report(tmp_path / 'out')['probe']['cached']) == (1, 4)
    durations = {Path(m.path).name: m.duration for m in load_audio_meta(tmp_path / 'out' / 'data.jsonl.gz')}
    assert durations['c01.wav'] == pytest.approx(2.0)
    # A clip dropped from the caption file leaves no link or sidecar behind.
    write_csv(captions, ['path', 'caption'], [['c00.wav', 'only']])
    assert run(capsys, *common)[0] == 0
    assert sorted(os.listdir(tmp_path / 'out' / 'audio')) == ['c00.json', 'c00.wav']


def test_default_out_is_where_the_recipe_reads(tmp_path, capsys, monkeypatch):
    captions = split_layout(tmp_path, 2)
    monkeypatch.chdir(tmp_path)
    code, text = run(capsys, 'csv', '--captions', captions, '--audio', 'audio')
    assert code == 2 and '--split train' in text and text.count('\n') == 1
    assert run(capsys, 'csv', '--captions', captions, '--audio', 'audio', '--split', 'valid')[0] == 0
    assert (tmp_path / 'egs' / 'rr_sound_16khz' / 'valid' / 'data.jsonl.gz').exists()
    assert run(capsys, 'csv', '--captions', captions, '--audio', 'audio', '--valid-fraction', 0.5)[0] == 0
    assert (tmp_path / 'egs' / 'rr_sound_16khz' / 'train' / 'data.jsonl.gz').exists()
    for out in ('audio/x', '.'):  # inside --audio, or --audio is where the links would go (OUT/audio)
        code, text = run(capsys, 'csv', '--captions', captions, '--audio', 'audio', '--out', out)
        assert code == 2 and 'never writes into the audio folder' in text, out
    assert sorted(os.listdir('audio')) == ['c00.wav', 'c01.wav']


@pytest.mark.parametrize('ext, subtype', [('wav', 'PCM_16'), ('wav', 'FLOAT'), ('flac', 'PCM_24'), ('ogg', 'VORBIS'),
                                          ('mp3', 'MPEG_LAYER_III')])
def test_probe_agrees_with_soundfile_info(tmp_path, ext, subtype):
    path = tmp_path / f'clip.{ext}'
    t = np.arange(22050) / 22050
    soundfile.write(path, np.stack([0.2 * np.sin(600 * t), 0.1 * np.sin(900 * t)], axis=1), 22050, subtype=subtype)
    info = soundfile.info(str(path))
    assert prepare.probe(str(path)) == {'sample_rate': info.samplerate, 'frames': info.frames,
                                        'channels': info.channels, 'silent': False}


def test_probe_reads_m4a_through_the_stock_reader(tmp_path):
    """m4a (which libsndfile does not read) goes through AudioCraft's PyAV reader; garbage is unreadable."""
    av = pytest.importorskip('av')
    path = tmp_path / 'clip.m4a'
    wav = (0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)[None]
    with av.open(str(path), 'w', format='ipod') as container:
        stream = container.add_stream('aac', rate=16000)
        stream.layout = 'mono'
        for start in range(0, wav.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(wav[:, start:start + 1024].copy(), format='fltp', layout='mono')
            frame.sample_rate = 16000
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    result = prepare.probe(str(path))
    assert result['sample_rate'] == 16000 and result['channels'] == 1 and result['silent'] is False
    assert 32000 <= result['frames'] <= 32000 + 2048  # AAC adds encoder priming / padding frames
    (tmp_path / 'bad.m4a').write_bytes(b'not an mp4 container' * 10)
    assert prepare.probe(str(tmp_path / 'bad.m4a'))['error'].startswith('unreadable: ')


def test_probe_finds_sound_after_a_long_silence(tmp_path):
    """Silence is decided on every sample: a clip silent but for its last 10 ms is not silent."""
    wav = np.zeros(16000 * 5, dtype=np.float32)
    wav[-160:] = 0.01
    soundfile.write(tmp_path / 'late.wav', wav, 16000)
    assert prepare.probe(str(tmp_path / 'late.wav'))['silent'] is False
    soundfile.write(tmp_path / 'dither.wav', np.full(16000, 5e-5, dtype=np.float32), 16000, subtype='FLOAT')
    assert prepare.probe(str(tmp_path / 'dither.wav'))['silent'] is True


@pytest.mark.slow
def test_prepared_folders_train_tiny_audiogen_and_musicgen(tmp_path, capsys):
    """AudioCaps-shaped data prepared with a valid split trains a tiny RR AudioGen (2 epochs of 2 updates), and
    MusicCaps-shaped data a tiny RR MusicGen, both by `dora run`, through the solvers' start-up data check."""
    audio = tmp_path / 'audio'
    rows = []
    for index in range(16):
        write_clip(audio / f'Yid{index:02d}.wav', seconds=4.0, freq=150 + 40 * index)
        rows += [[2 * index, f'id{index:02d}', 0, f'tone number {index}'], [2 * index + 1, f'id{index:02d}', 0,
                                                                             f'a sine at {150 + 40 * index} hz']]
    captions = write_csv(tmp_path / 'audiocaps.csv', ['audiocap_id', 'youtube_id', 'start_time', 'caption'], rows)
    sound = tmp_path / 'sound'
    code, text = run(capsys, 'audiocaps', '--captions', captions, '--audio', audio, '--out', sound,
                     '--valid-fraction', 0.25, '--seed', 0)
    assert code == 0, text
    run_short = ['optim.epochs=2', 'optim.updates_per_epoch=2', 'dataset.batch_size=4', 'dataset.valid.num_samples=4',
                 'dataset.evaluate.num_samples=2', 'generate.lm.gen_duration=0.5', 'num_threads=1']
    data = [f'datasource.train={sound}/train', f'datasource.valid={sound}/valid',
            f'datasource.evaluate={sound}/valid', f'datasource.generate={sound}/valid']
    run_xp('solver=rr_audiogen/tiny', *run_short, *data)

    music_audio = tmp_path / 'music'
    music_rows = []
    for index in range(8):
        write_clip(music_audio / f'mc{index}.wav', sample_rate=32000, seconds=4.0, freq=220 + 55 * index)
        music_rows.append([f'mc{index}', 0, 10, '', "['tone']", f'A calm tone, number {index}.', 0, False, False])
    music_captions = write_csv(tmp_path / 'musiccaps-public.csv', MUSICCAPS_COLUMNS, music_rows)
    music = tmp_path / 'music_out'
    code, text = run(capsys, 'musiccaps', '--captions', music_captions, '--audio', music_audio, '--out', music,
                     '--valid-fraction', 0.25)
    assert code == 0, text
    run_xp('solver=rr_musicgen/tiny', 'optim.epochs=1', *run_short[1:],
           *[item.replace(str(sound), str(music)) for item in data])
