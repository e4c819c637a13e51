"""Metrics of rr-audiocraft: the generator-independent judge of the synthetic benchmark
(`rr_audiocraft.metrics.judge`) and paired statistics of its outcomes (`rr_audiocraft.metrics.paired`)."""
import typing as tp

_JUDGE_EXPORTS = ('Judge', 'JudgeConfig', 'frechet_distance', 'kl_divergence', 'score_predictions')

__all__ = list(_JUDGE_EXPORTS)


def __getattr__(name: str) -> tp.Any:
    # Lazy, so that importing the package does not import torch and torchaudio.
    if name in _JUDGE_EXPORTS:
        from . import judge
        return getattr(judge, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
