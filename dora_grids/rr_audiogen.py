"""Table 3 of the paper (arXiv 2309.08773): text-to-sound with and without RR, on the sound recipe.

    dora -P rr_audiocraft grid rr_audiogen                    # Slurm, 16 GPUs per XP
    python -m rr_audiocraft.grid_local rr_audiogen            # no Slurm
"""
from audiocraft.environment import AudioCraftEnvironment

from ._explorers import RRExplorer


@RRExplorer
def explorer(launcher):
    launcher.slurm_(gpus=16, partition=AudioCraftEnvironment.get_slurm_partitions(['team', 'global']))
    launcher.bind_(solver='rr_audiogen/audiogen_300m')
    launcher({'rr.weight': 0.})  # baseline: stock AudioGen training (RR measured, not trained on)
    launcher({'rr.weight': 3.})  # RR: λ = 3, max pooling, CFG 0.1 (the recipe)
