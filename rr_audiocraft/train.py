"""Dora/Hydra entry point: `dora -P rr_audiocraft run solver=rr_audiogen/tiny ...`.

The primary config `config/train.yaml` holds only what RR adds; AudioCraft's own config tree (outside
its package, beside it in the editable install) is put on Hydra's search path by the plugin below, so
`solver=rr_audiogen/audiogen_300m` can build on `/solver/audiogen/default` without copying it.
"""
# First: the process set-up (environment.configure) that stock AudioCraft's train module and our configs (the
# `${rr_asset:...}` resolver) need. Every process that runs or loads an XP imports this module (`dora -P
# rr_audiocraft`, Slurm jobs unpickling `main`, grid workers).
from . import configured  # noqa: F401
import logging
import sys
import typing as tp
from pathlib import Path

import flashy
import omegaconf
from dora import hydra_main
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

import audiocraft
from audiocraft import train as stock_train
from audiocraft.utils.cluster import get_slurm_parameters

from .assets import AssetError
from .checkpoint import allow_audiocraft_checkpoints
from .data.validate import DatasetError
from .distrib import leaves_process_group
from .environment import bind_dora_main
from .evaluation import EvaluationAssetError
from .settings import CheckpointMismatchError, ConfigError, split_batches_over_ranks

logger = logging.getLogger(__name__)
STOCK_CONFIG_DIR = Path(audiocraft.__file__).resolve().parents[1] / 'config'


class AudioCraftConfigSearchPath(SearchPathPlugin):
    """Appends AudioCraft's config tree after ours, so ours can add files and compose the stock ones."""
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not (STOCK_CONFIG_DIR / 'config.yaml').exists():
            raise RuntimeError(f"AudioCraft's config tree is missing at {STOCK_CONFIG_DIR}: install AudioCraft "
                               "editable from its sdist (`make install` does)")
        search_path.append('audiocraft', f'file://{STOCK_CONFIG_DIR}')


Plugins.instance().register(AudioCraftConfigSearchPath)
# Start-up refusals (settings, a corrupted shipped codec, data, evaluation files): each is one message that says what
# to change, so `main` prints it without a traceback and exits with this status.
STARTUP_ERRORS = (ConfigError, AssetError, DatasetError, EvaluationAssetError)
STARTUP_ERROR_STATUS = 2
# Refusals raised by `solver.restore`, which `solver.run` calls before its first epoch: weights from `continue_from`
# that do not fit the model. The same one message and status as a start-up refusal.
RESTORE_ERRORS = (CheckpointMismatchError,)
allow_audiocraft_checkpoints()


def get_solver(cfg: omegaconf.DictConfig):
    """Build the solver named by `cfg.solver`: ours for `rr_*`, AudioCraft's for the rest."""
    from .solvers import RR_SOLVERS
    if cfg.solver not in RR_SOLVERS:
        return stock_train.get_solver(cfg)
    world_size = flashy.distrib.world_size()
    # Same contract as stock: configs give global batch sizes, solvers get per-rank ones.
    uneven = split_batches_over_ranks(cfg, world_size)
    if uneven:
        raise ValueError(uneven[0])
    stock_train.resolve_config_dset_paths(cfg)
    return RR_SOLVERS[cfg.solver](cfg)


def distributed_backend(cfg: omegaconf.DictConfig) -> str:
    """The process-group backend for a multi-rank run: NCCL for CUDA, gloo otherwise.

    Stock `flashy.distrib.init()` always asks for NCCL, which Dora refuses without CUDA: every rank of a
    CPU XP launched with 2 tasks (Slurm, torchrun) would die at start-up. Gloo has the collectives the
    solvers use on CPU (all-reduce of gradients and metrics, RR's all-gather, FSDP's shards).
    """
    import torch
    return 'nccl' if str(cfg.device).startswith('cuda') and torch.cuda.is_available() else 'gloo'


def refuse(error: Exception) -> tp.NoReturn:
    """Print a start-up refusal as one message without traceback and exit with `STARTUP_ERROR_STATUS`."""
    # The class path first, as the last line of a traceback would read (what scripts grep for).
    print(f"{type(error).__module__}.{type(error).__qualname__}: {error}", file=sys.stderr, flush=True)
    sys.exit(STARTUP_ERROR_STATUS)


@leaves_process_group  # a multi-rank run frees its gloo group before the interpreter exits
def run_xp(cfg: omegaconf.DictConfig) -> tp.Any:
    """One XP on this rank: `main`'s work (a plain function: Hydra and Dora inspect the function they decorate)."""
    stock_train.init_seed_and_system(cfg)
    log_name = '%s.log.{rank}' % cfg.execute_only if cfg.execute_only else 'solver.log.{rank}'
    flashy.setup_logging(level=str(cfg.logging.level).upper(), log_name=log_name)
    flashy.distrib.init(backend=distributed_backend(cfg))
    try:
        solver = get_solver(cfg)
    except STARTUP_ERRORS as error:
        refuse(error)
    if cfg.show:
        solver.show()
        return None
    try:
        if cfg.execute_only:
            if not (cfg.execute_inplace or cfg.continue_from is not None):
                raise ValueError("execute_only needs continue_from=<sig or path> or execute_inplace=true")
            solver.restore(replay_metrics=False)
            solver.run_one_stage(cfg.execute_only)
            return None
        return solver.run()
    except RESTORE_ERRORS as error:
        refuse(error)


@hydra_main(config_path='../config', config_name='train', version_base='1.1')
def main(cfg: omegaconf.DictConfig) -> tp.Any:
    return run_xp(cfg)


bind_dora_main(main)
main.dora.grid_package = 'dora_grids'
main._base_cfg.slurm = get_slurm_parameters(main._base_cfg.slurm)

if __name__ == '__main__':
    main()
