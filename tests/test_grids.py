"""Dora grids (`dora_grids/`), their explorers, and the no-Slurm runner `rr_audiocraft.grid_local`."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import typing as tp
from pathlib import Path

import pytest

from conftest import REPO_ROOT, run_dora, xp_dir
from rr_audiocraft.table1 import Row

ANSI = re.compile(r'\x1b\[[0-9;]*m')
GRID_LOCAL = [sys.executable, '-m', 'rr_audiocraft.grid_local']
TINY_ENV = ('RR_TINY_DATA', 'RR_TINY_COMPRESSION', 'RR_TINY_SEEDS', 'RR_TINY_EPOCHS', 'RR_TINY_FULL', 'RR_TINY_CACHE',
            'RR_TINY_OVERRIDES', 'RR_TINY_RANKS')
# A tiny grid XP shrunk to seconds: 2 updates, one valid/evaluate batch, one short generation.
SHRINK = ('optim.updates_per_epoch=2 dataset.valid.num_samples=8 dataset.evaluate.num_samples=8 '
          'dataset.generate.num_samples=1 dataset.generate.batch_size=1 generate.lm.gen_duration=0.5')


def explore(name: str) -> tp.Tuple[tp.List[tp.Any], tp.Dict[str, tp.Any]]:
    """The grid's XPs (Dora sheeps, in order) and their Slurm configs, as `dora grid` builds them."""
    from dora.explore import Herd, Launcher
    from dora.shep import Shepherd
    from rr_audiocraft.grid_local import load_explorer
    from rr_audiocraft.train import main
    herd = Herd()
    load_explorer(main, name)(Launcher(Shepherd(main), main.get_slurm_config(), herd))
    return list(herd.sheeps.values()), herd.slurm_configs


def setting(cfg: tp.Any) -> Row:
    """The Table 1 row of an XP."""
    return Row.from_cfg(cfg)


@pytest.fixture
def tiny_env(monkeypatch):
    for name in TINY_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_dora_grid_rr_ablation_dry_run_lists_table1_as_nine_xps():
    from rr_audiocraft.table1 import TABLE1
    from rr_audiocraft.train import main
    out = ANSI.sub('', run_dora('grid', 'rr_ablation', '--dry_run', '--init', timeout=900).stdout)
    rows = [line.split('|') for line in out.splitlines() if re.match(r'^\d+\s', line)]
    assert len(rows) == 9, out
    sigs = [re.findall(r'\b[0-9a-f]{8}\b', row[0])[-1] for row in rows]
    assert len(set(sigs)) == 9, out
    # The explorer's (pool, CFG, λ) columns, in Table 1's order.
    assert [tuple(line[1].split()) for line in rows] == [(row.pool, f'{row.cfg:.2f}', f'{row.weight:.0f}')
                                                         for row in TABLE1]
    for sig in sigs:  # --init registered each XP: `dora run -f SIG` can run it
        assert (xp_dir(sig) / '.argv.json').is_file()
    # Row 1 is the recipe itself: `dora run solver=rr_audiogen/audiogen_300m` is the same XP.
    assert sigs[0] == main.get_xp(['solver=rr_audiogen/audiogen_300m']).sig


@pytest.mark.parametrize('name, solver, settings', [
    ('rr_ablation', 'rr_audiogen', None),
    ('rr_audiogen', 'rr_audiogen', [Row(None, 0.1, 0.), Row('max', 0.1, 3.)]),
    ('rr_musicgen', 'rr_musicgen', [Row(None, 0.1, 0.), Row('max', 0.1, 3.)]),
])
def test_recipe_grids_have_their_settings_on_16_gpus(name, solver, settings):
    from rr_audiocraft.table1 import TABLE1
    sheeps, slurm = explore(name)
    cfgs = [sheep.xp.cfg for sheep in sheeps]
    assert [setting(cfg) for cfg in cfgs] == list(settings or TABLE1)
    assert len({sheep.xp.sig for sheep in sheeps}) == len(sheeps)
    for sheep, cfg in zip(sheeps, cfgs, strict=True):
        assert cfg.solver == solver and cfg.fsdp.use and cfg.optim.epochs * cfg.optim.updates_per_epoch == 100_000
        assert slurm[sheep.xp.sig].gpus == 16
        assert cfg.dataset.batch_size % slurm[sheep.xp.sig].gpus == 0  # whole per-GPU batches


def test_tiny_grid_default_trains_on_the_shipped_codec_lambda_0_vs_3_over_three_seeds(tiny_env, tiny_data):
    from rr_audiocraft.assets import asset_reference
    tiny_env.setenv('RR_TINY_DATA', str(tiny_data))
    sheeps, _ = explore('rr_ablation_tiny')
    lms = [sheep.xp for sheep in sheeps]
    assert len(lms) == 6 and len({xp.sig for xp in lms}) == 6  # no compression XP: the codec is shipped
    for xp in lms:
        assert xp.cfg.solver == 'rr_audiogen' and xp.cfg.transformer_lm.dim == 64  # the tiny LM
        assert xp.cfg.compression_model_checkpoint == asset_reference()
        assert xp.cfg.datasource.train == f'{tiny_data.resolve()}/egs/train'
    assert [(xp.cfg.seed, setting(xp.cfg)) for xp in lms] == [
        (seed, row) for seed in (0, 1, 2) for row in [Row(None, 0.1, 0.), Row('max', 0.1, 3.)]]


def test_tiny_grid_full_mode_and_settings_from_the_environment(tiny_env, tiny_data):
    from rr_audiocraft.table1 import TABLE1
    tiny_env.setenv('RR_TINY_DATA', str(tiny_data))
    tiny_env.setenv('RR_TINY_FULL', '1')
    tiny_env.setenv('RR_TINY_SEEDS', '5')
    tiny_env.setenv('RR_TINY_COMPRESSION', 'abcdef12')
    tiny_env.setenv('RR_TINY_EPOCHS', '7')
    tiny_env.setenv('RR_TINY_OVERRIDES', 'optim.updates_per_epoch=3')
    sheeps, _ = explore('rr_ablation_tiny')
    cfgs = [sheep.xp.cfg for sheep in sheeps]
    assert [setting(cfg) for cfg in cfgs] == list(TABLE1)
    assert len({sheep.xp.sig for sheep in sheeps}) == 9
    for cfg in cfgs:
        assert cfg.compression_model_checkpoint == '//sig/abcdef12'
        assert (cfg.seed, cfg.optim.epochs, cfg.optim.updates_per_epoch) == (5, 7, 3)

    tiny_env.setenv('RR_TINY_DATA', str(tiny_data / 'missing'))
    with pytest.raises(FileNotFoundError, match='rr_audiocraft.data.synth'):
        explore('rr_ablation_tiny')


def test_tiny_grid_asks_slurm_for_one_core_per_rank_on_the_team_partition(tiny_env, tiny_data):
    tiny_env.setenv('RR_TINY_DATA', str(tiny_data))
    tiny_env.setenv('AUDIOCRAFT_CONFIG', str(REPO_ROOT / 'config' / 'teams' / 'local.yaml'))
    _, slurm = explore('rr_ablation_tiny')
    for config in slurm.values():
        # Not the stock 4 GPUs x 40 GB: 2 ranks (Dora counts them in GPUs), 1 core and 4 GB each.
        assert (config.gpus, config.cpus_per_gpu, config.mem_per_gpu, config.time) == (2, 1, 4, 60)
        assert config.partition == 'debug,debug'  # the team's partitions, as the stock grids ask for them
    tiny_env.setenv('RR_TINY_RANKS', '4')
    assert {config.gpus for config in explore('rr_ablation_tiny')[1].values()} == {4}
    tiny_env.setenv('RR_TINY_RANKS', '0')
    with pytest.raises(ValueError, match=r"RR_TINY_RANKS='0': expected a whole number >= 1"):
        explore('rr_ablation_tiny')


def test_dora_grid_with_no_slurm_reachable_submits_nothing_and_says_why(tiny_env, tiny_data):
    # No Slurm client on PATH (the machine of someone without a cluster), and an XP whose 2 ranks would each
    # get 1 sample with RR on: both problems in one message, before Dora queues anything.
    env = {**os.environ, 'PATH': str(Path(sys.executable).parent), 'RR_TINY_DATA': str(tiny_data),
           'RR_TINY_SEEDS': '0', 'RR_TINY_OVERRIDES': 'dataset.batch_size=2'}
    proc = subprocess.run([sys.executable, '-m', 'dora', '-P', 'rr_audiocraft', 'grid', 'rr_ablation_tiny',
                           '--no_git_save', '--no_monitoring'], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 1
    message = proc.stderr[proc.stderr.index('dora grid: nothing was submitted'):]
    assert message.splitlines()[1:] == [
        "  - Slurm is not reachable: sinfo, sbatch, sacct not on PATH. On this machine `make slurm-up` starts a "
        "one-node cluster; without Slurm, `python -m rr_audiocraft.grid_local GRID` runs a grid's XPs one after "
        "the other",
        f"  - XP {message.split('XP ')[1].split()[0]} (rr_audiogen, seed 0), 2 ranks: "
        "rr.weight=3.0 needs at least 2 samples per step to form pairs, but dataset.batch_size=2 over 2 rank(s) "
        "gives 1 per rank; raise dataset.batch_size, set rr.gather=true or set rr.weight=0"]
    from rr_audiocraft.train import main
    assert not list(Path(os.environ['AUDIOCRAFT_DORA_DIR']).glob(f'xps/*/{main.dora.shep.submitit_folder}'))


def test_tiny_grid_from_arguments_is_the_grid_the_environment_describes(tiny_env, tiny_data):
    """`TinyGrid(...)` (what the demo builds, no environment) and the `dora grid` shim reading the same
    settings from RR_TINY_* give the same XPs; `grid_local.register` of it returns them in grid order."""
    from rr_audiocraft.table1 import TABLE1
    from dora_grids.rr_ablation_tiny import TinyGrid
    from rr_audiocraft.grid_local import register
    from rr_audiocraft.train import main
    grid = TinyGrid(data=tiny_data, compression='abcdef12', seeds=[4, 5], rows=TABLE1[:2], epochs=3,
                    overrides=['optim.updates_per_epoch=3'])
    sheeps = register(main, grid.explorer(), 'rr_ablation_tiny')
    assert [(sheep.xp.cfg.seed, setting(sheep.xp.cfg)) for sheep in sheeps] == [
        (seed, row) for seed in (4, 5) for row in TABLE1[:2]]
    assert all(sheep.xp.cfg.compression_model_checkpoint == '//sig/abcdef12' for sheep in sheeps)
    assert all((sheep.xp.cfg.optim.epochs, sheep.xp.cfg.optim.updates_per_epoch) == (3, 3) for sheep in sheeps)
    assert 'RR_TINY_DATA' not in os.environ  # nothing was passed through the environment
    for name, value in (('RR_TINY_DATA', str(tiny_data)), ('RR_TINY_COMPRESSION', 'abcdef12'),
                        ('RR_TINY_SEEDS', '4,5'), ('RR_TINY_FULL', '1'), ('RR_TINY_EPOCHS', '3'),
                        ('RR_TINY_OVERRIDES', 'optim.updates_per_epoch=3')):
        tiny_env.setenv(name, value)
    from_env, _ = explore('rr_ablation_tiny')
    assert [sheep.xp.sig for sheep in sheeps] == [
        sheep.xp.sig for sheep in from_env if setting(sheep.xp.cfg) in TABLE1[:2]]


def test_tiny_grid_token_cache_writers_and_readers_share_one_cache(tiny_env, tiny_data):
    """With `token_cache`, the LMs read `cache.path` (with a loader thread); the cache explorer schedules
    its shard writers (stock `cache.write`) on the smallest LM and as many cached epochs as asked. The
    cache folder follows what decides the batches, not the LM or RR settings."""
    from dora_grids.rr_ablation_tiny import TinyGrid
    from rr_audiocraft.grid_local import register
    from rr_audiocraft.train import main
    grid = TinyGrid(data=tiny_data, seeds=[0, 1], epochs=5, overrides=['optim.updates_per_epoch=3'],
                    token_cache=True, cache_epochs=2, cache_shards=2)
    readers = register(main, grid.explorer(), 'rr_ablation_tiny')
    writers = register(main, grid.cache_explorer(), 'rr_ablation_tiny_cache')
    path = str(grid.cache_path())
    assert path.startswith(str(Path(tiny_data).resolve() / 'token_cache'))
    for sheep in readers:
        cfg = sheep.xp.cfg
        assert (cfg.cache.path, cfg.cache.write, cfg.dataset.num_workers, cfg.optim.epochs) == (path, False, 1, 5)
    assert [(s.xp.cfg.cache.write_shard, s.xp.cfg.cache.write_num_shards) for s in writers] == [(0, 2), (1, 2)]
    for sheep in writers:
        cfg = sheep.xp.cfg
        assert (cfg.cache.path, cfg.cache.write, cfg.optim.epochs, cfg.optim.updates_per_epoch) == (path, True, 2, 3)
        assert (cfg.transformer_lm.dim, cfg.transformer_lm.num_layers, cfg.rr.weight) == (16, 1, 0.)
    bigger_lm = TinyGrid(data=tiny_data, overrides=['optim.updates_per_epoch=3', 'transformer_lm.dim=128'],
                         token_cache=True, cache_epochs=2)
    other_batches = TinyGrid(data=tiny_data, overrides=['optim.updates_per_epoch=4'], token_cache=True, cache_epochs=2)
    assert bigger_lm.cache_path() == grid.cache_path() != other_batches.cache_path()


def test_explorer_tables_show_settings_losses_and_evaluation_metrics(tiny_env):
    """Histories written as the solvers write them: the tiny explorer shows judge metrics from any
    stage, the recipe explorer AudioCraft's FAD / KL / CLAP from the evaluate stage."""
    from dora_grids._explorers import RRExplorer
    from rr_audiocraft.grid_local import format_table, load_explorer, register
    from rr_audiocraft.train import main
    tiny_env.setenv('RR_TINY_SEEDS', '11')
    tiny_env.setenv('RR_TINY_COMPRESSION', '//sig/abcdef12')
    tiny_env.setenv('RR_TINY_EPOCHS', '1')
    explorer = load_explorer(main, 'rr_ablation_tiny')
    sheeps = register(main, explorer, 'rr_ablation_tiny')
    assert len(sheeps) == 2
    history = [{'train': {'ce': 2.5, 'rr': 0.125}, 'valid': {'ce': 2.75},
                'evaluate': {'fad': 3.25, 'kld': 1.5, 'text_consistency': 0.375},
                'judge': {'source_f1': 0.8125, 'count_acc': 0.5, 'order_acc': 0.25, 'kl': 1.0625, 'fd': 12.5}}]
    (sheeps[0].xp.folder / 'history.json').write_text(json.dumps(history))

    table = format_table(main, explorer, sheeps)
    rows = [line for line in table.splitlines() if re.match(r'^\s*\d+\s', line)]
    assert len(rows) == 2, table
    done, todo = (re.sub(r'\s+', ' ', row) for row in rows)
    for cell in ['done', sheeps[0].xp.sig, 'rr_audiogen – 0.10 0 11', '1/1 2.5000 0.1250', '2.7500',
                 '0.812 0.500 0.250 1.062 12.50']:
        assert cell in done, (cell, table)
    assert 'todo' in todo and 'max 0.10 3 11' in todo and '0/1' in todo

    recipe_table = format_table(main, RRExplorer(explorer.explore), sheeps)
    assert 'FAD' in recipe_table and 'CLAP' in recipe_table
    assert '3.250 1.500 0.375' in re.sub(r'\s+', ' ', recipe_table)


def _processes_running(sig: str) -> tp.List[int]:
    """Pids of processes whose command line runs XP `sig`."""
    pids = []
    for proc in Path('/proc').iterdir():
        try:
            cmdline = (proc / 'cmdline').read_bytes().split(b'\0')
        except (OSError, ValueError):
            continue
        if b'-f' in cmdline and sig.encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def test_grid_local_runs_the_grid_survives_interruption_and_continues(tiny_data, tiny_compression_sig, tmp_path):
    """Two shrunk tiny XPs: the runner is stopped (SIGTERM) as the second starts; a rerun skips the
    finished one, runs the other, and prints the explorer table."""
    env = {**{k: v for k, v in os.environ.items() if k not in TINY_ENV},
           'RR_TINY_DATA': str(tiny_data), 'RR_TINY_COMPRESSION': tiny_compression_sig, 'RR_TINY_SEEDS': '0',
           'RR_TINY_EPOCHS': '1', 'RR_TINY_OVERRIDES': SHRINK}
    cmd = GRID_LOCAL + ['rr_ablation_tiny']
    with open(tmp_path / 'first.err', 'w') as err:
        first = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        watchdog = threading.Timer(600, first.kill)
        watchdog.start()
        lines: tp.List[str] = []
        try:
            assert first.stdout is not None
            for line in first.stdout:
                lines.append(line)
                started = re.search(r'\[2/2\] running ([0-9a-f]{8})', line)
                if started:  # stop the runner while the second XP's process is alive
                    deadline = time.time() + 120
                    while not _processes_running(started.group(1)) and time.time() < deadline:
                        time.sleep(0.2)
                    assert _processes_running(started.group(1)), 'the second XP never started'
                    time.sleep(2)
                    first.send_signal(signal.SIGTERM)
                    break
            returncode = first.wait(timeout=120)
        finally:
            watchdog.cancel()
    output = ''.join(lines)
    assert returncode == 128 + signal.SIGTERM, output + (tmp_path / 'first.err').read_text()[-3000:]
    sig1 = re.search(r'\[1/2\] running ([0-9a-f]{8})', output).group(1)
    sig2 = re.search(r'\[2/2\] running ([0-9a-f]{8})', output).group(1)
    assert f'[1/2] {sig1} done' in output
    history1 = xp_dir(sig1) / 'history.json'
    assert len(json.loads(history1.read_text())) == 1
    assert not (xp_dir(sig2) / 'history.json').exists()
    assert 'run -f ' + sig2 in (xp_dir(sig2) / 'grid_local.log').read_text()  # it had started
    assert _processes_running(sig2) == []  # the interrupted XP was stopped with the runner
    stamp = history1.stat().st_mtime_ns

    second = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr[-3000:]
    out = second.stdout
    assert '2 XPs, 1 finished, 1 to run' in out
    assert f'running {sig2}' in out and f'running {sig1}' not in out
    assert history1.stat().st_mtime_ns == stamp  # the finished XP was not touched
    assert len(json.loads((xp_dir(sig2) / 'history.json').read_text())) == 1
    rows = {row.split()[2]: re.sub(r'\s+', ' ', row) for row in out.splitlines()
            if re.match(r'^\s*\d+\s+\w+\s+[0-9a-f]{8}', row)}
    assert set(rows) == {sig1, sig2}, out
    assert 'done' in rows[sig1] and 'done' in rows[sig2]
    assert 'rr_audiogen – 0.10 0 0 | 1/1' in rows[sig1] and 'rr_audiogen max 0.10 3 0 | 1/1' in rows[sig2]
    print(out)  # the explorer table, for the record (pytest -s)
