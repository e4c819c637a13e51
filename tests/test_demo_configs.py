"""The demo's LMs as solver configs (`config/solver/rr_audiogen/{demo,reproduce,reproduce_gpu}.yaml`): every XP the
demo schedules composes to the config it composed when the presets were Python lists of overrides.

The old lists are copied here as literal data (what `rr_audiocraft/demo.py` held before the configs): the same
config means the same training, hence the same table for the same seeds.
"""
import typing as tp

import pytest
from omegaconf import OmegaConf

from conftest import REPO_ROOT

OLD_TOP_K = 16  # demo.TOP_K: the demo sampled every test caption with it; now the configs' generate.lm.top_k
OLD_LM_COMMON = ['dataset.batch_size=16', 'optim.updates_per_epoch=30', 'dataset.train.num_samples=480',
                 'optim.lr=2e-3', 'dataset.generate.num_samples=1', 'dataset.generate.batch_size=1',
                 'generate.lm.gen_duration=1', 'rr.encoder_cache_mb=256']
OLD_PRESETS = {  # solver=rr_audiogen/tiny plus these, per preset (demo.PRESETS[...]['lm'])
    'rr_audiogen/demo': ['optim.epochs=8'] + OLD_LM_COMMON,
    'rr_audiogen/reproduce': ['optim.epochs=28', 'transformer_lm.dim=96', 'transformer_lm.num_layers=3']
                             + OLD_LM_COMMON,
    'rr_audiogen/reproduce_gpu': ['optim.epochs=56', 'transformer_lm.dim=256', 'transformer_lm.num_heads=8',
                                  'transformer_lm.num_layers=6', 'optim.lr=1e-3']
                                 + [o for o in OLD_LM_COMMON if not o.startswith('optim.lr=')],
}
# Keys that differ by construction: where the token cache lives (its folder is keyed by the solver config) and
# the sampling top-k, which the demo passed at generation time and the configs now hold (checked below).
MOVED = {'cache.path', 'generate.lm.top_k'}


def flat(config: tp.Any, prefix: str = '') -> tp.Dict[str, tp.Any]:
    items: tp.Dict[str, tp.Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            items.update(flat(value, f'{prefix}{key}.'))
        else:
            items[prefix + key] = value
    return items


def scheduled(grid: tp.Any) -> tp.List[tp.Any]:
    """The XPs the grid's explorers schedule (cache writers, then LMs), as `grid_local` registers them."""
    from dora.explore import Herd, Launcher
    from dora.shep import Shepherd
    from rr_audiocraft.train import main
    xps = []
    for explorer in (grid.cache_explorer(), grid.explorer()):
        herd = Herd()
        explorer(Launcher(Shepherd(main), main.get_slurm_config(), herd))
        xps += [sheep.xp for sheep in herd.sheeps.values()]
    return xps


@pytest.mark.parametrize('solver', sorted(OLD_PRESETS))
def test_each_xp_of_the_demo_composes_as_it_did_from_the_python_presets(tiny_data, solver):
    from dora_grids.rr_ablation_tiny import TinyGrid
    from rr_audiocraft.assets import asset_reference
    from rr_audiocraft.table1 import TABLE1
    rows = TABLE1[4:6] + TABLE1[-1:]  # no RR at two CFG ratios and average pooling: every kind of row override
    common = dict(data=tiny_data, compression=asset_reference(), seeds=(0, 1), rows=rows, token_cache=True,
                  cache_epochs=2)
    old = scheduled(TinyGrid(solver='rr_audiogen/tiny', overrides=[*OLD_PRESETS[solver], 'device=cpu'], **common))
    new = scheduled(TinyGrid(solver=solver, overrides=['device=cpu'], **common))
    assert len(old) == len(new) == 2 + 2 * len(rows)
    for before, after in zip(old, new, strict=True):
        before_cfg = flat(OmegaConf.to_container(before.cfg, resolve=True))
        after_cfg = flat(OmegaConf.to_container(after.cfg, resolve=True))
        differ = {key for key in before_cfg.keys() | after_cfg.keys() if before_cfg.get(key) != after_cfg.get(key)}
        assert differ <= MOVED, {key: (before_cfg.get(key), after_cfg.get(key)) for key in differ - MOVED}
        assert after_cfg['generate.lm.top_k'] == OLD_TOP_K
    # The cache writers and readers of one grid still share one cache.
    assert len({xp.cfg.cache.path for xp in new}) == 1 and new[0].cfg.cache.path != old[0].cfg.cache.path


def test_dora_run_solver_demo_is_one_lm_of_the_demos_table():
    """`dora run solver=rr_audiogen/demo` composes the demo's LM (with the shipped codec, sha256-checked)."""
    from rr_audiocraft.assets import asset_reference
    from rr_audiocraft.train import main
    cfg = main.get_xp(['solver=rr_audiogen/demo']).cfg
    assert cfg.solver == 'rr_audiogen' and cfg.compression_model_checkpoint == asset_reference()
    steps = cfg.optim.epochs * cfg.optim.updates_per_epoch
    assert (cfg.transformer_lm.dim, cfg.dataset.batch_size, steps) == (64, 16, 240)
    for name in OLD_PRESETS:  # every key of the configs is commented with its reason
        path = REPO_ROOT / 'config' / 'solver' / f'{name}.yaml'
        for line in path.read_text().splitlines():
            if ':' in line and not line.lstrip().startswith(('#', '-')) and line.split(':', 1)[1].strip():
                assert '#' in line, f"{path.name}: uncommented key {line.strip()!r}"
