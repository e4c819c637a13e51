"""Loading AudioCraft checkpoints with `torch.load(weights_only=True)` and an explicit allow-list.

AudioCraft checkpoints pickle the XP config (OmegaConf objects) beside the tensors. torch >= 2.6 loads
with `weights_only=True` by default and refuses those classes. Rather than turning the check off
(`TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1` or `weights_only=False`, which runs arbitrary pickled code), the
few classes an AudioCraft config is made of are added to torch's allow-list; anything else in a file
is still refused.

One substitution: OmegaConf keeps a resolver cache as a `collections.defaultdict`, which the
weights-only unpickler cannot fill. The name `collections.defaultdict` is mapped to a function that
returns a plain dict, so the cache loads as a dict (only cached custom-resolver results live there).
"""
import os
import re
import typing as tp
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig
from omegaconf.base import ContainerMetadata, Metadata
from omegaconf.nodes import AnyNode, BooleanNode, BytesNode, EnumNode, FloatNode, IntegerNode, PathNode, StringNode


def _resolver_cache_as_dict(*_args: tp.Any) -> dict:
    return {}


# What an AudioCraft XP config is made of, and nothing else.
AUDIOCRAFT_CHECKPOINT_GLOBALS: tp.List[tp.Any] = [
    DictConfig, ListConfig, ContainerMetadata, Metadata,
    AnyNode, BooleanNode, BytesNode, EnumNode, FloatNode, IntegerNode, PathNode, StringNode,
    tp.Any, dict, list, int, float, str, bool,
    (_resolver_cache_as_dict, 'collections.defaultdict'),
]

_registered = False


def allow_audiocraft_checkpoints() -> None:
    """Put the AudioCraft config classes on torch's weights-only allow-list (idempotent).

    After this, AudioCraft's own `torch.load(path, 'cpu')` calls (solver restore, `//sig/` compression
    models, pretrained loaders) load AudioCraft checkpoints with the weights-only unpickler.
    """
    global _registered
    if not _registered:
        torch.serialization.add_safe_globals(AUDIOCRAFT_CHECKPOINT_GLOBALS)
        _registered = True


def load_checkpoint(path: tp.Union[str, os.PathLike], map_location: tp.Any = 'cpu') -> tp.Any:
    """`torch.load` with `weights_only=True` and the allow-list; a refused file gets one clear error.

    `weights_only=True` is passed explicitly, so `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1` (which only flips
    the *default*) cannot turn the check off here.

    Raises:
        FileNotFoundError: there is no file at `path`.
        ValueError: the file pickles an object outside the allow-list (nothing of it is run), or it is
            not a torch checkpoint at all.
    """
    import pickle
    allow_audiocraft_checkpoints()
    if not Path(path).is_file():
        raise FileNotFoundError(f"No checkpoint file at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc)
        if 'Weights only load failed' not in detail:
            raise ValueError(f"{path} is not a readable torch checkpoint ({detail.strip()})") from None
        # torch words it 'Unsupported global: GLOBAL a.b' or 'unsupported GLOBAL a.b whose module ...'.
        found = re.search(r'GLOBAL ([\w.]+)', detail)
        what = found.group(1) if found else 'an object'
        raise ValueError(f"Refusing to load checkpoint {path}: it pickles {what}, which is not a tensor nor "
                         "part of an AudioCraft config (allow-list in rr_audiocraft.checkpoint). Only load it "
                         "with weights_only=False if you trust its source.") from None
    except (RuntimeError, KeyError, EOFError, ValueError, IndexError) as exc:
        # What torch raises on truncated files, zip archives without data.pkl, or random bytes.
        raise ValueError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {exc})") from None
