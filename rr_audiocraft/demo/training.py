"""The demo's LMs: the tiny grid's explorer (`dora_grids.rr_ablation_tiny.TinyGrid`) run through `grid_local`."""
import typing as tp
from pathlib import Path

from dora_grids.rr_ablation_tiny import TinyGrid

from .. import grid_local
from ..table1 import Row


def train_stage(data_dir: Path, compression: str, solver: str, seeds: tp.Sequence[int], rows: tp.Sequence[Row],
                lm_overrides: tp.Sequence[str], jobs: int = 2, cache_epochs: int = 2,
                device: str = 'cpu') -> tp.List[tp.Any]:
    """Trains the LMs (solver config `solver`, plus `lm_overrides`) of the Table 1 `rows` over `seeds` through
    `grid_local`, as the tiny grid's explorer schedules them, `jobs` at a time on `device`, on batches read from
    AudioCraft's token cache (written first by the grid's cache writers, so the audio is encoded once for all
    LMs); returns their Dora sheeps in grid order (finished XPs are skipped, an interrupted one resumes).
    `device` is stock's `device` key, which Dora leaves out of the signature."""
    grid = TinyGrid(solver=solver, data=data_dir, compression=compression, seeds=seeds, rows=list(rows),
                    overrides=[*lm_overrides, f'device={device}'], token_cache=True, cache_epochs=cache_epochs,
                    cache_shards=min(jobs, 2))
    for name, explorer in (('rr_ablation_tiny_cache', grid.cache_explorer()), ('rr_ablation_tiny', grid.explorer())):
        status, sheeps = grid_local.run_explorer(explorer, name, jobs=jobs)
        if status != 0:
            raise RuntimeError(f"train: some XPs of {name} failed (see the table above); rerun `make demo` "
                               "to retry them")
    return sheeps
