"""FSDP on CPU ranks: stock AudioCraft's FSDP wrapping, with the CPU as each rank's device and float32.

Why: AudioCraft 1.3.0's `audiocraft.optim.fsdp.wrap_with_fsdp` assumes one CUDA device per rank. It
asserts `local_rank < torch.cuda.device_count()` (always false without CUDA) and passes
`device_id=local_rank`, which FSDP reads as `cuda:<local_rank>`; without any `device_id` FSDP refuses a
CPU module ("FSDP needs a non-CPU accelerator device"). Its default `fsdp.param_dtype` is float16, made
for CUDA: stock's float16 path brings a gradient scaler made for CUDA, and on CPU the reductions go
through gloo, whose reduced-precision support has reported bugs (torch #111131).

What differs on CPU (`fsdp.use=true` with `device=cpu`), all in `CPUFSDP`, a subclass of stock's wrapper
class `_FSDPFixStateDict`:
- FSDP gets `device_id=torch.device('cpu')`;
- stock's `sync_module_states=True` (every rank starts from rank 0's weights) is done by a gloo broadcast
  just before FSDP flattens the weights: FSDP refuses CPU tensors for it ("requires them to be on GPU");
- the full state dict stock takes for `fsdp_best_state` (`switch_to_full_state_dict`) is not offloaded
  to the CPU: the weights are there already, and the offload crashes torch 2.13 (segfault, rank 0);
- `fsdp.param_dtype`, `fsdp.reduce_dtype` and `fsdp.buffer_dtype` must be float32 (stock's
  `MixedPrecision` is then all float32), so FSDP computes what the non-FSDP run computes, up to the
  order of floating-point reductions.

What is kept: the rest is stock's own code, called as is. The RR solvers' `wrap_with_fsdp` calls stock's
`StandardSolver.wrap_with_fsdp` (which calls `audiocraft.optim.fsdp.wrap_with_fsdp` and registers the
wrapper in `_fsdp_modules`) inside `stock_fsdp_on_cpu`: for that call only, stock's module wraps with
`CPUFSDP` instead of `_FSDPFixStateDict`, and its CUDA device-count check sees one device per local rank.
So the sharding strategy, the per-block auto-wrap (`StreamingTransformerLayer`, `ConditioningProvider`),
`use_orig_params`, stock's post-backward hook fix, the `_fsdp` back-references the LM calls through, and
the state-dict handling stay stock's: the wrapper is a `_FSDPFixStateDict` (sharded tensors dropped from
`state_dict`, its `load_state_dict`, `purge_fsdp`), left in LOCAL_STATE_DICT mode, and the solver's
checkpoints are stock's: each rank writes its local state (`checkpoint.th`, `checkpoint.th.<rank>`), and
rank 0 also keeps the full, unsharded best state in `fsdp_best_state`, which the exporter and the
loaders read first.

What trains (checked at start-up by `check_cpu_fsdp`, one ConfigError, before anything is built):
`fsdp.sharding_strategy=shard_grad_op` (stock's default) on 2 or more ranks. Stock refuses `full_shard`
in its wrapper, and its `purge_fsdp` (run when the solver swaps the best state in after the valid stage)
asserts a sharded strategy ("Expects sharded strategy"), so `no_shard` fails there (device-independent
code). One process is the same case: Dora creates no process group at world size 1, which FSDP needs, and
with one (`DORA_FORCE_DISTRIB=1`) FSDP falls back to `no_shard` at world size 1, and `purge_fsdp` fails.

`unsharded` serves RR under FSDP on any device: RR calls the text conditioner directly for T, outside
FSDP's forward, so the valid stage needs that unit's weights gathered (see its docstring).

On CUDA the RR solvers call stock's `wrap_with_fsdp` unchanged.
"""
import contextlib
import dataclasses
import itertools
import typing as tp
from unittest import mock

import dora
import omegaconf
import torch

from audiocraft.optim import fsdp as stock_fsdp
from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel as FSDP

from .settings import ConfigError

CPU_DTYPE = 'float32'
DTYPE_KEYS = ('param_dtype', 'reduce_dtype', 'buffer_dtype')
SHARDING = 'shard_grad_op'  # the one strategy stock 1.3.0 trains with (see the module docstring)


def uses_cpu_fsdp(cfg: omegaconf.DictConfig) -> bool:
    """Whether an XP config asks for FSDP on CPU ranks (`fsdp.use=true`, `device=cpu`)."""
    return bool(cfg.fsdp.use) and torch.device(cfg.device).type == 'cpu'


def _settings_problems(fsdp: omegaconf.DictConfig) -> tp.List[str]:
    """What the `fsdp` group itself gets wrong for CPU ranks: dtypes and sharding strategy."""
    problems = [
        f"fsdp.{key}={fsdp[key]} is not supported with fsdp.use=true on CPU (device=cpu): FSDP on CPU ranks trains "
        f"in {CPU_DTYPE} (stock's float16 path needs a CUDA gradient scaler, and gloo's reduced-precision "
        f"collectives have reported bugs); set fsdp.{key}={CPU_DTYPE}"
        for key in DTYPE_KEYS if fsdp[key] != CPU_DTYPE]
    if fsdp.sharding_strategy != SHARDING:
        problems.append(f"fsdp.sharding_strategy={fsdp.sharding_strategy} is not supported: AudioCraft's FSDP "
                        "wrapper refuses full_shard and its purge_fsdp fails on no_shard; set "
                        f"fsdp.sharding_strategy={SHARDING}")
    return problems


def cpu_fsdp_problems(cfg: omegaconf.DictConfig) -> tp.List[str]:
    """Every setting that keeps `fsdp.use=true` from training on CPU ranks, each naming its key and fix.

    Empty when the config does not use FSDP on CPU. Reads the world size, so call it after the entry point
    initialised distributed training (`train.main` does, before building the solver).
    """
    if not uses_cpu_fsdp(cfg):
        return []
    problems = _settings_problems(cfg.fsdp)
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if world_size < 2:
        problems.append(
            f"fsdp.use=true needs 2 or more ranks, this run has {world_size}: with one, FSDP shards nothing and "
            "AudioCraft's FSDP path fails (no process group; or no_shard in purge_fsdp). Launch several, e.g. "
            "`python -m torch.distributed.run --nproc_per_node 2 -m dora -P rr_audiocraft run ...`, or set "
            "fsdp.use=false")
    return problems


def check_cpu_fsdp(cfg: omegaconf.DictConfig) -> None:
    """Raise one ConfigError listing every `cpu_fsdp_problems`, else nothing."""
    problems = cpu_fsdp_problems(cfg)
    if problems:
        raise ConfigError(problems)


class CPUFSDP(stock_fsdp._FSDPFixStateDict):
    """Stock's FSDP wrapper class on the CPU: its state-dict fixes kept, the device and rank-0 sync adapted.

    The blocks FSDP wraps inside it (auto-wrap) get the same arguments, since FSDP hands them the root's.
    """
    def __init__(self, module: torch.nn.Module, *args: tp.Any, **kwargs: tp.Any):
        kwargs['device_id'] = torch.device('cpu')  # stock passes its local rank: a CUDA device index
        if kwargs.get('sync_module_states'):
            # Stock asks FSDP to start every rank from rank 0's weights; FSDP refuses to broadcast CPU tensors
            # (a check made for NCCL), gloo does it: the same broadcast, here, before FSDP flattens them.
            group = kwargs.get('process_group')
            with torch.no_grad():
                for tensor in itertools.chain(module.parameters(), module.buffers()):
                    torch.distributed.broadcast(tensor, src=0, group=group)
            kwargs['sync_module_states'] = False
        super().__init__(module, *args, **kwargs)

    def state_dict(self, *args: tp.Any, **kwargs: tp.Any) -> tp.Dict[str, tp.Any]:  # type: ignore
        settings = FSDP.get_state_dict_type(self)
        config = settings.state_dict_config
        if isinstance(config, FullStateDictConfig) and config.offload_to_cpu:
            # Stock's `switch_to_full_state_dict` (the full best state for `fsdp_best_state`) asks for a CPU
            # copy; the weights are CPU tensors already, and torch 2.13 then crashes the process (segfault
            # while FSDP clones the gathered weights). The same copy, without the offload.
            FSDP.set_state_dict_type(self, settings.state_dict_type, dataclasses.replace(config, offload_to_cpu=False),
                                     settings.optim_state_dict_config)
        return super().state_dict(*args, **kwargs)


@contextlib.contextmanager
def stock_fsdp_on_cpu(fsdp: omegaconf.DictConfig) -> tp.Iterator[None]:
    """While inside: stock's `wrap_with_fsdp` (and the solver method calling it) wraps for a CPU rank.

    Stock's wrapper class is `CPUFSDP` for the duration, and its CUDA device check counts this rank's CPU
    as its device. The solver's own `wrap_with_fsdp` runs inside this, so stock also registers the wrapper
    in `_fsdp_modules` (what `switch_to_full_state_dict` goes through for `fsdp_best_state`).

    Args:
        fsdp (DictConfig): The XP's `fsdp` group; its dtypes must be float32.
    Raises:
        ConfigError: A dtype other than float32, or another sharding strategy (the solvers check the whole
            XP config at start-up, `check_cpu_fsdp`; this guards direct callers).
    """
    problems = _settings_problems(fsdp)
    if problems:
        raise ConfigError(problems)
    local_rank = dora.distrib.get_distrib_spec().local_rank
    # Stock asserts `local_rank < torch.cuda.device_count()` (one CUDA device per rank). FSDP itself asks
    # the device handle of `device_id` (torch.cpu here), never torch.cuda, so only that check sees this.
    with mock.patch.object(stock_fsdp, '_FSDPFixStateDict', CPUFSDP), \
            mock.patch.object(torch.cuda, 'device_count', lambda: local_rank + 1):
        yield


def _sharded_views(handle: tp.Any) -> bool:
    """Whether the original parameters of an FSDP unit (`use_orig_params`) are views of its local shard.

    FSDP points them at the shard outside its forward, except after a forward with grad under a strategy
    that keeps the gathered weights for the backward (`shard_grad_op`): torch records that skip on the
    handle. Private torch state, as stock's `purge_fsdp` reads it too.
    """
    return (handle.uses_sharded_strategy and handle.is_sharded(handle.flat_param)
            and not getattr(handle, '_skipped_use_sharded_views', False))


@contextlib.contextmanager
def unsharded(model: torch.nn.Module, module: torch.nn.Module) -> tp.Iterator[None]:
    """The full weights of `module`, a submodule of `model`, while inside: for a call that bypasses FSDP.

    RR reads T by calling the text conditioner itself. Under FSDP (CUDA or CPU) its weights belong to the
    ConditioningProvider's unit, which only gathers them in its own forward: they stay gathered after it
    while training, but not after a forward under no_grad (the valid stage), where a direct call would
    read the flat shard. Nothing is done without FSDP, or when the weights are whole already.
    """
    if not isinstance(model, FSDP):
        yield
        return
    units = [unit for unit in FSDP.fsdp_modules(model) if any(sub is module for sub in unit.module.modules())]
    handle = getattr(units[-1], '_handle', None) if units else None  # the innermost unit holds the weights
    if handle is None or not _sharded_views(handle):
        yield
        return
    with FSDP.summon_full_params(units[-1], recurse=False, writeback=False):
        yield
