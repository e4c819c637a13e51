"""Caption datasets to AudioCraft manifests and sidecars in one command, every defect reported.

    python -m rr_audiocraft.data.prepare FORMAT --captions FILE --audio DIR [--out DIR | --split S]
                                         [--valid-fraction F --seed S] [--strict] ...

FORMAT is `audiocaps`, `clotho`, `musiccaps`, `wavcaps` or `csv` (see `docs/data.md` for each one's layout
and commands). What is written, in each split folder (OUT, or OUT/train and OUT/valid with --valid-fraction):
- `data.jsonl.gz`: the stock manifest (`AudioMeta` lines, absolute paths), what `AudioDataset.from_meta(split)`
  reads; written last, by one rename.
- `audio/<path under --audio>`: a symbolic link to each kept clip, next to its JSON sidecar `audio/<stem>.json`.
  Stock `MusicDataset` reads a sidecar only next to the manifest's audio path (`path.with_suffix('.json')`);
  stock `SoundDataset` reads it there first (its `external_metadata_source` is one folder shared by every
  split, so it cannot tell train from valid sidecars apart). Manifest paths therefore point at the links:
  both dataset classes find their sidecars with no extra setting, and nothing is written into --audio.
- OUT/report.json: every problem found, by class, with the caption-file line and the file; the same
  summary is printed at the end. OUT/.prepare_probe_cache.json.gz: the probe of each audio file keyed on
  its path, size and modification time, so that a rerun reads only new or changed files.

Sidecars: sound clips get `{"description": caption}` or a list of every caption of the clip (stock
`SoundDataset` draws one per item); music clips get every `MusicInfo` key (absent values are null, stock
raises `KeyError` on a missing one) with `description` one string (stock drops a list). Captions are kept
exactly as written; the JSON is ASCII-escaped so that stock's `open(path, 'r')` reads it identically
whatever the locale's encoding.

Bad input never stops the run: a problem drops the row or clip it concerns, is listed, and the good clips
are written (exit 0). `--strict` exits with status 2 and writes nothing when there is any problem; so does
a run left with no clip, or with too few to fill both train and valid.
Start-up refusals (no such caption file, missing columns, a bad option) are one line on stderr, exit 2.
"""
from .. import configured  # noqa: F401  (first: the process set-up AudioCraft needs at import)
import argparse
import ast
import csv
import gzip
import hashlib
import json
import os
import re
import sys
import time
import typing as tp
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from soundfile import _ffi as _sf_ffi, _snd as _sf_lib  # libsndfile, as soundfile binds it
from tqdm import tqdm

from audiocraft.data.audio import audio_info, audio_read
from audiocraft.data.audio_dataset import DEFAULT_EXTS, AudioMeta, save_audio_meta

from .validate import SIDECAR_FIELDS

FORMATS = ('audiocaps', 'clotho', 'musiccaps', 'wavcaps', 'csv')
# Which stock dataset class reads a format's clips (csv: --kind).
FORMAT_KIND = {'audiocaps': 'sound', 'clotho': 'sound', 'wavcaps': 'sound', 'musiccaps': 'music'}
# Where the paper recipes read (config/dset/rr_sound_16khz.yaml, rr_music_32khz.yaml; relative to where dora runs).
RECIPE_DATA = {'sound': Path('egs/rr_sound_16khz'), 'music': Path('egs/rr_music_32khz')}
# The recipes' sample rates (paper §4.2): a source below it would be upsampled, i.e. has no content up there.
MIN_SAMPLE_RATE = {'sound': 16000, 'music': 32000}
DEFAULT_MIN_DURATION = 1.0  # seconds; shorter clips are mostly padding in a 10 s (sound) or 30 s (music) segment
# The extensions stock `find_audio_files` scans; the first four are decoded by libsndfile (>= 1.1 for mp3).
AUDIO_EXTS = tuple(DEFAULT_EXTS)
SOUNDFILE_EXTS = ('.wav', '.flac', '.mp3', '.ogg')
# MusicInfo's metadata fields, as the solvers' start-up check reads them (all but `keywords` must be present).
MUSIC_FIELDS = tuple(SIDECAR_FIELDS['music'])
SILENCE_PEAK = 1e-4     # -80 dBFS: a clip whose every sample is below this is silent (digital silence, dither)
PROBE_BLOCK = 2048      # frames read at a time when looking for a non-silent sample (stops at the first one)
SERIAL_BELOW = 2000     # fewer files than this are probed in-process: a pool's start-up costs more
PROBE_CHUNK = 256       # files per pool task
WRITE_THREADS = 4       # links and sidecars written at a time: file creation waits on the disk, not the CPU
MANIFEST = 'data.jsonl.gz'
REPORT = 'report.json'
CACHE = '.prepare_probe_cache.json.gz'
LINKS = 'audio'
EXAMPLES_SHOWN = 3      # examples per problem class in the printed summary (report.json has them all)

# Problem classes, in the order the summary lists them, with what each means.
PROBLEMS = {
    'no_file_named': 'the row names no audio file (empty id / path field)',
    'escapes_audio_dir': 'the path resolves outside --audio: refused, never read',
    'missing_file': 'no audio file found for the row',
    'ambiguous_file': 'several audio files match the id (set --audio-name)',
    'duplicate_id': 'the id (or its audio file, or its sidecar name) was already given by an earlier row: row dropped',
    'empty_caption': 'an empty caption (the clip is dropped when it has no other one)',
    'empty_file': 'the audio file has 0 bytes or 0 samples',
    'unreadable': 'the audio file does not decode',
    'silent': f'every sample is below {SILENCE_PEAK:g} (-80 dBFS)',
    'too_short': 'shorter than --min-duration',
    'low_sample_rate': 'sample rate below --min-sample-rate',
}


class PrepareError(ValueError):
    """A start-up refusal: the command cannot run on these arguments (nothing is read or written)."""


@dataclass
class Row:
    """One clip as the caption file gives it (several rows of one clip already merged)."""
    line: int                     # caption-file line (csv, header = 1) or entry index (json) of its first row
    clip_id: str                  # the dataset's id of the clip
    captions: tp.List[str]
    path: tp.Optional[str] = None      # a file path relative to --audio, when the format names one
    lookup_id: tp.Optional[str] = None  # an id to find the file by stem, when the format gives only that
    fields: tp.Dict[str, tp.Any] = field(default_factory=dict)  # the row's raw fields (--audio-name template)
    music: tp.Dict[str, tp.Any] = field(default_factory=dict)   # MusicInfo fields known from the row
    file: tp.Optional[Path] = None     # the audio file found (under --audio, not resolved)
    real: str = ''                     # its real path (links followed): what the manifest's link points to
    probe: tp.Dict[str, tp.Any] = field(default_factory=dict)


class Problems:
    """Problems by class, each with its row's line, id and file."""

    def __init__(self):
        self.by_class: tp.Dict[str, tp.List[tp.Dict[str, tp.Any]]] = {name: [] for name in PROBLEMS}

    def add(self, kind: str, line: tp.Optional[int], clip_id: tp.Optional[str], path: tp.Any = None,
            detail: str = '') -> None:
        self.by_class[kind].append({'line': line, 'id': clip_id, 'path': None if path is None else str(path),
                                    'detail': detail})

    def total(self) -> int:
        return sum(len(items) for items in self.by_class.values())

    def counts(self) -> tp.Dict[str, int]:
        return {name: len(items) for name, items in self.by_class.items() if items}


# ---------------------------------------------------------------------------------------------------------
# Reading the caption files


def _read_csv(path: Path, required: tp.Sequence[str]) -> tp.Tuple[tp.List[str], tp.List[tp.Tuple[int, dict]]]:
    """The header and (line, row) pairs of a csv (BOM tolerated); refuse it when a required column is absent."""
    try:
        with open(path, newline='', encoding='utf-8-sig') as file:
            reader = csv.DictReader(file)
            header = list(reader.fieldnames or [])
            missing = [name for name in required if name not in header]
            if missing:
                raise PrepareError(f"{path}: no column {', '.join(repr(m) for m in missing)} "
                                   f"(columns: {', '.join(header) or 'none'})")
            rows = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as error:
        raise PrepareError(f"{path}: not a UTF-8 csv ({error})") from None
    return header, rows


def _text(value: tp.Any) -> str:
    return '' if value is None else str(value)


def _merge(rows: tp.Dict[str, Row], row: Row) -> None:
    """Rows of one clip (AudioCaps, csv) become one clip with all their captions."""
    if row.clip_id in rows:
        rows[row.clip_id].captions.extend(row.captions)
    else:
        rows[row.clip_id] = row


def read_audiocaps(path: Path, problems: Problems, **_) -> tp.List[Row]:
    """`audiocap_id,youtube_id,start_time,caption`; one row per caption, several per clip (grouped by youtube id)."""
    _, lines = _read_csv(path, ['youtube_id', 'caption'])
    clips: tp.Dict[str, Row] = {}
    caption_ids: tp.Set[str] = set()
    for line, fields in lines:
        youtube_id = _text(fields.get('youtube_id')).strip()
        caption_id = _text(fields.get('audiocap_id')).strip()
        if caption_id and caption_id in caption_ids:
            problems.add('duplicate_id', line, youtube_id, detail=f'audiocap_id {caption_id} repeated')
            continue
        caption_ids.add(caption_id)
        first = clips.get(youtube_id)
        if youtube_id and first is not None and first.fields.get('start_time') != fields.get('start_time'):
            problems.add('duplicate_id', line, youtube_id,
                         detail=f"start_time {fields.get('start_time')} differs from line {first.line}'s "
                                f"{first.fields.get('start_time')}: a different clip under the same id")
            continue
        _merge(clips, Row(line, youtube_id, [_text(fields.get('caption'))], lookup_id=youtube_id, fields=fields))
    return list(clips.values())


def _numbered_captions(names: tp.Iterable[str]) -> tp.List[str]:
    """`caption_1..caption_N` among `names`, in numeric order (Clotho's columns, WavCaps' keys)."""
    return sorted((name for name in names if re.fullmatch(r'caption_\d+', name)), key=lambda name: int(name[8:]))


def read_clotho(path: Path, problems: Problems, **_) -> tp.List[Row]:
    """`file_name,caption_1..caption_5`: one row per clip, the file named relative to --audio."""
    header, lines = _read_csv(path, ['file_name'])
    caption_columns = _numbered_captions(header)
    if not caption_columns:
        raise PrepareError(f"{path}: no caption_N column (columns: {', '.join(header)})")
    rows: tp.List[Row] = []
    seen: tp.Dict[str, int] = {}
    for line, fields in lines:
        name = _text(fields.get('file_name'))
        if name and name in seen:
            problems.add('duplicate_id', line, name, detail=f'file_name already on line {seen[name]}')
            continue
        seen[name] = line
        rows.append(Row(line, name, [_text(fields.get(c)) for c in caption_columns], path=name, fields=fields))
    return rows


def _aspect_list(value: str) -> tp.Optional[tp.List[str]]:
    """MusicCaps' `aspect_list` is a Python list literal ("['pop', 'mellow piano']")."""
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return [value] if value.strip() else None
    return [str(item) for item in parsed] if isinstance(parsed, (list, tuple)) else [str(parsed)]


def read_musiccaps(path: Path, problems: Problems, **_) -> tp.List[Row]:
    """`musiccaps-public.csv`: `ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,...`."""
    _, lines = _read_csv(path, ['ytid', 'caption'])
    rows: tp.List[Row] = []
    seen: tp.Dict[str, int] = {}
    for line, fields in lines:
        ytid = _text(fields.get('ytid')).strip()
        if ytid and ytid in seen:
            problems.add('duplicate_id', line, ytid, detail=f'ytid already on line {seen[ytid]}')
            continue
        seen[ytid] = line
        music = {}
        if fields.get('aspect_list'):
            music['keywords'] = _aspect_list(fields['aspect_list'])
        rows.append(Row(line, ytid, [_text(fields.get('caption'))], lookup_id=ytid, fields=fields, music=music))
    return rows


def read_wavcaps(path: Path, problems: Problems, **_) -> tp.List[Row]:
    """WavCaps' json `{"num_captions_per_audio": N, "data": [{"id", "caption" | "caption_1..N", ...}]}`.

    Only the processed `caption` is read, never the raw web text in `description`. Files are found by id
    (the release names them `<id>.flac`); the entries' `audio` field is a path on the authors' machines.
    """
    try:
        with open(path, encoding='utf-8') as file:
            document = json.load(file)
    except json.JSONDecodeError as error:
        raise PrepareError(f"{path}: not JSON ({error})") from None
    entries = document.get('data') if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise PrepareError(f"{path}: no 'data' list (a WavCaps json is {{\"num_captions_per_audio\", \"data\"}})")
    rows: tp.List[Row] = []
    seen: tp.Dict[str, int] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.add('no_file_named', index, None, detail='entry is not an object')
            continue
        clip_id = _text(entry.get('id')).strip()
        if clip_id and clip_id in seen:
            problems.add('duplicate_id', index, clip_id, detail=f'id already in entry {seen[clip_id]}')
            continue
        seen[clip_id] = index
        caption = entry.get('caption')
        if caption is None:
            captions = [_text(entry[k]) for k in _numbered_captions(entry)]
        else:
            captions = [_text(c) for c in caption] if isinstance(caption, list) else [_text(caption)]
        flat = {k: v for k, v in entry.items() if isinstance(v, (str, int, float))}
        rows.append(Row(index, clip_id, captions, lookup_id=clip_id, fields=flat))
    return rows


def read_csv_any(path: Path, problems: Problems, path_column: str = 'path',
                 caption_columns: tp.Sequence[str] = ('caption',), kind: str = 'sound', **_) -> tp.List[Row]:
    """Any csv: `--path-column` (relative to --audio) and `--caption-column` (repeatable); rows naming the
    same file are one clip with all their captions (sound). Music: columns named as MusicInfo fields are kept."""
    _, lines = _read_csv(path, [path_column, *caption_columns])
    clips: tp.Dict[str, Row] = {}
    for line, fields in lines:
        name = _text(fields.get(path_column))
        name = os.path.normpath(name) if name.strip() else name  # `./a.wav` and `a.wav` are one clip
        captions = [_text(fields.get(c)) for c in caption_columns]
        music = {k: fields[k] for k in MUSIC_FIELDS if k != 'description' and fields.get(k) not in (None, '')}
        if kind == 'music' and name and name in clips:
            problems.add('duplicate_id', line, name, detail=f'file already on line {clips[name].line} '
                                                            '(a music clip has one description)')
            continue
        _merge(clips, Row(line, name, captions, path=name, fields=fields, music=music))
    return list(clips.values())


READERS: tp.Dict[str, tp.Callable[..., tp.List[Row]]] = {
    'audiocaps': read_audiocaps, 'clotho': read_clotho, 'musiccaps': read_musiccaps,
    'wavcaps': read_wavcaps, 'csv': read_csv_any,
}


# ---------------------------------------------------------------------------------------------------------
# Finding the audio files


class AudioIndex:
    """The audio files under --audio, by relative path, by name and by stem (one walk of the folder)."""

    def __init__(self, root: Path):
        self.root = root
        self.real_root = os.path.realpath(root)
        self.by_name: tp.Dict[str, tp.List[str]] = {}
        self.by_stem: tp.Dict[str, tp.List[str]] = {}
        self.by_prefix: tp.Dict[str, tp.List[str]] = {}  # stem part before any '_' -> files (`{id}_{start}`)
        for folder, _, names in os.walk(root, followlinks=True):
            for name in names:
                stem, ext = os.path.splitext(name)
                if ext.lower() not in AUDIO_EXTS:
                    continue
                rel = os.path.relpath(os.path.join(folder, name), root)
                self.by_name.setdefault(name, []).append(rel)
                self.by_stem.setdefault(stem, []).append(rel)
                for match in re.finditer('_', stem):
                    self.by_prefix.setdefault(stem[:match.start()], []).append(rel)

    def real_inside(self, rel: str) -> tp.Optional[str]:
        """The real path of `rel` (relative to --audio, links followed) when it stays inside --audio, else None."""
        real = os.path.realpath(os.path.join(self.root, rel))
        return real if real.startswith(self.real_root + os.sep) else None

    def by_id(self, clip_id: str) -> tp.List[str]:
        """Files whose stem is the id, `Y` + the id (AudioSet downloads), or starts with the id and `_`."""
        found = self.by_stem.get(clip_id, []) + self.by_stem.get('Y' + clip_id, []) + self.by_prefix.get(clip_id, [])
        return sorted(set(found))


def find_files(rows: tp.List[Row], index: AudioIndex, template: tp.Optional[str],
               problems: Problems) -> tp.List[Row]:
    """Sets each row's audio file; rows without exactly one file inside --audio are reported and dropped."""
    found: tp.List[Row] = []
    for row in rows:
        if template is not None:
            try:
                named: tp.Optional[str] = template.format(**row.fields)
            except (KeyError, IndexError, ValueError) as error:
                raise PrepareError(f"--audio-name {template!r}: {error!r} is not a field of the caption file "
                                   f"(fields: {', '.join(row.fields)})") from None
        else:
            named = row.path
        if named is not None:
            if not named.strip():
                problems.add('no_file_named', row.line, row.clip_id)
                continue
            if os.path.isabs(named) or index.real_inside(named) is None:
                problems.add('escapes_audio_dir', row.line, row.clip_id, named)
                continue
            if os.path.isfile(index.root / named):
                candidates = [os.path.normpath(named)]
            else:
                # The caption file gives the name, the folder may hold it one level down (Clotho's development/).
                candidates = [] if template is not None else index.by_name.get(os.path.basename(named), [])
        else:
            if not row.lookup_id:
                problems.add('no_file_named', row.line, row.clip_id)
                continue
            candidates = index.by_id(row.lookup_id)
        if not candidates:
            problems.add('missing_file', row.line, row.clip_id, named or row.lookup_id)
        elif len(candidates) > 1:
            problems.add('ambiguous_file', row.line, row.clip_id, detail=', '.join(candidates[:5]))
        else:
            real = index.real_inside(candidates[0])
            if real is None:
                problems.add('escapes_audio_dir', row.line, row.clip_id, candidates[0], 'a link to outside --audio')
                continue
            row.file, row.real = index.root / candidates[0], real
            found.append(row)
    return found


def check_captions(rows: tp.List[Row], problems: Problems) -> tp.List[Row]:
    """Drops empty captions (reported); a clip left with none is dropped."""
    kept = []
    for row in rows:
        non_empty = [caption for caption in row.captions if caption.strip()]
        if len(non_empty) < len(row.captions):
            left = f'{len(non_empty)} other caption(s) kept' if non_empty else 'clip dropped'
            problems.add('empty_caption', row.line, row.clip_id, row.file,
                         f'{len(row.captions) - len(non_empty)} empty of {len(row.captions)}: {left}')
        if non_empty:
            row.captions = non_empty
            kept.append(row)
    return kept


def drop_duplicate_files(rows: tp.List[Row], problems: Problems) -> tp.List[Row]:
    """Two clips on one audio file, or on one sidecar name (`a.wav` and `a.flac`), keep the first."""
    by_file: tp.Dict[str, Row] = {}
    by_sidecar: tp.Dict[Path, Row] = {}
    kept = []
    for row in rows:
        assert row.file is not None
        sidecar = row.file.with_suffix('.json')
        first = by_file.get(row.real) or by_sidecar.get(sidecar)
        if first is not None:
            problems.add('duplicate_id', row.line, row.clip_id, row.file,
                         f'same audio file or sidecar name as {first.clip_id!r} (line {first.line})')
            continue
        by_file[row.real] = by_sidecar[sidecar] = row
        kept.append(row)
    return kept


# ---------------------------------------------------------------------------------------------------------
# Probing the audio files


def probe(path: str) -> tp.Dict[str, tp.Any]:
    """Reads what the manifest needs and what makes a clip unusable, with one open of the file.

    libsndfile (wav, flac, mp3, ogg) is called directly through soundfile's own binding (`soundfile._snd`):
    the same decoder and the same open/refuse decisions as `soundfile.info`, without the Python layer of
    `SoundFile` (which costs more than the C calls on short clips). Other formats (m4a) go through stock's
    reader (PyAV), whole file.

    Returns:
        dict: `sample_rate`, `frames`, `channels`, `silent` (every sample below SILENCE_PEAK; samples are read
        only until the first non-silent block), or `error` (`empty` / `unreadable: ...`).
    """
    try:
        if path.lower().endswith(SOUNDFILE_EXTS):
            result = _probe_libsndfile(path)
        else:
            info = audio_info(path)
            wav, sample_rate = audio_read(path)
            frames = wav.shape[-1]
            result = {'sample_rate': int(sample_rate), 'frames': int(frames), 'channels': int(info.channels),
                      'silent': bool(frames == 0 or float(wav.abs().max()) < SILENCE_PEAK)}
    except Exception as error:  # noqa: BLE001 (any decoder failure is this file's defect, reported with it)
        result = {'error': f'unreadable: {type(error).__name__}: {str(error)[:200]}'}
    if result.get('frames') == 0 or ('error' in result and os.path.exists(path) and os.path.getsize(path) == 0):
        return {'error': 'empty'}
    return result


def _probe_libsndfile(path: str) -> tp.Dict[str, tp.Any]:
    info = _sf_ffi.new('SF_INFO*')
    handle = _sf_lib.sf_open(os.fsencode(path), _sf_lib.SFM_READ, info)
    if handle == _sf_ffi.NULL:
        # libsndfile keeps the last open error in one global: with threads, the text may be a neighbour's
        # (as with soundfile's own SoundFile); the verdict, unreadable, is this file's.
        message = _sf_ffi.string(_sf_lib.sf_strerror(_sf_ffi.NULL)).decode('utf-8', 'replace')
        return {'error': f'unreadable: {message}'}
    try:
        channels = info.channels
        block = np.empty(PROBE_BLOCK * channels, dtype=np.float32)
        pointer = _sf_ffi.from_buffer('float[]', block)
        silent = True
        while silent:
            frames_read = _sf_lib.sf_readf_float(handle, pointer, PROBE_BLOCK)
            if frames_read <= 0:
                break
            silent = float(np.abs(block[:frames_read * channels]).max()) < SILENCE_PEAK
    finally:
        _sf_lib.sf_close(handle)
    return {'sample_rate': int(info.samplerate), 'frames': int(info.frames), 'channels': int(channels),
            'silent': silent}


def _probe_chunk(paths: tp.List[str]) -> tp.List[tp.Dict[str, tp.Any]]:
    """One pool task: a few hundred files, so that task hand-off costs little per file."""
    return [probe(path) for path in paths]


def _file_key(path: str) -> tp.Optional[tp.List[int]]:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def load_cache(path: Path) -> tp.Dict[str, tp.Any]:
    """The previous run's probes (an unreadable cache is ignored: it only saves time)."""
    try:
        with gzip.open(path, 'rt', encoding='utf-8') as file:
            cache = json.load(file)
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError, EOFError):
        return {}


def probe_all(paths: tp.List[str], cache: tp.Dict[str, tp.Any], workers: int, pool: str,
              progress: bool = True) -> tp.Tuple[tp.Dict[str, tp.Dict[str, tp.Any]], tp.Dict[str, tp.Any], int]:
    """Probes every file not in the cache with the same size and mtime, in parallel.

    Returns:
        tuple: probes by path, the new cache (these paths only), and how many files were read.
    """
    results: tp.Dict[str, tp.Dict[str, tp.Any]] = {}
    new_cache: tp.Dict[str, tp.Any] = {}
    todo: tp.List[str] = []
    keys: tp.Dict[str, tp.Any] = {}
    for path in paths:
        key = keys[path] = _file_key(path)
        hit = cache.get(path)
        if key is not None and hit is not None and hit[0] == key:
            results[path] = hit[1]
            new_cache[path] = hit
        else:
            todo.append(path)
    bar = tqdm(total=len(todo), desc='probing audio', unit='file', disable=not progress or not todo,
               file=sys.stderr, mininterval=0.5)
    chunks = [todo[start:start + PROBE_CHUNK] for start in range(0, len(todo), PROBE_CHUNK)]
    executor: tp.Optional[Executor] = None
    if workers <= 1 or len(todo) < SERIAL_BELOW:
        probed: tp.Iterable[tp.List[tp.Dict[str, tp.Any]]] = map(_probe_chunk, chunks)
    else:
        executor = ProcessPoolExecutor(workers) if pool == 'process' else ThreadPoolExecutor(workers)
        probed = executor.map(_probe_chunk, chunks)
    try:
        for chunk, chunk_results in zip(chunks, probed, strict=True):
            for path, result in zip(chunk, chunk_results, strict=True):
                results[path] = result
                if keys[path] is not None:
                    new_cache[path] = [keys[path], result]
            bar.update(len(chunk))
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown()
    return results, new_cache, len(todo)


def check_audio(rows: tp.List[Row], probes: tp.Dict[str, tp.Dict[str, tp.Any]], min_sample_rate: int,
                min_duration: float, problems: Problems) -> tp.List[Row]:
    """Drops (and reports) clips whose file is empty, unreadable, silent, too short or below the sample rate."""
    kept = []
    for row in rows:
        result = row.probe = probes[str(row.file)]
        error = result.get('error')
        if error == 'empty':
            problems.add('empty_file', row.line, row.clip_id, row.file)
        elif error:
            problems.add('unreadable', row.line, row.clip_id, row.file, error)
        elif result['sample_rate'] < min_sample_rate:
            problems.add('low_sample_rate', row.line, row.clip_id, row.file,
                         f"{result['sample_rate']} Hz < {min_sample_rate} Hz")
        elif result['frames'] / result['sample_rate'] < min_duration:
            problems.add('too_short', row.line, row.clip_id, row.file,
                         f"{result['frames'] / result['sample_rate']:.3f} s < {min_duration:g} s")
        elif result['silent']:
            problems.add('silent', row.line, row.clip_id, row.file)
        else:
            kept.append(row)
    return kept


# ---------------------------------------------------------------------------------------------------------
# Splitting and writing


def split_rows(rows: tp.List[Row], valid_fraction: float, seed: int) -> tp.Dict[str, tp.List[Row]]:
    """Each clip goes to valid when a hash of (seed, clip id) falls below the fraction: the same clip lands in
    the same split whatever else the caption file holds (fixing a broken clip moves no other). When that
    leaves valid (or train) empty, the clip with the lowest (highest) hash moves there."""
    def draw(row: Row) -> float:
        digest = hashlib.sha256(f'{seed}\0{row.clip_id}'.encode('utf-8')).digest()
        return int.from_bytes(digest[:8], 'big') / 2 ** 64

    draws = {id(row): draw(row) for row in rows}
    ranked = sorted(rows, key=lambda row: draws[id(row)])
    n_valid = sum(draws[id(row)] < valid_fraction for row in ranked)
    if len(ranked) >= 2:
        n_valid = min(max(n_valid, 1), len(ranked) - 1)
    return {'train': ranked[n_valid:], 'valid': ranked[:n_valid]}


def sidecar(row: Row, kind: str) -> tp.Dict[str, tp.Any]:
    """What stock SoundInfo / MusicInfo read: captions as written; every MusicInfo key for music."""
    if kind == 'sound':
        return {'description': row.captions[0] if len(row.captions) == 1 else list(row.captions)}
    music: tp.Dict[str, tp.Any] = {name: None for name in MUSIC_FIELDS}
    music.update(row.music)
    music['description'] = row.captions[0]
    return music


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    tmp.write_text(text, encoding='utf-8')
    os.replace(tmp, path)


def _write_sidecar(path: str, text: str) -> None:
    """A new sidecar is written in place (no manifest lists it yet); a changed one is replaced by one rename
    (a training may be reading it); an unchanged one is left alone."""
    try:
        with open(path, encoding='utf-8') as file:
            if file.read() == text:
                return
    except FileNotFoundError:
        with open(path, 'w', encoding='utf-8') as file:
            file.write(text)
        return
    _write_atomic(Path(path), text)


def _link(link: str, target: str) -> None:
    """A symbolic link `link` -> `target`, replaced by one rename when it pointed elsewhere."""
    try:
        os.symlink(target, link)
        return
    except FileExistsError:
        pass
    if os.path.islink(link) and os.readlink(link) == target:
        return
    if not os.path.islink(link):
        raise PrepareError(f"{link} is a file, not a link written by prepare: refusing to replace it")
    tmp = f'{link}.tmp{os.getpid()}'
    if os.path.islink(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _write_clip(row: Row, links: str, audio_root: Path, kind: str) -> tp.Tuple[AudioMeta, str, str]:
    """One clip's link and sidecar; returns its manifest entry and the two paths."""
    assert row.file is not None
    link = os.path.join(links, os.path.relpath(row.file, audio_root))
    _link(link, row.real)
    info = os.path.splitext(link)[0] + '.json'  # = Path(link).with_suffix('.json'), where stock looks
    _write_sidecar(info, json.dumps(sidecar(row, kind), ensure_ascii=True, indent=1) + '\n')
    meta = AudioMeta(path=link, duration=row.probe['frames'] / row.probe['sample_rate'],
                     sample_rate=row.probe['sample_rate'])
    return meta, link, info


def write_split(folder: Path, rows: tp.List[Row], audio_root: Path, kind: str) -> int:
    """Links and sidecars (WRITE_THREADS at a time), then the manifest (one rename), then removes what the
    previous run left and this one does not list. Returns the number of clips written."""
    links = str((folder / LINKS).absolute())
    # Each folder of links once, not once per clip (a flat dataset has one).
    for parent in {os.path.dirname(os.path.join(links, os.path.relpath(row.file, audio_root))) for row in rows}:
        os.makedirs(parent, exist_ok=True)
    os.makedirs(links, exist_ok=True)
    with ThreadPoolExecutor(WRITE_THREADS) as executor:
        done = list(executor.map(lambda row: _write_clip(row, links, audio_root, kind), rows))
    metas = [meta for meta, _, _ in done]
    written = {path for _, link, info in done for path in (link, info)}
    metas.sort(key=lambda meta: meta.path)
    tmp = folder / f'.data.tmp{os.getpid()}.jsonl.gz'  # `.gz` last: stock's writer picks gzip by the suffix
    save_audio_meta(tmp, metas)
    os.replace(tmp, folder / MANIFEST)
    for root, _dirs, names in os.walk(links, topdown=False):  # files before their folders
        for name in names:
            path = os.path.join(root, name)
            # Only what prepare writes (links, sidecars) is removed: a file put there by hand is left alone.
            if path not in written and (os.path.islink(path) or name.endswith('.json')):
                os.unlink(path)
        if root != links and not os.listdir(root):
            os.rmdir(root)
    return len(metas)


# ---------------------------------------------------------------------------------------------------------
# The command


def summary(report: tp.Dict[str, tp.Any]) -> str:
    """The lines printed at the end: what was written, then each problem class with its count and examples."""
    lines = [f"prepare {report['format']} ({report['kind']}): {report['rows']} clips listed in {report['captions']}, "
             f"{report['kept']} kept, {report['problem_count']} problems; "
             f"{report['probe']['read']} files probed, {report['probe']['cached']} from the cache, "
             f"{report['probe']['seconds']:.1f} s"]
    for split, stats in report['splits'].items():
        lines.append(f"  {split}: {stats['clips']} clips, {stats['hours']:.2f} h -> {stats['manifest']}")
    for kind, items in report['problems'].items():
        if not items:
            continue
        lines.append(f"  {kind} ({len(items)}): {PROBLEMS[kind]}")
        for item in items[:EXAMPLES_SHOWN]:
            where = 'entry' if report['format'] == 'wavcaps' else 'line'
            text = f"    {where} {item['line']}, id {item['id']!r}"
            if item['path']:
                text += f", {item['path']}"
            if item['detail']:
                text += f": {item['detail']}"
            lines.append(text)
        if len(items) > EXAMPLES_SHOWN:
            lines.append(f"    ... {len(items) - EXAMPLES_SHOWN} more in the report")
    return '\n'.join(lines)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m rr_audiocraft.data.prepare',
        description='Caption dataset -> AudioCraft manifest (data.jsonl.gz) and JSON sidecars; see docs/data.md.')
    parser.add_argument('format', choices=FORMATS)
    parser.add_argument('--captions', type=Path, required=True, help='caption file (csv; json for wavcaps)')
    parser.add_argument('--audio', type=Path, required=True, help='folder of the audio files (only read)')
    parser.add_argument('--out', type=Path, help='split folder (or the parent of train/ and valid/ with '
                        '--valid-fraction); default: where the paper recipe reads, egs/rr_sound_16khz/SPLIT '
                        'or egs/rr_music_32khz/SPLIT')
    parser.add_argument('--split', choices=('train', 'valid'), help='which recipe split the default --out is')
    parser.add_argument('--valid-fraction', type=float, help='split the clips into OUT/train and OUT/valid')
    parser.add_argument('--seed', type=int, default=0, help='seed of the --valid-fraction split (default 0)')
    parser.add_argument('--kind', choices=('sound', 'music'), help='csv only: which sidecars (default sound)')
    parser.add_argument('--path-column', default='path', help='csv: column of the audio path (default path)')
    parser.add_argument('--caption-column', action='append', help='csv: caption column, repeatable '
                        '(default caption)')
    parser.add_argument('--audio-name', help="file name template from the caption file's fields, relative to "
                        "--audio, e.g. '{youtube_id}_{start_time}.wav'")
    parser.add_argument('--min-sample-rate', type=int, help='default 16000 (sound), 32000 (music)')
    parser.add_argument('--min-duration', type=float, default=DEFAULT_MIN_DURATION,
                        help=f'seconds (default {DEFAULT_MIN_DURATION:g})')
    parser.add_argument('--strict', action='store_true', help='any problem: exit 2, nothing written')
    parser.add_argument('--workers', type=int, default=min(8, os.cpu_count() or 1),
                        help='parallel probes (default: the CPU count, at most 8)')
    parser.add_argument('--pool', choices=('thread', 'process'), default='thread',
                        help='probe in threads (default: faster in docs/data.md\'s measurement) or processes')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser


def prepare(args: argparse.Namespace) -> tp.Tuple[int, tp.Dict[str, tp.Any]]:
    """Runs the command. Returns the exit status and the report (also when nothing was written)."""
    started = time.perf_counter()
    kind = args.kind if args.format == 'csv' else FORMAT_KIND[args.format]
    kind = kind or 'sound'
    if args.kind and args.format != 'csv':
        raise PrepareError(f"--kind is for csv only ({args.format} is {FORMAT_KIND[args.format]})")
    if not args.captions.is_file():
        raise PrepareError(f"--captions {args.captions}: no such file")
    if not args.audio.is_dir():
        raise PrepareError(f"--audio {args.audio}: no such folder")
    if args.valid_fraction is not None and not 0 < args.valid_fraction < 1:
        raise PrepareError(f"--valid-fraction must be in (0, 1), got {args.valid_fraction}")
    if args.valid_fraction is not None and args.split:
        raise PrepareError("--split and --valid-fraction exclude each other (the split writes train/ and valid/)")
    out = args.out
    if out is None:
        if args.valid_fraction is None and not args.split:
            raise PrepareError(f"say which split this caption file is: --split train or --split valid (writes "
                               f"{RECIPE_DATA[kind]}/SPLIT), or --valid-fraction F, or --out DIR")
        out = RECIPE_DATA[kind] / args.split if args.split else RECIPE_DATA[kind]
    audio_root = Path(os.path.abspath(args.audio))
    real_audio = audio_root.resolve()
    for links in [out / LINKS, out / 'train' / LINKS, out / 'valid' / LINKS]:
        real_links = links.resolve()
        if real_links == real_audio or real_audio in real_links.parents or real_links in real_audio.parents:
            raise PrepareError(f"--out {out} overlaps --audio {args.audio} (prepare writes links under "
                               f"{links}): prepare never writes into the audio folder")
    min_sample_rate = args.min_sample_rate if args.min_sample_rate is not None else MIN_SAMPLE_RATE[kind]

    problems = Problems()
    rows = READERS[args.format](args.captions, problems, path_column=args.path_column,
                                caption_columns=args.caption_column or ['caption'], kind=kind)
    n_rows = len(rows) + problems.total()
    clips = find_files(rows, AudioIndex(audio_root), args.audio_name, problems)
    clips = check_captions(clips, problems)
    clips = drop_duplicate_files(clips, problems)
    cache_path = out / CACHE
    probe_started = time.perf_counter()
    paths = sorted({str(row.file) for row in clips})
    probes, new_cache, n_read = probe_all(paths, load_cache(cache_path), args.workers, args.pool,
                                          progress=not args.no_progress)
    probe_seconds = time.perf_counter() - probe_started
    clips = check_audio(clips, probes, min_sample_rate, args.min_duration, problems)

    splits = {'.': clips} if args.valid_fraction is None else split_rows(clips, args.valid_fraction, args.seed)
    report: tp.Dict[str, tp.Any] = {
        'format': args.format, 'kind': kind, 'captions': str(args.captions), 'audio': str(args.audio),
        'out': str(out), 'argv': sys.argv[1:] if __name__ == '__main__' else None,
        'rows': n_rows, 'kept': len(clips), 'problem_count': problems.total(), 'problem_counts': problems.counts(),
        'min_sample_rate': min_sample_rate, 'min_duration': args.min_duration,
        'valid_fraction': args.valid_fraction, 'seed': args.seed if args.valid_fraction is not None else None,
        'probe': {'files': len(paths), 'read': n_read, 'cached': len(paths) - n_read, 'seconds': probe_seconds,
                  'workers': args.workers, 'pool': args.pool},
        'splits': {}, 'written': False, 'problems': problems.by_class,
    }
    for name, split_clips in splits.items():
        folder = out / name
        hours = sum(row.probe['frames'] / row.probe['sample_rate'] for row in split_clips) / 3600
        report['splits'][out.name if name == '.' else name] = {
            'clips': len(split_clips), 'hours': hours, 'manifest': str(os.path.normpath(folder / MANIFEST))}
    if args.strict and problems.total():
        print(summary(report), file=sys.stderr)
        print(f"--strict: {problems.total()} problems, nothing written to {out}", file=sys.stderr)
        return 2, report
    empty = [name for name, split_clips in splits.items() if not split_clips]
    if empty:
        print(summary(report), file=sys.stderr)
        why = 'no clip left to write' if not clips else f'{len(clips)} clip(s) cannot fill both train and valid'
        print(f"{why}: nothing written to {out}", file=sys.stderr)
        return 2, report

    write_started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for name, split_clips in splits.items():
        write_split(out / name, split_clips, audio_root, kind)
    report['write_seconds'] = time.perf_counter() - write_started
    if args.valid_fraction is None:
        for stale in ('train', 'valid'):  # a split folder from an earlier --valid-fraction run is not ours now
            if (out / stale / MANIFEST).exists():
                print(f"note: {out / stale} holds an earlier --valid-fraction run's split; left as it is",
                      file=sys.stderr)
    report['written'] = True
    report['seconds'] = time.perf_counter() - started
    _write_atomic(out / REPORT, json.dumps(report, ensure_ascii=False, indent=1) + '\n')
    tmp_cache = out / f'.cache.tmp{os.getpid()}.json.gz'
    with gzip.open(tmp_cache, 'wb', compresslevel=1) as file:
        file.write(json.dumps(new_cache).encode('utf-8'))
    os.replace(tmp_cache, cache_path)
    print(summary(report), file=sys.stderr)
    print(f"report: {out / REPORT}", file=sys.stderr)
    return 0, report


def main(argv: tp.Optional[tp.List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        code, _ = prepare(args)
    except PrepareError as error:
        print(f"{type(error).__module__}.{type(error).__qualname__}: {error}", file=sys.stderr, flush=True)
        return 2
    return code


if __name__ == '__main__':
    sys.exit(main())

