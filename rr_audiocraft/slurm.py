"""Checks `dora grid` runs before it queues anything on Slurm.

Without this, a bad grid submission fails late, one problem at a time: with no Slurm reachable or a
partition that does not exist, the first `sbatch` Dora runs fails with a traceback around Slurm's
message; with RR on and a per-rank batch that forms no pairs, the jobs are queued, wait for their
nodes, and then every rank stops at start-up (`settings.validate_rr_config`); an XP too large for the
cluster's GPUs waits for its nodes and then runs out of memory. Here the same problems are found on the
submitting machine, all at once, and reported in one message before Dora's shepherd submits or cancels
anything. The memory check is `python -m rr_audiocraft.plan`'s, for XPs on CUDA, with the memory per GPU
from `RR_GPU_MEMORY_GB` (docs/plan.md).

The check hooks `Shepherd.commit`, the one place where Dora acts on Slurm: `dora grid --dry_run` and
`python -m rr_audiocraft.grid_local` (which registers grids with a dry run) never reach it, so they
work with no Slurm at all, as before.
"""
import os
import shutil
import subprocess
import typing as tp

import omegaconf
from dora.shep import Shepherd

from .plan import GPU_MEMORY_ENV, PlanError, facts_of, plan_from, refusal, setup_of
from .settings import rr_config_problems, split_batches_over_ranks

SINFO_TIMEOUT_S = 30.


class SlurmSubmissionError(SystemExit):
    """A grid that cannot be queued; Dora's CLI prints the message and exits with status 1."""
    def __init__(self, problems: tp.Sequence[str]):
        lines = [f"dora grid: nothing was submitted, {len(problems)} problem(s):"] + [f"  - {p}" for p in problems]
        super().__init__('\n'.join(lines))
        self.problems = list(problems)


def slurm_partitions() -> tp.Tuple[tp.Optional[tp.List[str]], tp.Optional[str]]:
    """The cluster's partitions as `sinfo` lists them, or None and why Slurm is not reachable."""
    missing = [tool for tool in ('sinfo', 'sbatch', 'sacct') if shutil.which(tool) is None]
    if missing:
        return None, (f"Slurm is not reachable: {', '.join(missing)} not on PATH. On this machine `make slurm-up` "
                      "starts a one-node cluster; without Slurm, `python -m rr_audiocraft.grid_local GRID` runs a "
                      "grid's XPs one after the other")
    try:
        proc = subprocess.run(['sinfo', '--noheader', '--format=%R'], capture_output=True, text=True,
                              timeout=SINFO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"Slurm is not reachable: `sinfo` gave no answer in {SINFO_TIMEOUT_S:.0f} s"
    if proc.returncode != 0:
        said = (proc.stderr.strip().splitlines() or ['(no message)'])[-1]
        return None, (f"Slurm is not reachable: `sinfo` failed ({said}); is slurmctld running? "
                      "(`make slurm-up` on this machine)")
    return sorted({line.strip() for line in proc.stdout.splitlines() if line.strip()}), None


def xp_problems(cfg: omegaconf.DictConfig, ranks: int) -> tp.List[str]:
    """What would stop this XP's ranks at start-up, from its config and its Slurm rank count.

    Same rules as `train.get_solver` and the RR solver apply on each rank: the global batch must split
    evenly over the ranks, and RR needs pairs on each rank (or across them with `rr.gather`). Then, for an
    XP on CUDA, the memory plan (`rr_audiocraft.plan`) must fit the cluster's GPUs (`memory_problems`).
    """
    if cfg.get('rr') is None:  # not an RR LM (e.g. a compression XP): nothing of ours to check
        return []
    per_rank = omegaconf.OmegaConf.create(omegaconf.OmegaConf.to_container(cfg, resolve=False))
    return split_batches_over_ranks(per_rank, ranks) or rr_config_problems(per_rank, ranks) \
        or memory_problems(cfg, ranks)


def memory_problems(cfg: omegaconf.DictConfig, ranks: int) -> tp.List[str]:
    """The planner's refusal when this XP's memory plan does not fit `ranks` GPUs of `RR_GPU_MEMORY_GB` GiB.

    Only XPs on CUDA are planned: a CPU XP (the tiny grids of tests_cluster) has no GPU memory to run out
    of. Without the setting nothing is assumed: the XP is refused until the cluster's GPU memory is given.
    """
    if not str(cfg.get('device', 'cpu')).startswith('cuda'):
        return []
    setting = os.environ.get(GPU_MEMORY_ENV, '').strip()
    try:
        gpu_memory = float(setting)
    except ValueError:
        return [f"{GPU_MEMORY_ENV}={setting!r}: set it to the memory of one of the cluster's GPUs in GB (e.g. 80), "
                "so that each XP's memory plan can be checked before it is queued (0 skips the check; docs/plan.md)"]
    if gpu_memory == 0:
        return []
    try:
        result = plan_from(cfg, facts_of(cfg), setup_of(cfg, ranks), gpu_memory)
    except PlanError as error:
        return [f"memory plan: {error}"]
    return [] if result['fits'] else [refusal(result)]


def submission_problems(job_arrays: tp.Sequence[tp.Any]) -> tp.List[str]:
    """Every problem with queueing these Dora job arrays (`shep._JobArray`: a SlurmConfig and its sheeps)."""
    problems = []
    partitions, unreachable = slurm_partitions()
    if unreachable:
        problems.append(unreachable)
    wanted = sorted({p.strip() for array in job_arrays for p in (array.slurm_config.partition or '').split(',')
                     if p.strip()})
    if partitions is not None:
        unknown = [p for p in wanted if p not in {known.rstrip('*') for known in partitions}]
        if unknown:
            problems.append(f"partition(s) {', '.join(unknown)} do not exist on this cluster (sinfo lists: "
                            f"{', '.join(partitions) or 'none'}); set the team's `partitions` (AUDIOCRAFT_TEAM / "
                            "AUDIOCRAFT_CONFIG, see docs/recipes.md) or the grid's launcher.slurm_(partition=...)")
    for array in job_arrays:
        ranks = max(1, int(array.slurm_config.gpus or 1))
        for sheep in array.sheeps:
            # Dora's XP names repeat every override (data paths included): the signature and seed say which.
            cfg = sheep.xp.cfg
            problems += [f"XP {sheep.xp.sig} ({cfg.get('solver')}, seed {cfg.get('seed')}), {ranks} ranks: {p}"
                         for p in xp_problems(cfg, ranks)]
    return problems


class CheckedShepherd(Shepherd):
    """Dora's shepherd that checks what `commit()` is about to queue or cancel before it touches Slurm."""
    def commit(self) -> None:
        if self._to_submit or self._to_cancel:
            problems = submission_problems(self._to_submit)
            if problems:
                raise SlurmSubmissionError(problems)
        super().commit()


def install_submission_check(shepherd: Shepherd) -> None:
    """Give a grid's shepherd the check. Dora builds the shepherd inside `run_grid` and hands the explorer
    only the launcher holding it, so the class is swapped in place (a module-level class: Dora pickles
    launchers, shepherd included, into worker processes)."""
    if type(shepherd) is Shepherd:
        shepherd.__class__ = CheckedShepherd
