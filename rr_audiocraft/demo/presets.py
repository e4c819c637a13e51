"""What `make demo` and `make reproduce` run: presets, and the settings one run is made with.

A preset holds what is not a solver setting: which rows, seeds and benchmark, where results go, how many LMs train
at once. What each LM trains is its solver config (`config/solver/rr_audiogen/{demo,reproduce,reproduce_gpu}.yaml`),
so `dora -P rr_audiocraft run solver=rr_audiogen/demo` trains one LM of the demo's table.
"""
import dataclasses
import typing as tp
from pathlib import Path

import torch

from .. import REPO_ROOT
from ..table1 import DEFAULT_ROWS, TABLE1, Row

DEFAULT_DATA = REPO_ROOT / 'data' / 'synth'
RESULTS_DIR = REPO_ROOT / 'results'  # generated results pages, written whole by the demo
DEVICES = ('auto', 'cpu', 'cuda')


@dataclasses.dataclass(frozen=True)
class Preset:
    """A preset of the demo.

    Attributes:
        solver: the LMs' solver config.
        rows: the Table 1 rows trained (the baseline among them).
        seeds: LM seeds of every row.
        clips: clips in the benchmark (train/valid/test 80/10/10).
        out: results folder.
        page: the results page of the preset's own run (results/<name>.md, its plot beside it).
        cache_epochs: epochs of batches in the token cache, cycled by the LMs.
        jobs: LM XPs trained at once, each with cpu_count // jobs torch threads (on a GPU they share it).
    """
    solver: str
    rows: tp.Tuple[Row, ...]
    seeds: tp.Tuple[int, ...]
    clips: int
    out: Path
    page: Path
    cache_epochs: int = 2
    jobs: int = 2


PRESETS: tp.Dict[str, Preset] = {
    # 6 LMs (λ = 0 and 3, 3 seeds) of 240 steps each: ~6 min on 2 cores.
    'demo': Preset(solver='rr_audiogen/demo', rows=DEFAULT_ROWS, seeds=(0, 1, 2), clips=600,
                   out=REPO_ROOT / 'demo_out', page=RESULTS_DIR / 'demo.md'),
    # 27 LMs (nine rows, 3 seeds) of 840 steps each, 200 test captions: ~1.7 h on 2 cores.
    'reproduce': Preset(solver='rr_audiogen/reproduce', rows=TABLE1, seeds=(0, 1, 2), clips=2000,
                        out=REPO_ROOT / 'reproduce_out', page=RESULTS_DIR / 'reproduce.md', cache_epochs=4),
}
# Where torch sees a GPU: the same benchmark, judge and rows with larger LMs, three XPs at a time on the one GPU,
# into their own folder and page so the 2-core run's stay. A preset without an entry here trains the same XPs on
# the GPU (Dora leaves `device` out of the signature: an XP finished on one device is finished on the other).
CUDA_PRESETS: tp.Dict[str, Preset] = {
    'reproduce': dataclasses.replace(PRESETS['reproduce'], solver='rr_audiogen/reproduce_gpu',
                                     out=REPO_ROOT / 'reproduce_gpu_out', page=RESULTS_DIR / 'reproduce-gpu.md',
                                     cache_epochs=8, jobs=3),
}


def preset_for(name: str, device: str) -> Preset:
    """Preset `name` on `device` ('cpu' or 'cuda')."""
    return CUDA_PRESETS.get(name, PRESETS[name]) if device == 'cuda' else PRESETS[name]


def resolve_device(device: str) -> str:
    """`--device`: 'auto' is CUDA when torch sees a GPU, else the CPU (as stock `get_pretrained`); 'cuda'
    without one is refused here, before anything is trained."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f"torch {torch.__version__} sees no CUDA device (`make install` takes the CPU wheel; "
                         "on a GPU machine install a CUDA build of the same torch version)")
    return device


def default_data(seed: int, clips: int) -> Path:
    """data/synth for the default benchmark (seed 0, 600 clips), else data/synth-seed<S>[-<N>clips]."""
    if seed == 0 and clips == 600:
        return DEFAULT_DATA
    return DEFAULT_DATA.with_name(f'synth-seed{seed}' + ('' if clips == 600 else f'-{clips}clips'))


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Everything one run of the demo is made with (a preset and the command line's changes to it).

    Attributes:
        solver, rows, seeds, cache_epochs, jobs: as `Preset`.
        lm_overrides: more overrides of every LM XP, after its solver config.
        data_seed, clips: the benchmark's seed and size; `data` its folder.
        out: results folder.
        codec: codec asset folder.
        device: 'cpu' or 'cuda' (resolved).
        until: 'ceiling' stops after the scale, 'all' runs every stage.
        page: the results page to write (None: none).
        ship_judge: copy the fitted judge into its asset folder (`make judge`).
        command: the command line, as the results page records it.
    """
    solver: str
    rows: tp.Tuple[Row, ...]
    seeds: tp.Tuple[int, ...]
    cache_epochs: int
    jobs: int
    lm_overrides: tp.Tuple[str, ...]
    data_seed: int
    clips: int
    data: Path
    out: Path
    codec: Path
    device: str
    until: str = 'all'
    page: tp.Optional[Path] = None
    ship_judge: bool = False
    command: str = 'python -m rr_audiocraft.demo'
