"""Table 1 at CPU scale, on the embedded synthetic benchmark (`solver=rr_audiogen/tiny`).

    python -m rr_audiocraft.grid_local rr_ablation_tiny       # or: make grid-local
    RR_TINY_FULL=1 python -m rr_audiocraft.grid_local rr_ablation_tiny

Default: no RR (λ = 0) against RR (λ = 3, max pooling), both with CFG dropout 0.1, each over three
seeds; `RR_TINY_FULL=1`: all nine rows of Table 1 (`rr_audiocraft.table1.TABLE1`) over the seeds. XPs are
ordered seed by seed, so an interrupted run has whole comparisons done first.

The grid is built from a `TinyGrid` (its settings as arguments): `TinyGrid(...).explorer()` is what
the demo and tests run. `dora grid` takes no arguments, so the module's `explorer` — the CLI shim —
reads the same settings from these environment variables (give the same ones to every command that
looks at the grid):

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
- RR_TINY_RANKS: ranks (Slurm tasks) per XP under `dora grid` (default 2; gloo on CPU). Dora asks Slurm
  for one GPU per rank (`--gres=gpu:N`); on a CPU node those are the fake GPU devices `make slurm-up`
  declares. `grid_local` runs each XP as one process whatever this says.
- RR_TINY_CACHE: `write` schedules the XPs that write AudioCraft's token cache (`TinyGrid.cache_explorer`);
  once they are done, `1` schedules the LMs reading their batches from it (`TinyGrid.token_cache`).
"""
import dataclasses
import hashlib
import json
import os
import re
import typing as tp
from pathlib import Path

from audiocraft.environment import AudioCraftEnvironment
from rr_audiocraft.data.synth import datasource_overrides
from rr_audiocraft.table1 import DEFAULT_ROWS, TABLE1, Row

from ._explorers import RRJudgeExplorer

SOLVER = 'rr_audiogen/tiny'
SLURM_MEM_PER_RANK_GB = 4  # a tiny LM rank: text encoder, codec, batches
SLURM_TIME_MIN = 60


def data_overrides(root: tp.Optional[tp.Union[str, Path]]) -> tp.List[str]:
    """Datasource overrides for a benchmark root, or none (the rr_synth defaults) when unset."""
    if not root:
        return []
    egs = Path(root).expanduser().resolve() / 'egs'
    for split in ('train', 'valid', 'test'):
        if not (egs / split / 'data.jsonl').is_file():
            raise FileNotFoundError(f"benchmark {root}: no {egs / split / 'data.jsonl'}; write the benchmark "
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


def positive_int(key: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{key}={value!r}: expected a whole number >= 1")
    return number


@dataclasses.dataclass
class TinyGrid:
    """Settings of the tiny grid.

    Attributes:
        solver: the LMs' solver config (`rr_audiogen/tiny`; the demo's `rr_audiogen/demo`, `reproduce`, ...).
        data: benchmark root (None: the `rr_synth` dset's defaults).
        compression: the codec the LMs train on (None: the solver config's default, the shipped codec;
            a bare signature means `//sig/SIG`).
        seeds: LM seeds; XPs are ordered seed by seed, so an interrupted run has whole comparisons done first.
        rows: Table 1 rows (`table1.DEFAULT_ROWS`: no RR against the best RR row, or `table1.TABLE1`).
        epochs: LM epochs (None: the solver config's).
        overrides: more LM overrides, `key=value`.
        token_cache: the LMs read their batches (EnCodec tokens and captions) from AudioCraft's token
            cache (`cache.path`), written once by the XPs of `cache_explorer()`, which must run first:
            the audio is then encoded once for all XPs, not once per XP. Every XP then sees the same
            batches in the same order (seeds differ in initialisation and CFG draws only).
        cache_epochs: epochs of batches in the cache; the LMs cycle over them (`data.token_cache`).
        cache_shards: cache-writing XPs (each writes every `cache_shards`-th epoch; they can run at once).
        ranks: processes per XP when Dora submits it to Slurm (`launcher.slurm_(gpus=ranks)`: one task per
            rank, gloo on CPU); the global batch is split over them. The partition is the team's
            (AudioCraft's `teams` config, `AUDIOCRAFT_TEAM`).
    """
    solver: str = SOLVER
    data: tp.Optional[tp.Union[str, Path]] = None
    compression: tp.Optional[str] = None
    seeds: tp.Sequence[int] = (0, 1, 2)
    rows: tp.Sequence[Row] = DEFAULT_ROWS
    epochs: tp.Optional[int] = None
    overrides: tp.Sequence[str] = ()
    token_cache: bool = False
    cache_epochs: int = 4
    cache_shards: int = 2
    ranks: int = 2

    def _lm_base(self, launcher: tp.Any) -> tp.Any:
        # A CPU grid: one core and a few GB per rank, not the stock 40 GB per GPU; an hour is plenty.
        launcher.slurm_(gpus=int(self.ranks), cpus_per_gpu=1, mem_per_gpu=SLURM_MEM_PER_RANK_GB, time=SLURM_TIME_MIN,
                        partition=AudioCraftEnvironment.get_slurm_partitions(['team', 'global']))
        # Unset: the solver config's default, the shipped codec (no override, so no path in the signatures).
        codec = [f'compression_model_checkpoint={compression_checkpoint(self.compression)}'] if self.compression else []
        lm = launcher.bind([f'solver={self.solver}'] + codec + data_overrides(self.data))
        if self.epochs is not None:
            lm.bind_({'optim.epochs': int(self.epochs)})
        lm.bind_(list(self.overrides))
        return lm

    def cache_path(self) -> Path:
        """Where the token cache of these settings lives (`cache.path`): under the benchmark, one folder
        per codec, cached epochs, solver config and batch-deciding overrides (`dataset.*`,
        `optim.updates_per_epoch`)."""
        batches = sorted(o for o in self.overrides if o.startswith(('dataset.', 'optim.updates_per_epoch=')))
        key_fields: tp.Dict[str, tp.Any] = {'compression': self.compression, 'epochs': self.cache_epochs,
                                            'batches': batches}
        if self.solver != SOLVER:  # another solver config batches otherwise (the tiny grid's folders stay)
            key_fields['solver'] = self.solver
        key = json.dumps(key_fields)
        root = Path(self.data).expanduser() if self.data else Path('data/synth')
        return root.resolve() / 'token_cache' / hashlib.sha1(key.encode()).hexdigest()[:10]

    def explore_cache(self, launcher: tp.Any) -> None:
        """Schedules the XPs that write the token cache (stock `cache.write`, `cache_shards` shards of
        the epochs), with the smallest LM: what they train is thrown away, their batches are kept."""
        lm = self._lm_base(launcher)
        lm.bind_({'cache.path': str(self.cache_path()), 'cache.write': True, 'optim.epochs': int(self.cache_epochs),
                  'cache.write_num_shards': int(self.cache_shards), 'rr.weight': 0.,
                  'transformer_lm.dim': 16, 'transformer_lm.num_heads': 1, 'transformer_lm.num_layers': 1})
        for shard in range(int(self.cache_shards)):
            lm({'cache.write_shard': shard})

    def cache_explorer(self) -> RRJudgeExplorer:
        """The Dora explorer of the cache-writing XPs (run them before `explorer()` when `token_cache`)."""
        return RRJudgeExplorer(self.explore_cache)

    @classmethod
    def from_env(cls, env: tp.Mapping[str, str] = os.environ) -> 'TinyGrid':
        """The settings `dora grid rr_ablation_tiny` runs with (see the module docstring)."""
        return cls(data=env.get('RR_TINY_DATA') or None, compression=env.get('RR_TINY_COMPRESSION') or None,
                   seeds=seeds_from(env.get('RR_TINY_SEEDS', '0,1,2')),
                   rows=TABLE1 if env.get('RR_TINY_FULL', '0') not in ('', '0') else DEFAULT_ROWS,
                   epochs=int(env['RR_TINY_EPOCHS']) if env.get('RR_TINY_EPOCHS') else None,
                   overrides=env.get('RR_TINY_OVERRIDES', '').split(),
                   token_cache=env.get('RR_TINY_CACHE', '') in ('1', 'write'),
                   ranks=positive_int('RR_TINY_RANKS', env.get('RR_TINY_RANKS', '2')))

    def explore(self, launcher: tp.Any) -> None:
        """Schedules the grid's XPs on a Dora launcher."""
        lm = self._lm_base(launcher)
        if self.token_cache:
            # Batches read back from the cache-writing XPs (stock reads them with num_workers threads).
            lm.bind_({'cache.path': str(self.cache_path()), 'dataset.num_workers': 1})
        for seed in self.seeds:
            for row in self.rows:
                lm({**row.overrides(), 'seed': seed})

    def explorer(self) -> RRJudgeExplorer:
        """The Dora explorer of these settings (what `grid_local.run_explorer` and `register` take)."""
        return RRJudgeExplorer(self.explore)


@RRJudgeExplorer
def explorer(launcher):
    # The CLI shim: `dora grid` gives a grid no arguments, so its settings come from the environment.
    grid = TinyGrid.from_env()
    if os.environ.get('RR_TINY_CACHE') == 'write':
        grid.explore_cache(launcher)  # first the cache writers, as AudioCraft's cached grids do
    else:
        grid.explore(launcher)
