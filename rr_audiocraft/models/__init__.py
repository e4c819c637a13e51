"""Models: the RR language model, its builders, and generation models that load what RR trains."""
from .lm import RRLMModel
from .builders import get_rr_lm_model
from .loaders import ModelNotFoundError
from .audiogen import RRAudioGen
from .musicgen import RRMusicGen

__all__ = ['RRLMModel', 'get_rr_lm_model', 'ModelNotFoundError', 'RRAudioGen', 'RRMusicGen']
