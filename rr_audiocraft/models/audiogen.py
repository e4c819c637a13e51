"""RRAudioGen: stock AudioGen that also loads what RR trains (Dora XPs, exported folders, `hf` text encoders)."""
import typing as tp

import torch

from audiocraft.models.audiogen import AudioGen

from .genmodel import RRGenModelMixin
from .lm import RRLMModel


class RRAudioGen(RRGenModelMixin, AudioGen):
    """AudioGen (text to sound) with RR loading; the generation API is stock (`set_generation_params`,
    `generate`, `generate_continuation`, `generate_unconditional`), with inputs checked up front.

    Its `lm` is an `RRLMModel`: the stock LM plus optional hidden-state capture, same weights.
    """
    STOCK_CLASS = AudioGen

    @staticmethod
    def get_pretrained(name: str = 'facebook/audiogen-medium',
                       device: tp.Optional[tp.Union[str, torch.device]] = None) -> 'RRAudioGen':
        """Load an AudioGen model.

        Args:
            name (str): One of
                - `debug`: AudioCraft's tiny random model (16 kHz), built offline;
                - `//sig/SIG`: the best state (EMA weights when the XP used EMA) of a Dora XP in
                  `$AUDIOCRAFT_DORA_DIR/xps/SIG`, with the compression model it was trained on;
                - a folder written by `python -m rr_audiocraft.export` (or stock `audiocraft.utils.export`),
                  an XP folder, or a checkpoint file;
                - a Hugging Face repo id such as `facebook/audiogen-medium` (downloaded or cached).
            device (str, optional): Defaults to CUDA when available, else CPU.
        Raises:
            rr_audiocraft.models.loaders.ModelNotFoundError: the name matches nothing (the message lists
                what was tried).
            ValueError: the checkpoint is refused (see `rr_audiocraft.checkpoint`) or inconsistent.
        """
        return RRAudioGen._load_pretrained(name, device)

    @classmethod
    def _check_lm(cls, name: str, lm: RRLMModel) -> None:
        if 'self_wav' in lm.condition_provider.conditioners:
            raise ValueError(f"{name}: the model is conditioned on a waveform (self_wav), which AudioGen does not "
                             "support; load it with RRMusicGen")
