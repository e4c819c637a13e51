"""What RRAudioGen and RRMusicGen add to the stock generation classes: RR loading and clear input errors.

The stock classes guard their inputs with `assert` (or not at all: a duration of 0 generates an empty
tensor). The mixin checks the same things first and raises a `ValueError` that says what was wrong and
what is allowed; the generation itself is the stock code, unchanged.
"""
import contextlib
import inspect
import logging
import math
import typing as tp

import torch

from audiocraft.models.encodec import CompressionModel

from .lm import RRLMModel
from .loaders import DEBUG_NAME, default_device, load_models

logger = logging.getLogger(__name__)
GenModelT = tp.TypeVar('GenModelT', bound='RRGenModelMixin')
SPACY_ENGLISH = 'en_core_web_sm'


@contextlib.contextmanager
def offline_spacy_english() -> tp.Iterator[None]:
    """While active, `spacy.load('en_core_web_sm')` works offline even when that package is missing.

    The stock debug models' LUT conditioner tokenizes with `WhiteSpaceTokenizer`, which loads spaCy's
    `en_core_web_sm` (not on PyPI) and otherwise tries to download it. Without the package, spaCy's
    blank English pipeline stands in: the same tokenizer rules and stop words, and lemmas from the
    lookup tables of `spacy-lookups-data` instead of the trained pipeline's.
    """
    import spacy
    if spacy.util.is_package(SPACY_ENGLISH):
        yield
        return
    stock_load = spacy.load

    def load(name, *args, **kwargs):
        if name != SPACY_ENGLISH:
            return stock_load(name, *args, **kwargs)
        logger.warning("spaCy %s is not installed: using spaCy's blank English pipeline with lookup "
                       "lemmas instead", SPACY_ENGLISH)
        nlp = spacy.blank('en')
        nlp.add_pipe('lemmatizer', config={'mode': 'lookup'})
        nlp.initialize()
        return nlp

    spacy.load = load
    try:
        yield
    finally:
        spacy.load = stock_load


class RRGenModelMixin:
    """Mixed in before a stock `BaseGenModel` subclass (AudioGen, MusicGen).

    Class attributes set by the subclass:
        STOCK_CLASS: The stock class (its `get_pretrained('debug')` builds the offline debug model).
        ALIASES: Short names mapped to Hugging Face repo ids.
    """
    STOCK_CLASS: tp.ClassVar[type]
    ALIASES: tp.ClassVar[tp.Dict[str, str]] = {}

    # Set by BaseGenModel.__init__; declared for type checkers.
    max_duration: float
    duration: float
    sample_rate: int
    lm: RRLMModel

    @classmethod
    def _load_pretrained(cls: tp.Type[GenModelT], name: str,
                         device: tp.Optional[tp.Union[str, torch.device]] = None) -> GenModelT:
        device = default_device(device)
        if name == DEBUG_NAME:
            # The stock debug model (random weights, offline), with its LM as an RRLMModel.
            with offline_spacy_english():
                stock = cls.STOCK_CLASS.get_pretrained(DEBUG_NAME, device=device)  # type: ignore
            return cls(DEBUG_NAME, stock.compression_model, RRLMModel.from_lm(stock.lm),  # type: ignore
                       max_duration=stock.max_duration)
        compression_model, lm = load_models(name, device, cls.ALIASES)
        return cls.from_models(name, compression_model, lm)

    @classmethod
    def from_models(cls: tp.Type[GenModelT], name: str, compression_model: CompressionModel,
                    lm: RRLMModel) -> GenModelT:
        """Wrap loaded models (see `loaders.load_models`); `lm.cfg` gives the maximum duration."""
        cls._check_lm(name, lm)
        return cls(name, compression_model, lm)  # type: ignore

    @classmethod
    def _check_lm(cls, name: str, lm: RRLMModel) -> None:
        """Per-class checks and adjustments of a loaded LM (none by default)."""

    def _stock_default(self, parameter: str) -> tp.Any:
        """Default of a parameter of the stock class's `set_generation_params` (e.g. duration)."""
        signature = inspect.signature(self.STOCK_CLASS.set_generation_params)  # type: ignore
        return signature.parameters[parameter].default

    def set_generation_params(self, use_sampling: bool = True, top_k: int = 250, top_p: float = 0.0,
                              temperature: float = 1.0, duration: tp.Optional[float] = None,
                              cfg_coef: float = 3.0, two_step_cfg: bool = False,
                              extend_stride: tp.Optional[float] = None) -> None:
        """Stock `set_generation_params`, with checked values.

        Args:
            use_sampling (bool): Sample (True) or take the argmax (False).
            top_k (int): Sample among the k most likely tokens (0: no top-k).
            top_p (float): Sample in the smallest set of tokens of probability >= p; 0 uses top_k instead.
            temperature (float): Softmax temperature (> 0).
            duration (float, optional): Seconds of audio to generate (> 0); None: the stock default.
            cfg_coef (float): Classifier-free guidance coefficient γ.
            two_step_cfg (bool): Run the conditional and unconditional passes separately.
            extend_stride (float, optional): Seconds the window moves when `duration` is longer than
                the model's `max_duration` (0 < stride < max_duration). None: the stock default when
                it is below `max_duration` (AudioGen 2 s, MusicGen 18 s), else half of `max_duration`;
                stock MusicGen cannot even be built when `max_duration` <= 18 s.
        """
        if duration is None:
            duration = self._stock_default('duration')
        if extend_stride is None:
            stock_stride = self._stock_default('extend_stride')
            extend_stride = stock_stride if stock_stride < self.max_duration else self.max_duration / 2
        _check_number('duration', duration, minimum=0., unit=' seconds')
        _check_number('extend_stride', extend_stride, minimum=0., unit=' seconds')
        if extend_stride >= self.max_duration:
            raise ValueError(f"extend_stride={extend_stride} must be shorter than the model's max_duration="
                             f"{self.max_duration} seconds")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"top_k={top_k!r} must be an integer >= 0 (0 turns top-k off)")
        if not isinstance(top_p, (int, float)) or not 0 <= top_p <= 1:
            raise ValueError(f"top_p={top_p!r} must be in [0, 1] (0 turns top-p off)")
        _check_number('temperature', temperature, minimum=0.)
        if not isinstance(cfg_coef, (int, float)) or not math.isfinite(cfg_coef):
            raise ValueError(f"cfg_coef={cfg_coef!r} must be a finite number")
        super().set_generation_params(  # type: ignore
            use_sampling=use_sampling, top_k=top_k, top_p=top_p, temperature=temperature, duration=duration,
            cfg_coef=cfg_coef, two_step_cfg=two_step_cfg, extend_stride=extend_stride)

    def generate(self, descriptions: tp.List[tp.Optional[str]], progress: bool = False,
                 return_tokens: bool = False):
        """Stock `generate`: one sample per description (None or '' for no text condition).

        Returns:
            torch.Tensor: audio [B, C, T] at `sample_rate`, and with `return_tokens` also the tokens
            [B, K, frames].
        """
        _check_descriptions(descriptions)
        return super().generate(list(descriptions), progress=progress, return_tokens=return_tokens)  # type: ignore

    def generate_unconditional(self, num_samples: int, progress: bool = False, return_tokens: bool = False):
        """Stock `generate_unconditional`, with `num_samples` >= 1 checked."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples={num_samples!r} must be an integer >= 1")
        return super().generate_unconditional(num_samples, progress=progress,  # type: ignore
                                              return_tokens=return_tokens)

    def generate_continuation(self, prompt: torch.Tensor, prompt_sample_rate: int,
                              descriptions: tp.Optional[tp.List[tp.Optional[str]]] = None,
                              progress: bool = False, return_tokens: bool = False):
        """Stock `generate_continuation`: continue `prompt` (resampled to the model's rate) up to `duration`.

        Args:
            prompt (torch.Tensor): [B, C, T] or [C, T] waveforms at `prompt_sample_rate`.
            prompt_sample_rate (int): Sample rate of `prompt` in Hz; it is resampled to `sample_rate`.
            descriptions (list of str, optional): B captions, or None for no text condition.
        Returns:
            torch.Tensor: audio [B, C, T'] at `sample_rate`, prompt included (and tokens if asked).
        """
        if not isinstance(prompt, torch.Tensor) or prompt.dim() not in (2, 3):
            shape = tuple(prompt.shape) if isinstance(prompt, torch.Tensor) else type(prompt).__name__
            raise ValueError(f"prompt must be a tensor [B, C, T] or [C, T], got {shape}")
        if isinstance(prompt_sample_rate, bool) or not isinstance(prompt_sample_rate, int) \
                or prompt_sample_rate <= 0:
            raise ValueError(f"prompt_sample_rate={prompt_sample_rate!r} must be a positive integer (Hz)")
        if prompt.shape[-1] == 0:
            raise ValueError("prompt is empty (0 samples)")
        if not torch.isfinite(prompt).all():
            raise ValueError("prompt holds NaN or infinite samples")
        batch = 1 if prompt.dim() == 2 else prompt.shape[0]
        if descriptions is not None:
            _check_descriptions(descriptions)
            if len(descriptions) != batch:
                raise ValueError(f"{len(descriptions)} descriptions for {batch} prompts: give one each")
        prompt_seconds = prompt.shape[-1] / prompt_sample_rate
        limit = min(self.duration, self.max_duration)
        if prompt_seconds >= self.duration or prompt_seconds > self.max_duration:
            raise ValueError(f"prompt lasts {prompt_seconds:.2f} s but must be shorter than the generation "
                             f"duration ({self.duration} s) and at most the model's max_duration "
                             f"({self.max_duration} s): at most {limit} s here")
        return super().generate_continuation(  # type: ignore
            prompt, prompt_sample_rate, descriptions=descriptions, progress=progress, return_tokens=return_tokens)


def _check_number(name: str, value: tp.Any, minimum: float, unit: str = '') -> None:
    """`value` must be a finite number > minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= minimum:
        raise ValueError(f"{name} must be > {minimum:g}{unit}, got {value!r}")


def _check_descriptions(descriptions: tp.Any) -> None:
    """A non-empty list of captions (str, or None for no caption)."""
    if isinstance(descriptions, str):
        raise ValueError("descriptions must be a list of captions, not a single string: "
                         f"use [{descriptions!r}]")
    if not isinstance(descriptions, (list, tuple)) or len(descriptions) == 0:
        raise ValueError("descriptions is empty: give at least one caption (None or '' for no text condition)")
    wrong = [d for d in descriptions if d is not None and not isinstance(d, str)]
    if wrong:
        raise ValueError(f"captions must be strings or None, got {type(wrong[0]).__name__}")
