"""The process set-up every entry point runs first: `configure()`.

Stock AudioCraft reads its settings from the environment (the XP folder `AUDIOCRAFT_DORA_DIR` when its
train module is imported and when it resolves `//sig/SIG`; the team `AUDIOCRAFT_TEAM` and its cluster
settings `AUDIOCRAFT_CONFIG`; a login name `USER`), and our configs use the `${rr_asset:NAME}` resolver.
`configure` sets those defaults, registers the resolver and quietens a misleading xformers warning, once
per process; nothing happens at `import rr_audiocraft`. Values already in the environment win, so a
shell, Slurm job or test session that sets `AUDIOCRAFT_DORA_DIR` keeps it.

`override_dora_dir(path)` sends the XPs of a block of code elsewhere (bench's throwaway XPs, tests) and
puts everything back on exit, including the folder of any Dora main bound with `bind_dora_main`.
"""
import contextlib
import getpass
import logging
import os
import typing as tp
from pathlib import Path

from omegaconf import OmegaConf

from . import REPO_ROOT
from .assets import asset_reference, finetune_compression_reference

DORA_DIR_VARIABLE = 'AUDIOCRAFT_DORA_DIR'
DEFAULT_DORA_DIR = REPO_ROOT / 'outputs'  # XPs live in the checkout unless told otherwise
TEAMS_DIR = REPO_ROOT / 'config' / 'teams'

_dora_mains: tp.List[tp.Any] = []


def _drop_xformers_cpu_warning(record: logging.LogRecord) -> bool:
    """xformers logs 'can't load C++/CUDA extensions ... Please reinstall xformers' when imported with a
    torch it was not built for. AudioCraft imports it at module level, and with no GPU its kernels are
    never called (`efficient_attention_backend: torch`), so on CPU-only machines the advice can only
    mislead; with a GPU it is kept."""
    if not str(record.msg).startswith('WARNING[XFORMERS]'):
        return True
    import torch  # already imported: xformers imports it before it logs
    return torch.cuda.is_available()


def configure(dora_dir: tp.Optional[tp.Union[str, Path]] = None) -> None:
    """Sets up this process for AudioCraft and our configs; idempotent (a second call changes nothing
    but the XP folder, when `dora_dir` is given).

    Args:
        dora_dir: where XPs go (`AUDIOCRAFT_DORA_DIR`). None keeps the environment's value, else
            `<checkout>/outputs`.
    """
    if dora_dir is not None:
        os.environ[DORA_DIR_VARIABLE] = str(dora_dir)
    os.environ.setdefault(DORA_DIR_VARIABLE, str(DEFAULT_DORA_DIR))
    os.environ.setdefault('AUDIOCRAFT_TEAM', 'default')
    # Stock reads a team's cluster settings (Slurm partitions, dora_dir) from its own config/teams/TEAM.yaml,
    # or from AUDIOCRAFT_CONFIG: the teams this project adds (config/teams/, e.g. `local` for `make slurm-up`).
    team_config = TEAMS_DIR / f"{os.environ['AUDIOCRAFT_TEAM']}.yaml"
    if team_config.is_file():
        os.environ.setdefault('AUDIOCRAFT_CONFIG', str(team_config))
    if not os.environ.get('USER'):
        try:
            os.environ['USER'] = getpass.getuser()
        except (KeyError, OSError):
            os.environ['USER'] = 'rr'
    xformers = logging.getLogger('xformers')
    if _drop_xformers_cpu_warning not in xformers.filters:
        xformers.addFilter(_drop_xformers_cpu_warning)
    register_resolvers()


def register_resolvers() -> None:
    """The resolvers our configs use; every process that composes or loads them needs them.

    `${rr_asset:NAME}`: a shipped codec under assets/, as `compression_model_checkpoint` names it (the tiny
    configs' default). `${rr_finetune_codec:SOURCE,HUB}`: the fine-tuning recipes' compression model (a local
    folder's file, or the hub name).
    """
    if not OmegaConf.has_resolver('rr_asset'):
        OmegaConf.register_new_resolver('rr_asset', asset_reference)
    if not OmegaConf.has_resolver('rr_finetune_codec'):
        OmegaConf.register_new_resolver('rr_finetune_codec', finetune_compression_reference)


def dora_dir() -> Path:
    """The folder holding the XPs (`AUDIOCRAFT_DORA_DIR`, set by `configure`)."""
    return Path(os.environ.get(DORA_DIR_VARIABLE) or DEFAULT_DORA_DIR)


def bind_dora_main(main: tp.Any) -> None:
    """Points a Dora main's XP folder at `dora_dir()` now and whenever `override_dora_dir` changes it (Dora
    reads `main.dora.dir` when it builds an XP)."""
    main.dora.dir = dora_dir()
    if main not in _dora_mains:
        _dora_mains.append(main)


@contextlib.contextmanager
def override_dora_dir(path: tp.Union[str, Path]) -> tp.Iterator[Path]:
    """XPs made inside the block go to `path` (environment and bound Dora mains); restored on exit."""
    previous = os.environ.get(DORA_DIR_VARIABLE)
    os.environ[DORA_DIR_VARIABLE] = str(path)
    for main in _dora_mains:
        main.dora.dir = dora_dir()
    try:
        yield Path(path)
    finally:
        if previous is None:
            os.environ.pop(DORA_DIR_VARIABLE, None)
        else:
            os.environ[DORA_DIR_VARIABLE] = previous
        for main in _dora_mains:  # also those bound inside the block
            main.dora.dir = dora_dir()
