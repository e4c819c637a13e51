"""Table 1 of the paper (arXiv 2309.08773): the RR ablation on the sound recipe, nine XPs.

    dora -P rr_audiocraft grid rr_ablation                    # Slurm, 16 GPUs per XP
    dora -P rr_audiocraft grid rr_ablation --dry_run --init   # list and register the XPs only
    python -m rr_audiocraft.grid_local rr_ablation            # no Slurm: one XP after the other

Rows are (pooling, CFG dropout ratio, λ) in the paper's order; '–' (None) is no RR (λ = 0), where the
pooling is irrelevant and left at the recipe's value (RR is then only measured, not trained on).
"""
import typing as tp

from audiocraft.environment import AudioCraftEnvironment

from ._explorers import RRExplorer

SOLVER = 'rr_audiogen/audiogen_300m'
GPUS = 16  # 2 nodes x 8 GPUs; the recipe's global batch 192 -> 12 per GPU

# (pooling, CFG ratio, λ) of Table 1, top to bottom.
TABLE1: tp.List[tp.Tuple[tp.Optional[str], float, float]] = [
    ('max', 0.1, 3.), ('max', 0.1, 4.), ('max', 0.1, 2.), ('max', 0.1, 1.),
    (None, 0.2, 0.), (None, 0.1, 0.), (None, 0.0, 0.),
    ('max', 0.2, 3.), ('average', 0.1, 3.),
]


def row(pooling: tp.Optional[str], cfg_ratio: float, weight: float) -> tp.Dict[str, tp.Any]:
    """Overrides of one Table 1 row."""
    overrides: tp.Dict[str, tp.Any] = {'classifier_free_guidance.training_dropout': cfg_ratio, 'rr.weight': weight}
    if pooling is not None:
        overrides['rr.pooling'] = pooling
    return overrides


@RRExplorer
def explorer(launcher):
    launcher.slurm_(gpus=GPUS, partition=AudioCraftEnvironment.get_slurm_partitions(['team', 'global']))
    launcher.bind_(solver=SOLVER)
    for setting in TABLE1:
        launcher(row(*setting))
