"""Fixtures of the Slurm tests (`make test-cluster`): a running Slurm, a session folder, a small benchmark.

These tests need the one-node cluster of `make slurm-up` (or any Slurm with a `debug` partition, two CPUs
and `gpu` GRES on a node, and accounting); `make test-cluster` starts it first. They submit real jobs, so
they live outside `tests/` (`make test`, which needs no Slurm).
"""
import os
import subprocess
import sys
import tempfile
import typing as tp
from pathlib import Path

import pytest

SESSION_DIR = Path(os.environ.get('RR_CLUSTER_TEST_DIR') or tempfile.mkdtemp(prefix='rr_cluster_tests_'))
# Read by rr_audiocraft.environment.configure (in every entry point) and passed on to the jobs (sbatch exports the
# submitting environment).
os.environ['AUDIOCRAFT_DORA_DIR'] = str(SESSION_DIR / 'dora')
os.environ['AUDIOCRAFT_TEAM'] = 'local'  # config/teams/local.yaml: the `debug` partition of `make slurm-up`
os.environ.setdefault('PYTHONWARNINGS', 'ignore')

REPO_ROOT = Path(__file__).resolve().parents[1]
DORA = [sys.executable, '-m', 'dora', '-P', 'rr_audiocraft']
# Short tiny-LM XPs: one torch thread per rank (each rank has one core), few steps, small valid set.
SHORT_LM = ['dataset.valid.num_samples=8', 'dataset.evaluate.num_samples=2', 'generate.lm.gen_duration=0.5',
            'num_threads=1']


def run(cmd: tp.Sequence[str], timeout: float = 900, check: bool = True,
        **kwargs: tp.Any) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def sacct_states(job_ids: tp.Iterable[str]) -> tp.Dict[str, str]:
    """Each job's state as accounting has it (`CANCELLED by 0` reads `CANCELLED`)."""
    out = run(['sacct', '-n', '-X', '-P', '-o', 'JobID,State', '-j', ','.join(job_ids)]).stdout
    return {job: state.split()[0] for job, state in (line.split('|') for line in out.splitlines() if line)}


@pytest.fixture(scope='session')
def slurm() -> None:
    """Fails every test at once, with what to do, when no Slurm answers."""
    try:
        proc = subprocess.run(['sinfo', '--noheader', '-o', '%P %a %D %t'], capture_output=True, text=True, timeout=60)
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"no Slurm here ({exc}): run `make slurm-up` first (make test-cluster does)")
    if proc.returncode != 0 or 'debug' not in proc.stdout:
        pytest.fail(f"Slurm is not up ({proc.stderr.strip() or proc.stdout.strip()}): run `make slurm-up` first")


@pytest.fixture(scope='session')
def bench_data() -> Path:
    """120 synthetic captioned clips with train/valid/test manifests (the tiny LMs train on the shipped codec)."""
    from rr_audiocraft.data.synth import generate_dataset
    out = SESSION_DIR / 'synth'
    if not (out / 'egs' / 'test' / 'data.jsonl').exists():
        generate_dataset(out, num_clips=120, seed=0)
    return out
