"""Table 1 of the paper (arXiv 2309.08773): the RR ablation on the sound recipe, nine XPs.

    dora -P rr_audiocraft grid rr_ablation                    # Slurm, 16 GPUs per XP
    dora -P rr_audiocraft grid rr_ablation --dry_run --init   # list and register the XPs only
    python -m rr_audiocraft.grid_local rr_ablation            # no Slurm: one XP after the other

Rows are `rr_audiocraft.table1.TABLE1` in the paper's order; no RR (λ = 0) leaves the pooling at the
recipe's value (RR is then only measured, not trained on).
"""
from audiocraft.environment import AudioCraftEnvironment
from rr_audiocraft.table1 import TABLE1

from ._explorers import RRExplorer

SOLVER = 'rr_audiogen/audiogen_300m'
GPUS = 16  # 2 nodes x 8 GPUs; the recipe's global batch 192 -> 12 per GPU


@RRExplorer
def explorer(launcher):
    launcher.slurm_(gpus=GPUS, partition=AudioCraftEnvironment.get_slurm_partitions(['team', 'global']))
    launcher.bind_(solver=SOLVER)
    for row in TABLE1:
        launcher(row.overrides())
