"""Conditioning pieces RR needs on top of AudioCraft's: a CFG dropout that records its draw, the text
representation RR compares against (eq. 3), and a conditioner for local Hugging Face text encoders."""
from .cfg_dropout import RecordingCFGDropout
from .text import HFTextConditioner, text_representation

__all__ = ['RecordingCFGDropout', 'HFTextConditioner', 'text_representation']
