"""Start-up check of the datasets an RR solver reads: one clear error naming the bad files.

Stock AudioCraft meets a bad manifest entry only when it samples it, mid-epoch, and then:
- a missing or unreadable audio file: logs "Error opening file PATH" and samples another file (after
  `max_read_retry` failures in a row it raises);
- a sound clip without a sidecar: raises "Unable to find a metadata JSON" from the loader;
- a sidecar that is not JSON, or misses a required key: raises a JSONDecodeError / KeyError that names
  no file;
- a sidecar value of the wrong type (e.g. `"description": 42`, `"bpm": [1]`): silently turns it into
  None (the sample trains unconditioned) or raises a TypeError deep in the loader.

RR needs every training clip's caption (T of eq. 3 is computed from it; an empty one is left out of
the pairs), so `validate_datasets` reads each manifest and sidecar once before anything is built and
raises a single `DatasetError` listing every problem with its file. What it checks per entry: the audio
file exists and is not empty (0 bytes); the sidecar exists, is a JSON object, has a non-empty caption
under `rr.condition`, and the metadata fields the dataset class reads have the types it expects (and
are all there when `info_fields_required`). Decoding every audio file would cost minutes on a large
dataset, so a non-empty file that does not decode is left to the stock loader, which skips it with a
logged warning that names it. Cost: one `stat` and one small JSON read per entry (about 0.1 ms on a
local disk). Every rank runs the check, so every rank stops: none is left waiting in a collective.
"""
import gzip
import json
import logging
import typing as tp
from pathlib import Path

import omegaconf

from audiocraft.data.audio_dataset import AudioMeta, load_audio_meta

logger = logging.getLogger(__name__)

SPLITS = ('train', 'valid', 'evaluate', 'generate')
# How many problems the error lists in full (the total is always given).
MAX_LISTED = 20

# Metadata fields the stock info classes read from a sidecar, and the JSON types that they handle
# meaningfully: 'text' = string or null, 'number' = number, numeric string or null, 'words' = string,
# list of strings or null, 'captions' = string or list of strings (SoundInfo samples one of a list).
SIDECAR_FIELDS: tp.Dict[str, tp.Dict[str, str]] = {
    'sound': {'description': 'captions'},
    'music': {'title': 'text', 'artist': 'text', 'key': 'text', 'bpm': 'number', 'genre': 'text',
              'moods': 'words', 'keywords': 'words', 'description': 'text', 'name': 'text',
              'instrument': 'text'},
}
# MusicInfo.from_dict lets these be absent even when info fields are required.
OPTIONAL_FIELDS = {'sound': set(), 'music': {'keywords'}}


class DatasetError(ValueError):
    """A dataset that the solver would read has entries that cannot train correctly."""


def _describe(value: tp.Any) -> str:
    if value is None:
        return 'null'
    text = json.dumps(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _type_problem(kind: str, value: tp.Any) -> tp.Optional[str]:
    """Why `value` is not of sidecar field kind `kind`, or None if it is."""
    if value is None:
        return None  # a type every field allows; a null caption is reported as an empty one
    if kind == 'text':
        return None if isinstance(value, str) else f"expected a string or null, got {_describe(value)}"
    if kind == 'number':
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return None
        if isinstance(value, str):
            try:
                float(value)
                return None
            except ValueError:
                pass
        return f"expected a number or null, got {_describe(value)}"
    if kind == 'words':
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return None
        return f"expected a string or a list of strings, got {_describe(value)}"
    if kind == 'captions':
        if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
            return None
        return f"expected a string or a non-empty list of strings, got {_describe(value)}"
    raise ValueError(f"unknown sidecar field kind {kind!r}")


def _caption_problem(value: tp.Any) -> tp.Optional[str]:
    captions = value if isinstance(value, list) else [value]
    if any(not isinstance(c, str) or not c.strip() or c.strip() == 'None' for c in captions):
        return f"is empty ({_describe(value)}): the clip has no caption to condition on or to compare in RR"
    return None


def check_sidecar(info_path: Path, dataset_type: str, condition: str, fields_required: bool) -> tp.List[str]:
    """Problems of one sidecar JSON, each a message without the file name (empty list: fine).

    Args:
        info_path (Path): The sidecar file (it must exist).
        dataset_type (str): 'sound' or 'music' (which info class reads it).
        condition (str): The caption key RR reads (`rr.condition`).
        fields_required (bool): The dataset's `info_fields_required`.
    """
    try:
        with open(info_path, 'r', encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"sidecar is not readable JSON ({exc})"]
    if not isinstance(data, dict):
        return [f"sidecar must be a JSON object, got {type(data).__name__}"]
    fields = SIDECAR_FIELDS.get(dataset_type, {})
    problems = []
    if fields_required:
        missing = [k for k in fields if k not in data and k not in OPTIONAL_FIELDS[dataset_type]]
        if missing:
            problems.append(f"sidecar misses required key(s) {missing} (dataset.info_fields_required=true)")
    for key, kind in fields.items():
        if key in data:
            problem = _type_problem(kind, data[key])
            if problem is not None:
                problems.append(f"'{key}': {problem}")
    if condition not in data:
        if not (fields_required and condition in fields):  # already reported as missing
            problems.append(f"sidecar has no '{condition}' (the caption RR reads, rr.condition)")
    elif not any(p.startswith(f"'{condition}'") for p in problems):
        problem = _caption_problem(data[condition])
        if problem is not None:
            problems.append(f"'{condition}' {problem}")
    return problems


def _split_kwargs(cfg: omegaconf.DictConfig, split: str) -> tp.Dict[str, tp.Any]:
    """The dataset keyword arguments stock `get_audio_datasets` gives the split (split keys win)."""
    dataset = omegaconf.OmegaConf.to_container(cfg.dataset, resolve=True)
    assert isinstance(dataset, dict)
    split_cfg = dataset.get(split) or {}
    return {**{k: v for k, v in dataset.items() if k not in SPLITS}, **split_cfg}


def _manifest_file(path: Path) -> Path:
    if path.is_dir():
        for name in ('data.jsonl', 'data.jsonl.gz'):
            if (path / name).exists():
                return path / name
        raise DatasetError(f"Dataset folder {path} has no manifest: expected data.jsonl or data.jsonl.gz "
                           "(write one with `python -m rr_audiocraft.data.prepare`, see docs/data.md, or "
                           "rr_audiocraft.data.synth)")
    if not path.exists():
        raise DatasetError(f"Dataset manifest {path} does not exist")
    return path


def _entries(manifest: Path) -> tp.List[AudioMeta]:
    """The manifest's entries, with paths resolved as the stock loader resolves them."""
    try:
        return load_audio_meta(manifest)
    except Exception as exc:
        error = exc
    # Locate the bad line for the message: the stock loader's error names neither file nor line.
    open_fn = gzip.open if str(manifest).lower().endswith('.gz') else open
    with open_fn(manifest, 'rb') as f:  # type: ignore
        for number, line in enumerate(f, 1):
            try:
                AudioMeta.from_dict(json.loads(line))
            except Exception as exc:
                raise DatasetError(f"Dataset manifest {manifest}, line {number}: not an AudioMeta entry "
                                   f"({type(exc).__name__}: {exc})") from None
    raise DatasetError(f"Dataset manifest {manifest} cannot be read ({type(error).__name__}: {error})") from None


def validate_datasets(cfg: omegaconf.DictConfig, dataset_type: tp.Any) -> None:
    """Check every manifest entry the solver's loaders will read; raise one `DatasetError` if any is bad.

    Args:
        cfg (omegaconf.DictConfig): The solver config, `datasource` paths already resolved.
        dataset_type: The solver's `DATASET_TYPE` (an AudioCraft `DatasetType` or its value: 'audio',
            'sound', 'music'); sidecars are checked for 'sound' and 'music'.
    Raises:
        DatasetError: naming each bad file with what is wrong with it.
    """
    kind = getattr(dataset_type, 'value', dataset_type)
    condition = cfg.rr.condition if cfg.get('rr') is not None else 'description'
    execute_only = cfg.get('execute_only', None)
    # Each audio file once, however many manifests list it, with the reading settings of the first.
    files: tp.Dict[Path, tp.Tuple[tp.List[Path], bool, tp.Optional[str]]] = {}
    manifests: tp.List[Path] = []
    problems: tp.List[str] = []
    for split in SPLITS:
        path = cfg.datasource.get(split)
        if not isinstance(path, str) or (execute_only is not None and split != execute_only):
            continue  # the stock loader builds no dataset for this split either
        kwargs = _split_kwargs(cfg, split)
        manifest = _manifest_file(Path(path)).resolve()
        if manifest in manifests:
            continue  # evaluate and generate often share a manifest
        manifests.append(manifest)
        entries = _entries(manifest)
        if not entries:
            problems.append(f"{manifest}: the manifest lists no audio file ({split} split)")
        for meta in entries:
            listed_in, _, _ = files.setdefault(Path(meta.path), (
                [], bool(kwargs.get('info_fields_required', True)), kwargs.get('external_metadata_source')))
            listed_in.append(manifest)
    for audio, (listed_in, fields_required, external) in files.items():
        try:
            size = audio.stat().st_size
        except OSError:
            problems.append(f"{audio}: audio file is missing (listed in {', '.join(map(str, listed_in))})")
            continue
        if size == 0:
            problems.append(f"{audio}: audio file is empty (0 bytes)")
            continue
        if kind not in SIDECAR_FIELDS:
            continue
        info_path = audio.with_suffix('.json')
        if not info_path.exists() and external and (Path(external) / info_path.name).exists():
            info_path = Path(external) / info_path.name
        if not info_path.exists():
            problems.append(f"{audio}: no sidecar {info_path.name} beside it (its caption and metadata)")
            continue
        problems += [f"{info_path}: {p}" for p in check_sidecar(info_path, kind, condition, fields_required)]
    if problems:
        listed = problems[:MAX_LISTED]
        more = len(problems) - len(listed)
        raise DatasetError(
            f"Dataset check failed: {len(problems)} problem(s) in the data the solver would read. Fix or "
            "remove these manifest entries (a manifest line per audio file, its sidecar JSON beside it):\n  "
            + "\n  ".join(listed) + (f"\n  ... and {more} more" if more else ""))
    logger.info("Dataset check: %d audio file(s) in %d manifest(s) fine", len(files), len(manifests))
