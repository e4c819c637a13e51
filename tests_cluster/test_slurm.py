"""`dora grid` on a real Slurm: the tiny ablation grid with 2 ranks per XP, a cancelled job resumed, the
global-batch L_rr across 2 Slurm tasks, the submission check, and `make slurm-up` after a crash.

Everything runs the user's commands (`dora -P rr_audiocraft grid rr_ablation_tiny`, `sbatch`, `scancel`,
`sacct`) against the cluster of `make slurm-up`; Dora's own view of the grid (its sheeps, their jobs and
states) is read back through its API.
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import typing as tp
from pathlib import Path

import pytest
import torch

from conftest import DORA, REPO_ROOT, SESSION_DIR, SHORT_LM, run, sacct_states

pytestmark = pytest.mark.usefixtures('slurm')
GRID = 'rr_ablation_tiny'
MONITOR = ['--no_git_save', '-i', '0.05']  # poll every 3 s; run from the working tree as it is
EPOCHS = 3  # of the cancelled-and-resumed XP


def grid_env(data: Path, epochs: int, overrides: tp.Sequence[str], **extra: str) -> tp.Dict[str, str]:
    """The settings `dora grid rr_ablation_tiny` reads (its module docstring): seed 0, λ = 0 and λ = 3, 2 ranks."""
    return {**os.environ, 'RR_TINY_DATA': str(data), 'RR_TINY_SEEDS': '0', 'RR_TINY_EPOCHS': str(epochs),
            'RR_TINY_RANKS': '2', 'RR_TINY_OVERRIDES': ' '.join(list(SHORT_LM) + list(overrides)), **extra}


def dora_view(env: tp.Mapping[str, str]) -> tp.List[tp.Any]:
    """The grid's sheeps as Dora sees them (XP, last job, state from sacct), without submitting anything."""
    code = ("import json, sys, rr_audiocraft\n"
            "from rr_audiocraft.train import main\n"
            "from rr_audiocraft.grid_local import load_explorer, register\n"
            f"sheeps = register(main, load_explorer(main, {GRID!r}), {GRID!r})\n"
            "json.dump([{'sig': s.xp.sig, 'folder': str(s.xp.folder), 'job': s.job.job_id if s.job else None,\n"
            "            'state': s.state(), 'weight': float(s.xp.cfg.rr.weight),\n"
            "            'history': main.get_xp_history(s.xp)} for s in sheeps], sys.stdout)\n")
    return json.loads(run([sys.executable, '-c', code], env=dict(env)).stdout)


def finite(value: tp.Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_dora_grid_runs_the_tiny_grid_on_slurm_with_two_ranks_per_xp(bench_data):
    env = grid_env(bench_data, epochs=2, overrides=['optim.updates_per_epoch=4'])
    started = time.time()
    proc = run(DORA + ['grid', GRID] + MONITOR, env=env, timeout=1200)
    elapsed = time.time() - started
    print(proc.stdout[-6000:])
    print(f"dora grid: {elapsed:.0f} s")
    sheeps = dora_view(env)
    assert len(sheeps) == 2 and sorted(s['weight'] for s in sheeps) == [0., 3.]
    states = sacct_states(s['job'] for s in sheeps)
    print('jobs:', states)
    assert set(states.values()) == {'COMPLETED'}
    for sheep in sheeps:
        assert sheep['state'] == 'COMPLETED'
        history = sheep['history']
        assert len(history) == 2
        last = history[-1]
        assert finite(last['train']['ce']) and finite(last['valid']['ce'])
        assert finite(last['valid']['rr']) and last['valid']['rr'] >= 0  # measured for λ = 0 too
        folder = Path(sheep['folder'])
        # Two ranks, each with its log, joined in one gloo group (train.distributed_backend).
        for rank in (0, 1):
            log = (folder / f'solver.log.{rank}').read_text()
            assert f'Distributed init: {rank}/2' in log, log[-2000:]
    # The explorer table: both XPs done, with their ce and valid rr, as a user sees it.
    table = run(DORA + ['grid', GRID, '--no_monitoring', '--no_git_save'], env=env).stdout
    rows = [line for line in table.splitlines() if re.search(r'\bCOM\b', line)]
    assert len(rows) == 2, table
    assert all('2/2' in row and 'nan' not in row for row in rows), table


def test_a_cancelled_job_is_resubmitted_and_resumes_from_its_last_checkpoint(bench_data):
    # One XP (index 1: λ = 3), 3 epochs of 40 steps (~15 s each here: longer than Slurm's KillWait of 5 s, so
    # the cancelled epoch cannot finish in the grace period); 2 ranks of 200 random segments each.
    env = grid_env(bench_data, epochs=EPOCHS, overrides=['optim.updates_per_epoch=40', 'dataset.train.num_samples=400'])
    sig = dora_view(env)[1]['sig']
    history_file = SESSION_DIR / 'dora' / 'xps' / sig / 'history.json'
    shutil.rmtree(history_file.parent, ignore_errors=True)  # from scratch, also in a reused RR_CLUSTER_TEST_DIR
    grid = subprocess.Popen(DORA + ['grid', GRID, '1'] + MONITOR, cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 600
        # Cancel as soon as the first epoch is in the history: the job is then early in epoch 2.
        while not (history_file.exists() and json.loads(history_file.read_text() or '[]')):
            assert time.time() < deadline and grid.poll() is None, "the XP finished no epoch in 10 minutes"
            time.sleep(0.5)
        # Dora names a job `<main>_<sig>`.
        job = next(line.split()[0] for line in run(['squeue', '-h', '-o', '%i %j']).stdout.splitlines()
                   if line.endswith('_' + sig))
        before = json.loads(history_file.read_text())
        run(['scancel', job])
        out, _ = grid.communicate(timeout=300)  # Dora's monitor ends: no job of the selection is running
    finally:
        if grid.poll() is None:
            grid.kill()
    print(out[-3000:])
    assert sacct_states([job]) == {job: 'CANCELLED'}
    cut = json.loads(history_file.read_text())
    assert len(cut) == len(before) == 1, (len(before), len(cut))  # epoch 2 was cut short, epoch 1 kept
    # The same grid again, with Dora's --retry: the cancelled XP is resubmitted and resumes.
    run(DORA + ['grid', GRID, '1', '--retry'] + MONITOR, env=env, timeout=1200)
    sheep = next(s for s in dora_view(env) if s['sig'] == sig)
    print('jobs:', job, 'then', sheep['job'], sheep['state'], '; epochs before the cancel:', len(cut))
    assert sheep['job'] != job and sheep['state'] == 'COMPLETED'
    history = sheep['history']
    for epoch, values in enumerate(history, 1):
        print(f"epoch {epoch}: train ce {values['train']['ce']:.4f} rr {values['train'].get('rr', float('nan')):.4f}, "
              f"valid ce {values['valid']['ce']:.4f} rr {values['valid']['rr']:.4f}")
    assert len(history) == EPOCHS and history[:1] == cut  # the finished epoch neither lost nor redone
    log = (Path(sheep['folder']) / 'solver.log.0').read_text()
    assert 'Loading existing checkpoint' in log  # stock StandardSolver.restore, on resubmission


def test_rr_gather_over_two_slurm_tasks_is_the_global_batch_loss(tmp_path):
    sys.path.insert(0, str(REPO_ROOT / 'tests'))
    from rank_fixtures import single_process, toy_batch
    script = REPO_ROOT / 'tests_cluster' / 'rr_gather_ranks.py'
    proc = run(['sbatch', '--wait', '--parsable', '--partition=debug', '--ntasks=2', '--cpus-per-task=1',
                '--gres=gpu:2', '--mem=2G', '--time=10', f'--output={tmp_path}/job.out',
                # Dora's jobs come from submitit's batch script, which exports SUBMITIT_EXECUTOR=slurm: that is how
                # `get_distrib_spec` knows to read Slurm's task variables. A plain srun does the same here.
                f'--wrap=SUBMITIT_EXECUTOR=slurm srun {sys.executable} {script} {tmp_path}'], timeout=600, check=False)
    job = proc.stdout.strip().split(';')[0]
    job_out = tmp_path / 'job.out'
    assert proc.returncode == 0, job_out.read_text()[-3000:] if job_out.exists() else proc.stderr
    assert sacct_states([job]) == {job: 'COMPLETED'}
    ranks = [torch.load(tmp_path / f'rank{r}.pt') for r in (0, 1)]
    assert [r['rank'] for r in ranks] == [0, 1] and {r['job'] for r in ranks} == {job}
    full_loss, full_grads = single_process(toy_batch())
    for rank in ranks:
        torch.testing.assert_close(rank['loss'], full_loss)
        for grad, ref in zip(rank['grads'], full_grads, strict=True):
            torch.testing.assert_close(grad, ref)


def test_bad_submissions_are_refused_before_anything_is_queued(bench_data, tmp_path):
    queued_before = run(['squeue', '-h', '-o', '%i']).stdout.split()
    # A partition the cluster does not have (the team config names it).
    team = tmp_path / 'team.yaml'
    team.write_text((REPO_ROOT / 'config' / 'teams' / 'local.yaml').read_text().replace('debug', 'nosuchpart'))
    env = grid_env(bench_data, epochs=1, overrides=[], AUDIOCRAFT_CONFIG=str(team))
    proc = run(DORA + ['grid', GRID, '--no_git_save', '--no_monitoring'], env=env, check=False)
    assert proc.returncode == 1
    assert 'nothing was submitted' in proc.stderr and 'partition(s) nosuchpart do not exist' in proc.stderr
    # RR on with 1 sample per rank and no gather: no pairs on any rank.
    env = grid_env(bench_data, epochs=1, overrides=['dataset.batch_size=2'])
    proc = run(DORA + ['grid', GRID, '--no_git_save', '--no_monitoring'], env=env, check=False)
    assert proc.returncode == 1 and '2 ranks: rr.weight=3.0 needs at least 2 samples per step' in proc.stderr
    assert 'rr.weight=0.0' not in proc.stderr  # the λ = 0 XP of the grid is fine
    assert run(['squeue', '-h', '-o', '%i']).stdout.split() == queued_before


def test_slurm_up_again_is_quick_and_changes_nothing():
    started = time.time()
    proc = run(['bash', 'scripts/slurm_up.sh'], timeout=120)
    assert '[slurm-up] already up' in proc.stdout, proc.stdout
    assert time.time() - started < 20


def test_slurm_up_after_a_crash_cancels_the_jobs_that_died_with_it():
    """Slurm killed with a job on the node (a stopped machine, a killed CI run): the restarted controller
    reloads the job as running; slurm_up.sh must cancel it, or it holds both CPUs until its time limit.
    Runs last: it restarts slurmctld and slurmd."""
    job = run(['sbatch', '--parsable', '-J', 'rr-crashed', '-p', 'debug', '--ntasks=2', '--time=30',
               '-o', '/dev/null', '--wrap', 'sleep 607']).stdout.strip()
    running = f'^slurmstepd: \\[{job}\\.'
    deadline = time.time() + 60
    while subprocess.run(['pgrep', '-f', running], capture_output=True).returncode != 0:
        assert time.time() < deadline, f"job {job} never started"
        time.sleep(0.5)
    # The crash must come after the controller saved the job as running: killed before, the job comes
    # back pending and is started again, a case slurm_up leaves alone. A change to the job makes the
    # controller save its job state file, so the next write of that file holds the job as running.
    config = run(['scontrol', 'show', 'config']).stdout
    job_state = Path(re.search(r'^StateSaveLocation\s*=\s*(\S+)', config, re.M).group(1)) / 'job_state'
    seen_running = time.time()
    run(['scontrol', 'update', f'JobId={job}', 'Comment=crashed-by-test'])
    while job_state.stat().st_mtime <= seen_running:
        assert time.time() < deadline + 60, f"slurmctld never saved its state after job {job} started"
        time.sleep(0.5)
    for how in [['-x', 'slurmctld'], ['-x', 'slurmd'], ['-f', running], ['-f', '^sleep 607']]:
        subprocess.run(['pkill', '-KILL', *how])
    time.sleep(1)
    proc = run(['bash', 'scripts/slurm_up.sh'], timeout=300)
    cancelled = [line for line in proc.stdout.splitlines() if 'left from an earlier start' in line]
    assert len(cancelled) == 1 and cancelled[0].endswith(f'): {job}'), proc.stdout
    assert 'tasks ran, sacct COMPLETED' in proc.stdout, proc.stdout
    assert sacct_states([job]) == {job: 'CANCELLED'}
