"""Build an RRLMModel from an AudioCraft config, local text encoders included.

AudioCraft's `get_conditioner_provider` only knows its own conditioner types. Conditioners of the types
in `RR_CONDITIONERS` are taken out of the config, the rest is built by the stock `get_lm_model`
(unchanged initialisation), then ours are added to the provider and the LM becomes an RRLMModel.
"""
import typing as tp

import omegaconf

from audiocraft.models import builders as stock_builders
from audiocraft.utils.utils import dict_from_config

from ..modules.text import HFTextConditioner
from .lm import RRLMModel

# Bound at import: the RR solvers swap `builders.get_lm_model` for `get_rr_lm_model` while the stock
# `build_model` runs, and this must keep pointing at the stock function.
_stock_get_lm_model = stock_builders.get_lm_model

# `conditioners.NAME.model` values handled here, with the class each one builds.
RR_CONDITIONERS: tp.Dict[str, type] = {'hf': HFTextConditioner}


def get_rr_lm_model(cfg: omegaconf.DictConfig) -> RRLMModel:
    """Instantiate the transformer LM of `cfg` as an RRLMModel."""
    conditioners = dict_from_config(cfg.conditioners) if cfg.get('conditioners') else {}
    ours = {name: c for name, c in conditioners.items()
            if isinstance(c, dict) and c.get('model') in RR_CONDITIONERS}
    stock_cfg = cfg
    if ours:
        stock_cfg = omegaconf.OmegaConf.create(omegaconf.OmegaConf.to_container(cfg, resolve=True))
        for name in ours:
            del stock_cfg.conditioners[name]
    lm = _stock_get_lm_model(stock_cfg)
    for name, cond_cfg in ours.items():
        model_type = cond_cfg['model']
        conditioner = RR_CONDITIONERS[model_type](output_dim=cfg.transformer_lm.dim, device=cfg.device,
                                                  **cond_cfg.get(model_type, {}))
        lm.condition_provider.conditioners[name] = conditioner.to(cfg.device)
    return RRLMModel.from_lm(lm)
