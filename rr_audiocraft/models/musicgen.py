"""RRMusicGen: stock MusicGen that also loads what RR trains (Dora XPs, exported folders, `hf` text encoders)."""
import typing as tp

import torch

from audiocraft.models.musicgen import _HF_MODEL_CHECKPOINTS_MAP, MusicGen

from .genmodel import RRGenModelMixin
from .lm import RRLMModel


class RRMusicGen(RRGenModelMixin, MusicGen):
    """MusicGen (text to music) with RR loading; the generation API is stock (`set_generation_params`,
    `generate`, `generate_continuation`, `generate_with_chroma`, ...), with inputs checked up front.

    Its `lm` is an `RRLMModel`: the stock LM plus optional hidden-state capture, same weights. Unlike
    stock MusicGen, a model trained on segments of at most 18 s can be built: the default
    `extend_stride` (18 s) is then halved to fit (see `set_generation_params`).
    """
    STOCK_CLASS = MusicGen
    ALIASES = dict(_HF_MODEL_CHECKPOINTS_MAP)  # 'small' -> 'facebook/musicgen-small', ...

    @staticmethod
    def get_pretrained(name: str = 'facebook/musicgen-melody',
                       device: tp.Optional[tp.Union[str, torch.device]] = None) -> 'RRMusicGen':
        """Load a MusicGen model.

        Args:
            name (str): One of
                - `debug`: AudioCraft's tiny random model (32 kHz), built offline;
                - `//sig/SIG`: the best state (EMA weights when the XP used EMA) of a Dora XP in
                  `$AUDIOCRAFT_DORA_DIR/xps/SIG`, with the compression model it was trained on;
                - a folder written by `python -m rr_audiocraft.export` (or stock `audiocraft.utils.export`),
                  an XP folder, or a checkpoint file;
                - a Hugging Face repo id such as `facebook/musicgen-small`, or a stock alias (`small`,
                  `medium`, `large`, `melody`).
            device (str, optional): Defaults to CUDA when available, else CPU.
        Raises:
            rr_audiocraft.models.loaders.ModelNotFoundError: the name matches nothing (the message lists
                what was tried).
            ValueError: the checkpoint is refused (see `rr_audiocraft.checkpoint`) or inconsistent.
        """
        return RRMusicGen._load_pretrained(name, device)

    @classmethod
    def _check_lm(cls, name: str, lm: RRLMModel) -> None:
        conditioners = lm.condition_provider.conditioners
        if 'self_wav' in conditioners:
            # As stock MusicGen.get_pretrained sets them for inference with a melody.
            melody = conditioners['self_wav']
            melody.match_len_on_eval = True
            melody._use_masking = False
