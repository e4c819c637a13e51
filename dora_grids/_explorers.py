"""Explorers of the RR grids: what `dora grid NAME` and `python -m rr_audiocraft.grid_local NAME` show.

One row per XP: its RR setting (pooling, CFG dropout ratio, λ, from the XP config), training `ce` and
`rr`, validation `ce`, and the evaluation metrics found in its history: AudioCraft's FAD / KL (PaSST) /
CLAP for the recipe grids, the synthetic benchmark's judge metrics for the tiny grid. XPs that are
not RR LMs (the tiny grid's compression model) show their training progress only.
"""
import math
import typing as tp

import treetable as tt

from audiocraft.grids._base_explorers import BaseExplorer
from rr_audiocraft.slurm import install_submission_check
from rr_audiocraft.table1 import Row

RR_SOLVERS = ('rr_audiogen', 'rr_musicgen')


def rr_setting(cfg: tp.Any) -> tp.Dict[str, tp.Any]:
    """Pooling, CFG ratio, λ and seed of an XP config, as Table 1 writes them ('–': no RR)."""
    if cfg.solver not in RR_SOLVERS:
        return {}
    row = Row.from_cfg(cfg)
    return {'pool': row.pool, 'CFG': row.cfg, 'λ': row.weight, 'seed': int(cfg.seed)}


class RRExplorer(BaseExplorer):
    """RR LM grids with AudioCraft's generation metrics (the paper recipes).

    Attributes:
        eval_metrics: (history key, column name, format) of the evaluation metrics to show; each is
            looked up in every stage of every epoch of the history, the latest value winning.
        show_seed (bool): add a seed column (grids that repeat settings over seeds).
    """
    eval_metrics: tp.Sequence[tp.Tuple[str, str, str]] = (
        ('fad', 'FAD', '.3f'), ('kld', 'KL', '.3f'), ('text_consistency', 'CLAP', '.3f'))
    show_seed: bool = False

    def __call__(self, launcher: tp.Any) -> None:
        # Before Dora queues anything on Slurm: Slurm reachable, partitions known, every XP's ranks able to
        # start (rr_audiocraft.slurm). Dry runs and grid_local never submit, so they are not checked.
        install_submission_check(launcher._shepherd)
        super().__call__(launcher)

    def stages(self) -> tp.List[str]:
        return ['train', 'valid', 'evaluate']

    def get_grid_metrics(self) -> tp.List[tp.Any]:
        setting = [tt.leaf('pool'), tt.leaf('CFG', '.2f'), tt.leaf('λ', 'g')]
        if self.show_seed:
            setting.insert(0, tt.leaf('solver'))
            setting.append(tt.leaf('seed'))
        return [
            tt.group('rr', setting, align='>'),
            tt.group('train', [tt.leaf('epoch'), tt.leaf('ce', '.4f'), tt.leaf('rr', '.4f')], align='>'),
            # valid rr: L_rr with captions nulled, measured for every row (λ = 0 too), unlike train rr.
            tt.group('valid', [tt.leaf('ce', '.4f'), tt.leaf('rr', '.4f')], align='>'),
            tt.group('eval', [tt.leaf(name, fmt) for _, name, fmt in self.eval_metrics], align='>'),
        ]

    def process_sheep(self, sheep: tp.Any, history: tp.List[dict]) -> dict:
        parts = super().process_sheep(sheep, history)  # per stage, the last epoch's values
        cfg = sheep.xp.cfg
        parts['rr'] = {'solver': cfg.solver, **rr_setting(cfg)}
        parts['train']['epoch'] = f"{len(history)}/{cfg.optim.epochs}"
        found: tp.Dict[str, float] = {}
        for epoch in history:
            for _stage, values in epoch.items():
                if not isinstance(values, dict):
                    continue
                for key, name, _ in self.eval_metrics:
                    value = values.get(key)
                    if isinstance(value, (int, float)) and not math.isnan(value):
                        found[name] = value
        parts['eval'] = found
        return parts


class RRJudgeExplorer(RRExplorer):
    """The tiny CPU grid: RR settings over seeds, with the synthetic benchmark's judge metrics
    (`rr_audiocraft.metrics.judge`: source F1, count and order accuracy, KL and Fréchet distance of
    the judge's outputs) when a stage of the XP's history holds them. The solver column tells the
    grid's own compression XP (if any) from the LMs."""
    eval_metrics = (('source_f1', 'source_f1', '.3f'), ('count_acc', 'count_acc', '.3f'),
                    ('order_acc', 'order_acc', '.3f'), ('kl', 'kl', '.3f'), ('fd', 'fd', '.2f'))
    show_seed = True

    def get_grid_meta(self) -> tp.List[tp.Any]:
        # The settings columns say what each XP is: Dora's name (the argv delta) would repeat the
        # data paths and shrinking overrides on every row.
        return [tt.leaf('index', align='>'), tt.leaf('state'), tt.leaf('sig', align='>')]
