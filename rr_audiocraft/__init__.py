"""rr-audiocraft: representation similarity regularisation (arXiv 2309.08773) for AudioCraft LMs."""
import getpass
import logging
import os
from pathlib import Path

__version__ = '0.1.0'

REPO_ROOT = Path(__file__).resolve().parents[1]

# Stock AudioCraft reads these when its train module is imported and when it resolves `//sig/SIG`:
# XPs live in the checkout unless AUDIOCRAFT_DORA_DIR says otherwise, and no login name is required.
# Set here, before any AudioCraft import of ours, so every entry point agrees on them.
os.environ.setdefault('AUDIOCRAFT_DORA_DIR', str(REPO_ROOT / 'outputs'))
os.environ.setdefault('AUDIOCRAFT_TEAM', 'default')
# Stock reads a team's cluster settings (Slurm partitions, dora_dir) from its own config/teams/TEAM.yaml, or from
# AUDIOCRAFT_CONFIG. Teams this project adds (config/teams/, e.g. `local` for `make slurm-up`) are found the same way.
_TEAM_CONFIG = REPO_ROOT / 'config' / 'teams' / f"{os.environ['AUDIOCRAFT_TEAM']}.yaml"
if _TEAM_CONFIG.is_file():
    os.environ.setdefault('AUDIOCRAFT_CONFIG', str(_TEAM_CONFIG))
if not os.environ.get('USER'):
    try:
        os.environ['USER'] = getpass.getuser()
    except (KeyError, OSError):
        os.environ['USER'] = 'rr'


def _drop_xformers_cpu_warning(record: logging.LogRecord) -> bool:
    """xformers logs 'can't load C++/CUDA extensions ... Please reinstall xformers' when imported with a
    torch it was not built for. AudioCraft imports it at module level, and with no GPU its kernels are
    never called (`efficient_attention_backend: torch`), so on CPU-only machines the advice can only
    mislead; with a GPU it is kept."""
    if not str(record.msg).startswith('WARNING[XFORMERS]'):
        return True
    import torch  # already imported: xformers imports it before it logs
    return torch.cuda.is_available()


logging.getLogger('xformers').addFilter(_drop_xformers_cpu_warning)


def _register_config_resolvers() -> None:
    from omegaconf import OmegaConf
    if not OmegaConf.has_resolver('rr_asset'):
        from .codec import asset_reference
        # `${rr_asset:NAME}`: a shipped model artefact under assets/, e.g. the tiny configs' codec.
        OmegaConf.register_new_resolver('rr_asset', asset_reference)
    if not OmegaConf.has_resolver('rr_finetune_codec'):
        from .settings import finetune_compression_reference
        # `${rr_finetune_codec:SOURCE,HUB}`: the fine-tuning recipes' compression model (local folder or hub name).
        OmegaConf.register_new_resolver('rr_finetune_codec', finetune_compression_reference)


_register_config_resolvers()
