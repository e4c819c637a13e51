"""Find and load what RR trains: Dora XPs (`//sig/SIG`), exported folders, checkpoint files, hub names.

Stock `audiocraft.models.loaders` reads exported folders and the Hugging Face hub only, builds the LM with
the stock builders (which do not know our `hf` text conditioner) and unpickles with torch's *default*
`weights_only`, which `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1` turns off. Here every file goes through
`rr_audiocraft.checkpoint.load_checkpoint` (explicit `weights_only=True` + the AudioCraft allow-list),
the LM is built by `get_rr_lm_model` (stock conditioners and ours) and the weights are:

- exported folder / file (`audiocraft.utils.export` layout): its `best_state`;
- Dora XP checkpoint (`checkpoint.th`): the best state, i.e. `fsdp_best_state` when training used FSDP,
  else `best_state['model']`. When the XP trained with EMA (`optim.ema.use`), the stock solver swaps
  the EMA weights in before validating and stores *those* as the best state, so this is the EMA model.

Every model name (an LM to generate with or export, the compression model of an XP) is resolved by
`resolve_checkpoint`: AudioCraft's offline `debug` model (handled by the model classes), `//pretrained/NAME`,
a Dora signature `//sig/SIG`, a local path (exported folder, XP folder, or checkpoint file), a stock
alias, a Hugging Face repo id `owner/name`. When nothing matches, `ModelNotFoundError` lists each try.
"""
import logging
import re
import typing as tp
from dataclasses import dataclass
from pathlib import Path

import omegaconf
import torch
from omegaconf import OmegaConf

import audiocraft
from audiocraft.environment import AudioCraftEnvironment
from audiocraft.models import builders as stock_builders
from audiocraft.models.encodec import CompressionModel
from audiocraft.models.loaders import _delete_param, get_audiocraft_cache_dir

from ..assets import verify_compression_reference
from ..checkpoint import load_checkpoint
from ..environment import dora_dir, register_resolvers
from .builders import get_rr_lm_model
from .lm import RRLMModel

logger = logging.getLogger(__name__)

DEBUG_NAME = 'debug'  # AudioCraft's tiny random model, built offline (unit tests)
SIG_PREFIX = '//sig/'
PRETRAINED_PREFIX = '//pretrained/'
EXPORTED_LM_FILE = 'state_dict.bin'  # names `audiocraft.utils.export` writes and stock loaders read
EXPORTED_COMPRESSION_FILE = 'compression_state_dict.bin'
XP_CHECKPOINT_FILE = 'checkpoint.th'  # what the stock solvers save in an XP folder (non-FSDP, rank 0)
_HUB_REPO_ID = re.compile(r'^[A-Za-z0-9][\w.-]*/[\w.-]+$')


class ModelNotFoundError(ValueError):
    """A model name that matches nothing loadable; the message lists what was tried."""


@dataclass
class ModelLocation:
    """Where a model name points (see `resolve_checkpoint`).

    Attributes:
        name (str): The name as given.
        kind (str): 'pretrained' (a name stock `get_pretrained` loads: a Hugging Face repo id, or what
            followed `//pretrained/`), 'xp' (a Dora XP's checkpoint), 'exported' (an
            `audiocraft.utils.export` folder) or 'file' (a checkpoint file given by path: an XP
            checkpoint or an exported package).
        checkpoint (Path, optional): The file holding the weights and the XP config; None for 'pretrained'.
        compression_file (Path, optional): The compression package next to an exported LM. None for
            an XP: its compression model is the XP config's `compression_model_checkpoint`.
        pretrained (str, optional): For 'pretrained': the name to hand stock `get_pretrained` (alias mapped).
    """
    name: str
    kind: str
    checkpoint: tp.Optional[Path] = None
    compression_file: tp.Optional[Path] = None
    pretrained: tp.Optional[str] = None


def default_device(device: tp.Optional[tp.Union[str, torch.device]] = None) -> str:
    """The device stock `get_pretrained` picks: CUDA when there is one, else CPU."""
    if device is not None:
        return str(device)
    return 'cuda' if torch.cuda.device_count() else 'cpu'


def dora_xps_dir() -> Path:
    """The folder holding Dora XPs: `$AUDIOCRAFT_DORA_DIR/xps` (read at call time)."""
    return dora_dir() / 'xps'


def _sig_checkpoint(sig_name: str) -> Path:
    """Path of the checkpoint of `//sig/SIG`; raises ModelNotFoundError listing the XPs there when absent."""
    sig = sig_name[len(SIG_PREFIX):]
    xps = dora_xps_dir()
    path = xps / sig / XP_CHECKPOINT_FILE
    if sig and '/' not in sig and path.is_file():
        return path
    known = sorted(p.parent.name for p in xps.glob(f'*/{XP_CHECKPOINT_FILE}')) if xps.is_dir() else []
    shown = ', '.join(known[:10]) + (f' (and {len(known) - 10} more)' if len(known) > 10 else '')
    raise ModelNotFoundError(
        f"No Dora XP {sig_name!r}: tried {path} (AUDIOCRAFT_DORA_DIR={xps.parent}); "
        + (f"XPs with a checkpoint there: {shown}" if known else "no XP there has a checkpoint"))


def _locate_path(name: str, path: Path) -> ModelLocation:
    """An existing local path: exported folder, XP folder, or a checkpoint file."""
    if path.is_dir():
        if (path / EXPORTED_LM_FILE).is_file():
            compression = path / EXPORTED_COMPRESSION_FILE
            if not compression.is_file():
                raise ModelNotFoundError(f"Exported model folder {path} has {EXPORTED_LM_FILE} but no "
                                         f"{EXPORTED_COMPRESSION_FILE} (re-run `python -m rr_audiocraft.export`)")
            return ModelLocation(name, 'exported', path / EXPORTED_LM_FILE, compression)
        if (path / XP_CHECKPOINT_FILE).is_file():
            return ModelLocation(name, 'xp', path / XP_CHECKPOINT_FILE)
        raise ModelNotFoundError(f"Folder {path} holds neither {EXPORTED_LM_FILE} (an exported model) nor "
                                 f"{XP_CHECKPOINT_FILE} (a Dora XP)")
    # A single file: an XP checkpoint, or an exported LM file whose compression package sits beside it.
    compression = path.parent / EXPORTED_COMPRESSION_FILE
    return ModelLocation(name, 'file', path, compression if compression.is_file() else None)


def resolve_checkpoint(name: tp.Any, aliases: tp.Optional[tp.Dict[str, str]] = None,
                       kinds: tp.Optional[tp.Collection[str]] = None) -> ModelLocation:
    """Where a model name points: the one resolver of every name this project loads or exports a model by
    (generation, export, the compression model of an XP, the demo). Nothing is downloaded nor loaded here.

    Names are tried in this order:
        - `//pretrained/NAME`: kind 'pretrained', NAME kept for stock `get_pretrained` (a Hugging Face
          repo id or an exported file, e.g. the shipped codec `//pretrained/<abs path>/compression_state_dict.bin`);
        - `//sig/SIG`: kind 'xp', `$AUDIOCRAFT_DORA_DIR/xps/SIG/checkpoint.th`;
        - a local path (`~` expanded, `//reference/` resolved as AudioCraft does): a folder holding
          `state_dict.bin` ('exported'), a folder holding `checkpoint.th` ('xp'), or any file ('file');
        - a key of `aliases` or a Hugging Face repo id `owner/name`: kind 'pretrained'.
    AudioCraft's offline `debug` model is no file; the model classes build it before asking here.

    Args:
        name (str): The model name.
        aliases (dict, optional): Short names mapped to hub repo ids (MusicGen's 'small', ...).
        kinds (collection of str, optional): The kinds the caller can use; None accepts all.
    Raises:
        ModelNotFoundError: the name matches nothing (the message lists each try and why it failed), a
            `//sig/` XP has no checkpoint, a folder holds no model, or the name is of a kind not in `kinds`.
    """
    name = str(name)
    location = _resolve(name, aliases or {})
    if kinds is not None and location.kind not in kinds:
        what = {'pretrained': f"a pretrained model name ({location.pretrained!r})",
                'xp': f"a Dora XP checkpoint ({location.checkpoint})",
                'exported': f"an exported model folder ({location.checkpoint.parent})",  # type: ignore
                'file': f"a checkpoint file ({location.checkpoint})"}[location.kind]
        raise ModelNotFoundError(f"{name!r} names {what}, but only {' or '.join(sorted(kinds))} can be used here")
    return location


def _resolve(name: str, aliases: tp.Dict[str, str]) -> ModelLocation:
    if name.startswith(PRETRAINED_PREFIX):
        return ModelLocation(name, 'pretrained', pretrained=name[len(PRETRAINED_PREFIX):])
    if name.startswith(SIG_PREFIX):
        return ModelLocation(name, 'xp', _sig_checkpoint(name))
    tried = [f"AudioCraft's built-in {DEBUG_NAME!r} model (only that exact name)",
             f"a Dora XP (names look like {SIG_PREFIX}SIG)"]
    path = AudioCraftEnvironment.resolve_reference_path(Path(name).expanduser())
    if path.exists():
        return _locate_path(name, path)
    tried.append(f"a local exported folder, XP folder or checkpoint file ({path.resolve()} does not exist)")
    repo_id = aliases.get(name, name)
    if aliases:
        tried.append(f"a stock alias (known: {', '.join(sorted(aliases))})")
    if not _HUB_REPO_ID.match(repo_id):
        tried.append("a Hugging Face repo id (needs the form owner/name)")
        raise ModelNotFoundError(f"Unknown model {name!r}. Tried: " + '; '.join(tried))
    return ModelLocation(name, 'pretrained', pretrained=repo_id)


def _download_exported(location: ModelLocation) -> ModelLocation:
    """The exported LM and compression files of a 'pretrained' LM, fetched from the hub (or its cache)."""
    repo_id = str(location.pretrained)
    if not _HUB_REPO_ID.match(repo_id):
        raise ModelNotFoundError(f"{location.name!r}: an LM named by {PRETRAINED_PREFIX} must be a Hugging Face "
                                 f"repo id (owner/name), not {repo_id!r}")
    from huggingface_hub import hf_hub_download
    files = {}
    for filename in (EXPORTED_LM_FILE, EXPORTED_COMPRESSION_FILE):
        try:
            files[filename] = Path(hf_hub_download(
                repo_id=repo_id, filename=filename, cache_dir=get_audiocraft_cache_dir(),
                library_name='audiocraft', library_version=audiocraft.__version__))
        except Exception as exc:  # offline, unknown repo, missing file: all mean "not there"
            raise ModelNotFoundError(f"Unknown model {location.name!r}: not a Dora XP nor a local path, and the "
                                     f"Hugging Face repo {repo_id!r} gave no {filename} ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0]})") from None
    return ModelLocation(location.name, 'exported', files[EXPORTED_LM_FILE], files[EXPORTED_COMPRESSION_FILE])


def lm_state_from_package(package: dict, source: tp.Any = 'checkpoint') -> tp.Dict[str, torch.Tensor]:
    """The LM weights of a loaded package: exported `best_state`, or an XP's best state (EMA if used).

    Args:
        package (dict): What `load_checkpoint` returned for an exported LM file or an XP checkpoint.
        source: Shown in errors.
    """
    best = package.get('best_state')
    if package.get('exported'):
        if not best:
            raise ValueError(f"{source}: exported package without best_state")
        return best
    # Training checkpoint: {'model': state} under fsdp_best_state (FSDP) or best_state; the stock solver
    # fills them from the EMA weights when EMA is on (BaseSolver.run_epoch swaps EMA in for `valid`).
    for key in ('fsdp_best_state', 'best_state'):
        state = package.get(key) or {}
        if state.get('model'):
            return state['model']
    raise ValueError(f"{source}: no best state in the checkpoint (keys: {sorted(package)}); the XP has not "
                     "finished an epoch yet")


def xp_config_from_package(package: dict, source: tp.Any = 'checkpoint') -> omegaconf.DictConfig:
    """The XP config of a package (a DictConfig in XP checkpoints, a YAML string once exported)."""
    if 'xp.cfg' not in package:
        raise ValueError(f"{source} carries no XP config ('xp.cfg'): not an AudioCraft checkpoint")
    register_resolvers()  # the config may name the shipped codec as ${rr_asset:NAME}
    return OmegaConf.create(package['xp.cfg'])


def build_lm(cfg: omegaconf.DictConfig, state: tp.Dict[str, torch.Tensor],
             device: str = 'cpu') -> RRLMModel:
    """Build the LM of an XP config as an RRLMModel, load `state`, in eval mode, with `lm.cfg` set.

    The config is adapted as stock `load_lm_model` does: target device, float32 on CPU and float16
    otherwise, and training-only conditioner keys that newer conditioners reject are dropped.
    """
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))  # our copy, keys addable
    cfg.device = str(device)
    cfg.dtype = 'float32' if cfg.device == 'cpu' else 'float16'
    for key in ('conditioners.self_wav.chroma_stem.cache_path', 'conditioners.args.merge_text_conditions_p',
                'conditioners.args.drop_desc_p'):
        _delete_param(cfg, key)
    lm = get_rr_lm_model(cfg)
    lm.load_state_dict(state)
    lm.eval()
    lm.cfg = cfg  # BaseGenModel reads max_duration and compression wrapping from it
    return lm


def compression_model_from_package(package: dict, device: str = 'cpu',
                                   source: tp.Any = 'checkpoint') -> CompressionModel:
    """Build a compression model from a package: a pretrained reference, exported or XP checkpoint."""
    if 'pretrained' in package:  # what `export_pretrained_compression_model` writes for a named model
        return CompressionModel.get_pretrained(package['pretrained'], device=device)
    cfg = OmegaConf.create(OmegaConf.to_container(xp_config_from_package(package, source)))
    cfg.device = str(device)
    model = stock_builders.get_compression_model(cfg)
    model.load_state_dict(lm_state_from_package(package, source))
    return model.eval()


def load_compression_model(reference: tp.Any, device: str = 'cpu') -> CompressionModel:
    """The compression model a `compression_model_checkpoint` names (see `resolve_checkpoint`): a
    `//pretrained/NAME` through stock `CompressionModel.get_pretrained`, else the checkpoint file."""
    location = resolve_checkpoint(reference, kinds=('pretrained', 'xp', 'file'))
    if location.kind == 'pretrained':
        return CompressionModel.get_pretrained(str(location.pretrained), device=device)
    return compression_model_from_package(load_checkpoint(location.checkpoint), device, source=location.checkpoint)


def load_compression_for_xp(cfg: omegaconf.DictConfig, device: str = 'cpu') -> CompressionModel:
    """The compression model an LM XP was trained on (its `compression_model_checkpoint`)."""
    reference = cfg.get('compression_model_checkpoint')
    if not reference:
        raise ValueError("The LM checkpoint's config has no compression_model_checkpoint: cannot tell which "
                         "compression model decodes its tokens")
    verify_compression_reference(reference)
    return load_compression_model(reference, device)


def check_models_match(compression_model: CompressionModel, lm: RRLMModel, source: tp.Any) -> None:
    """The LM must have been trained on this compression model's tokens; one clear error otherwise."""
    cfg = getattr(lm, 'cfg', None)
    lm_rate = cfg.get('sample_rate') if cfg is not None else None
    if lm_rate is not None and int(lm_rate) != int(compression_model.sample_rate):
        raise ValueError(f"{source}: mismatched sample rate: the LM was trained at sample_rate={lm_rate} Hz but "
                         f"its compression model runs at {compression_model.sample_rate} Hz")
    if lm.card != compression_model.cardinality:
        raise ValueError(f"{source}: the LM predicts tokens among {lm.card} but its compression model's codebooks "
                         f"have {compression_model.cardinality} entries")
    # Codebook counts only compare before BaseGenModel's wrapping when the XP did not change them.
    wraps = cfg is not None and (cfg.get('compression_model_n_q') is not None
                                 or bool((cfg.get('interleave_stereo_codebooks') or {}).get('use')))
    if not wraps and lm.num_codebooks != compression_model.num_codebooks:
        raise ValueError(f"{source}: the LM predicts {lm.num_codebooks} codebooks but its compression model has "
                         f"{compression_model.num_codebooks}")


def load_models(name: str, device: tp.Optional[str] = None, aliases: tp.Optional[tp.Dict[str, str]] = None
                ) -> tp.Tuple[CompressionModel, RRLMModel]:
    """Load the compression model and the LM a name points to (anything but `debug`).

    Args:
        name (str): `//sig/SIG`, an exported folder, an XP folder, a checkpoint file, an alias or a hub id.
        device (str, optional): Defaults to CUDA when available, else CPU.
        aliases (dict, optional): Short names mapped to hub repo ids.
    Returns:
        tuple: (compression model, RRLMModel with `cfg`), both in eval mode on `device`.
    """
    device = default_device(device)
    location = resolve_checkpoint(name, aliases)
    if location.kind == 'pretrained':
        location = _download_exported(location)
    lm_file = location.checkpoint
    package = load_checkpoint(lm_file)
    if not isinstance(package, dict) or 'best_state' not in package:
        raise ValueError(f"{lm_file} is not an AudioCraft LM checkpoint (no best_state)")
    cfg = xp_config_from_package(package, lm_file)
    lm = build_lm(cfg, lm_state_from_package(package, lm_file), device)
    del package
    if location.compression_file is not None:
        compression_model = compression_model_from_package(
            load_checkpoint(location.compression_file), device, source=location.compression_file)
    else:
        compression_model = load_compression_for_xp(cfg, device)
    compression_model = compression_model.to(device)
    check_models_match(compression_model, lm, name)
    logger.info("Loaded %s (%s) from %s", name, location.kind, lm_file)
    return compression_model, lm


def model_family(lm: RRLMModel) -> tp.Optional[str]:
    """'audiogen' or 'musicgen' from the solver the LM was trained by (`lm.cfg.solver`), else None."""
    cfg = getattr(lm, 'cfg', None)
    solver = str(cfg.get('solver') or '') if cfg is not None else ''
    for family in ('musicgen', 'audiogen'):
        if family in solver:
            return family
    return None
