"""Table 1 at CPU scale, on the embedded synthetic benchmark (`solver=rr_audiogen/tiny`).

    python -m rr_audiocraft.grid_local rr_ablation_tiny       # or: make grid-local
    RR_TINY_FULL=1 python -m rr_audiocraft.grid_local rr_ablation_tiny

Default: no RR (λ = 0) against RR (λ = 3, max pooling), both with CFG dropout 0.1, each over three
seeds; `RR_TINY_FULL=1`: all nine rows of Table 1 (`rr_ablation.TABLE1`) over the seeds. XPs are
ordered seed by seed, so an interrupted run has whole comparisons done first.

Grids take no command-line arguments; these environment variables shape it (read when the grid is
built, so give the same ones to every command that looks at the grid):

- RR_TINY_DATA: root of the synthetic benchmark (holds egs/{train,valid,test}), e.g. the output of
  `python -m rr_audiocraft.data.synth data/synth`. Default: the `rr_synth` dset's relative paths
  (data/synth/egs/..., relative to where dora runs).
- RR_TINY_COMPRESSION: the EnCodec the LMs train on: a signature (`415f0b3d` or `//sig/415f0b3d`), a
  checkpoint path or `//pretrained/PATH`. Default: the shipped codec (`rr_audiogen/tiny`'s default,
  assets/encodec_synth_8khz, built by `make codec`).
- RR_TINY_SEEDS: comma-separated seeds (default `0,1,2`).
- RR_TINY_EPOCHS: LM epochs (default: `rr_audiogen/tiny`'s).
- RR_TINY_FULL: `1` for the nine Table 1 rows.
- RR_TINY_OVERRIDES: more LM overrides, space-separated `key=value` (e.g. to shrink a run:
  `optim.updates_per_epoch=2 dataset.valid.num_samples=8`).
"""
import os
import re
import typing as tp
from pathlib import Path

from rr_audiocraft.data.synth import datasource_overrides

from ._explorers import RRJudgeExplorer
from .rr_ablation import TABLE1, row

SOLVER = 'rr_audiogen/tiny'
# Default comparison: (pooling, CFG ratio, λ) — no RR vs the paper's best RR row.
DEFAULT_ROWS: tp.List[tp.Tuple[tp.Optional[str], float, float]] = [(None, 0.1, 0.), ('max', 0.1, 3.)]


def data_overrides(root: tp.Optional[str]) -> tp.List[str]:
    """Datasource overrides for a benchmark root, or none (the rr_synth defaults) when unset."""
    if not root:
        return []
    egs = Path(root).expanduser().resolve() / 'egs'
    for split in ('train', 'valid', 'test'):
        if not (egs / split / 'data.jsonl').is_file():
            raise FileNotFoundError(f"RR_TINY_DATA={root}: no {egs / split / 'data.jsonl'}; write the benchmark "
                                    f"with `python -m rr_audiocraft.data.synth {root}`")
    return datasource_overrides(egs.parent)


def compression_checkpoint(value: str) -> str:
    """`//sig/SIG` for a bare signature, anything else unchanged."""
    return f'//sig/{value}' if re.fullmatch(r'[0-9a-f]{8}', value) else value


def seeds_from(value: str) -> tp.List[int]:
    try:
        seeds = [int(seed) for seed in value.split(',') if seed.strip()]
    except ValueError:
        raise ValueError(f"RR_TINY_SEEDS={value!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise ValueError(f"RR_TINY_SEEDS={value!r}: no seed given")
    return seeds


@RRJudgeExplorer
def explorer(launcher):
    env = os.environ
    data = data_overrides(env.get('RR_TINY_DATA'))
    compression = env.get('RR_TINY_COMPRESSION')
    # Unset: the solver config's default, the shipped codec (no override, so no path in the signatures).
    codec = [f'compression_model_checkpoint={compression_checkpoint(compression)}'] if compression else []
    lm = launcher.bind([f'solver={SOLVER}'] + codec + data)
    if env.get('RR_TINY_EPOCHS'):
        lm.bind_({'optim.epochs': int(env['RR_TINY_EPOCHS'])})
    lm.bind_(env.get('RR_TINY_OVERRIDES', '').split())
    rows = TABLE1 if env.get('RR_TINY_FULL', '0') not in ('', '0') else DEFAULT_ROWS
    for seed in seeds_from(env.get('RR_TINY_SEEDS', '0,1,2')):
        for setting in rows:
            lm({**row(*setting), 'seed': seed})
