"""Shipped model artefacts (`assets/<name>/`): each file is checked against the sha256 its `asset.json` records.

Two kinds ship today, both checked here and nowhere else:

    assets/encodec_synth_8khz/   the embedded default's EnCodec (`make codec`): a stock compression export
    assets/judge_synth*/         the synthetic benchmark's judges (`make judge`, `metrics/judge/asset.py`)

`asset.json` holds at least `sha256` of the file it vouches for, plus how it was made (recipe, command,
time). A missing or corrupted file is refused with an `AssetError` naming the file and the command that
fixes it. Only the standard library is imported, so the model loaders, the solvers and the entry point
can check a file before anything heavy loads.
"""
import hashlib
import json
import os
import typing as tp
from pathlib import Path

from . import REPO_ROOT

ASSETS_DIR = REPO_ROOT / 'assets'
MANIFEST_FILE = 'asset.json'
PRETRAINED_PREFIX = '//pretrained/'  # AudioCraft's prefix for exported compression models

CODEC_ASSET = 'encodec_synth_8khz'
STATE_FILE = 'compression_state_dict.bin'  # the stock export's file name (audiocraft.models.loaders)
CODEC_FIX = f"git checkout -- assets/{CODEC_ASSET}  (the shipped copy), or `make codec` (retrain it, ~63 min)"


class AssetError(ValueError):
    """A shipped model artefact is missing, corrupted or does not match its `asset.json`."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as file:
        for block in iter(lambda: file.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def asset_dir(name: str = CODEC_ASSET) -> Path:
    return ASSETS_DIR / name


def read_manifest(folder: Path) -> tp.Optional[tp.Dict[str, tp.Any]]:
    """The `asset.json` of `folder`, or None when it has none."""
    manifest = folder / MANIFEST_FILE
    return json.loads(manifest.read_text()) if manifest.is_file() else None


def write_manifest(folder: Path, record: tp.Mapping[str, tp.Any]) -> Path:
    """Writes `folder/asset.json` whole or not at all (one rename)."""
    manifest = folder / MANIFEST_FILE
    partial = manifest.with_name(MANIFEST_FILE + '.partial')
    partial.write_text(json.dumps(record, indent=1) + '\n')
    partial.replace(manifest)
    return manifest


def verify_file(folder: Path, file_name: str, what: str, fix: str) -> Path:
    """Checks `folder/file_name` against the sha256 `folder/asset.json` records.

    Args:
        folder: the asset folder.
        file_name: the file the manifest vouches for.
        what: how messages name the artefact, e.g. 'The codec artefact'.
        fix: the command(s) that repair it, ending the message.
    Returns:
        Path: the verified file.
    Raises:
        AssetError: a file is missing, the manifest unreadable or the checksum different.
    """
    state, manifest = folder / file_name, folder / MANIFEST_FILE
    for path in (manifest, state):
        if not path.is_file():
            raise AssetError(f"{what} {path} is missing: {fix}.")
    try:
        expected = json.loads(manifest.read_text())['sha256']
    except (ValueError, KeyError) as exc:
        raise AssetError(f"{manifest} is not an asset manifest ({type(exc).__name__}: {exc}): {fix}.") from None
    actual = sha256_of(state)
    if actual != expected:
        raise AssetError(f"{what} {state} is corrupted: its sha256 is {actual[:16]}..., {manifest} "
                         f"records {expected[:16]}...: {fix}.")
    return state


# ---------------------------------------------------------------------------------------------
# The codec: a stock compression export, named by LM configs as `//pretrained/<folder>/<state file>`.
# ---------------------------------------------------------------------------------------------

def verify_asset(folder: tp.Union[str, Path]) -> Path:
    """Checks a shipped compression export against the sha256 its `asset.json` records.

    Args:
        folder: the asset folder (holding `compression_state_dict.bin` and `asset.json`), or the
            state file itself.
    Returns:
        Path: the verified state file.
    Raises:
        AssetError: a file is missing or the checksum differs; the message names the file and the
            command that fixes it.
    """
    folder = Path(folder)
    if folder.name == STATE_FILE:
        folder = folder.parent
    fix = (CODEC_FIX if folder.resolve() == asset_dir().resolve()
           else f"copy {folder} again from where it came from (the shipped codec: {CODEC_FIX})")
    return verify_file(folder, STATE_FILE, 'The codec artefact', fix)


def compression_reference(folder: Path) -> str:
    """`compression_model_checkpoint` of the codec exported in `folder`: AudioCraft's `//pretrained/`
    prefix on its state file, as the LMs train on it (and load it back for their XPs)."""
    return f"{PRETRAINED_PREFIX}{folder / STATE_FILE}"


def asset_reference(name: str = CODEC_ASSET) -> str:
    """`compression_reference` of a shipped codec, by the absolute path of its folder (the
    `${rr_asset:NAME}` config resolver)."""
    return compression_reference(asset_dir(name))


def verify_compression_reference(reference: tp.Any) -> None:
    """If a `compression_model_checkpoint` names an exported file that has an `asset.json` beside
    it (a shipped artefact), check its sha256 (`verify_asset`); other references are left alone."""
    reference = str(reference or '')
    if not reference.startswith(PRETRAINED_PREFIX):
        return
    path = Path(reference[len(PRETRAINED_PREFIX):])
    folder = path if path.is_dir() else path.parent
    if (folder / MANIFEST_FILE).is_file() or folder.resolve().parent == ASSETS_DIR.resolve():
        verify_asset(folder)


def finetune_compression_reference(source: str, hub_reference: str) -> str:
    """`compression_model_checkpoint` of a fine-tune from `source` (config resolver `${rr_finetune_codec:SRC,HUB}`).

    A local folder (an absolute path, the hub layout) gives its own `compression_state_dict.bin` through stock's
    `//pretrained/` prefix (`CompressionModel.get_pretrained` of an existing path); a hub name gives `hub_reference`,
    the compression model the released LM was trained on.
    """
    source = str(source)
    if os.path.isabs(source):
        return f"{PRETRAINED_PREFIX}{os.path.join(source, STATE_FILE)}"
    return str(hub_reference)
