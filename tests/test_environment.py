"""`rr_audiocraft.environment`: the process set-up the entry points run, and the XP folder override."""
import logging
import os

from omegaconf import OmegaConf

from conftest import SESSION_DIR


def test_configure_is_idempotent_and_keeps_what_the_environment_says():
    from rr_audiocraft.environment import configure, dora_dir
    configure()
    configure()
    assert dora_dir() == SESSION_DIR / 'dora'  # the session's folder (conftest) wins over the default
    assert OmegaConf.has_resolver('rr_asset') and os.environ.get('USER')
    filters = logging.getLogger('xformers').filters
    assert len([f for f in filters if getattr(f, '__name__', '') == '_drop_xformers_cpu_warning']) == 1


def test_override_dora_dir_moves_the_xps_of_a_block_and_puts_everything_back(tmp_path):
    """Inside the block the environment and the Dora main agree on the new folder (what `bench` needs for its
    throwaway XPs); after it, both are back, also when the block raised."""
    from rr_audiocraft.environment import dora_dir, override_dora_dir
    from rr_audiocraft.models.loaders import dora_xps_dir
    from rr_audiocraft.train import main
    overrides = ['solver=rr_audiogen/tiny']
    before = main.get_xp(overrides).folder
    assert before.is_relative_to(SESSION_DIR)
    try:
        with override_dora_dir(tmp_path / 'dora'):
            assert main.get_xp(overrides).folder == tmp_path / 'dora' / 'xps' / before.name
            assert dora_xps_dir() == tmp_path / 'dora' / 'xps' and dora_dir() == tmp_path / 'dora'
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert main.get_xp(overrides).folder == before and dora_dir() == SESSION_DIR / 'dora'
    assert os.environ['AUDIOCRAFT_DORA_DIR'] == str(SESSION_DIR / 'dora')
