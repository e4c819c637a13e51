"""Models: the RR language model and its builders."""
from .lm import HiddenStates, RRLMModel
from .builders import get_rr_lm_model

__all__ = ['HiddenStates', 'RRLMModel', 'get_rr_lm_model']
