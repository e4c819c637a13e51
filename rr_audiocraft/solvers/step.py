"""The state one RR training step's hooks hand each other, and the metrics it logs.

`RRSolverMixin.run_step` creates one `RRStep` before the stock step runs and drops it when it ends;
nothing else of RR lives from one hook to the next.

Every training step logs the same keys, in the same order (`RRStep.logged`), whether or not RR acted
on it: flashy averages a stage's metrics across ranks by position (`flashy.distrib.average_metrics`),
so a rank whose epoch never computed L_rr (no CFG drop, no two non-empty captions, an undefined
correlation) would all-reduce a different number of values and leave the others waiting. A value
that only some steps have is logged as a sum with its count (0 on the other steps), and the epoch
metric is their ratio (`finish_epoch_metrics`), taken after the cross-rank average: the mean over
every step of every rank that had the value.
"""
import dataclasses
import typing as tp

import torch

# Epoch metric -> the per-step count it is divided by. `rr_steps`: L_rr was computed (>= 2 pairs);
# `rr_corr_steps`: its correlation was defined; `rr_text_captions`: RR captions looked up in the cache.
RATIOS: tp.Dict[str, str] = {'rr': 'rr_steps', 'rr_corr': 'rr_corr_steps', 'rr_text_cached': 'rr_text_captions'}
# Counts only the ratio needs (`rr_steps` stays: the fraction of steps RR acted on).
HELPER_COUNTS = ('rr_corr_steps', 'rr_text_captions')


@dataclasses.dataclass
class RRStep:
    """What the hooks of one training step hand each other.

    Attributes:
        dropped (bool): CFG dropout removed this step's captions.
        text (torch.Tensor, optional): Pooled T of the original captions [B, Dt]; None: RR does not act.
        keep (torch.Tensor, optional): [B] bool, False for empty captions (left out of the pairs).
        token_valid (torch.Tensor, optional): [B, K, T] bool, real (non-padding) tokens.
        hidden (list of torch.Tensor): The LM heads' input, captured while `text` is set.
        pure_ce (torch.Tensor, optional): The cross-entropy alone, when λ·L_rr was added to it.
        loss_rr, corr (torch.Tensor, optional): L_rr (eq. 5) and the similarity correlation, when computed.
        cached, looked_up (int): Captions of T found in the caption cache, and looked up there.
    """
    dropped: bool = False
    text: tp.Optional[torch.Tensor] = None
    keep: tp.Optional[torch.Tensor] = None
    token_valid: tp.Optional[torch.Tensor] = None
    hidden: tp.List[torch.Tensor] = dataclasses.field(default_factory=list)
    pure_ce: tp.Optional[torch.Tensor] = None
    loss_rr: tp.Optional[torch.Tensor] = None
    corr: tp.Optional[torch.Tensor] = None
    cached: int = 0
    looked_up: int = 0

    @property
    def acts(self) -> bool:
        """RR computes L_rr on this step (T is ready)."""
        return self.text is not None

    def logged(self) -> tp.Dict[str, tp.Any]:
        """The step's RR metrics: the same keys in the same order on every step (see module docstring)."""
        zero = torch.zeros([])
        return {
            'cfg_dropped': float(self.dropped),
            'rr_steps': float(self.loss_rr is not None),
            'rr': zero if self.loss_rr is None else self.loss_rr,
            'rr_corr_steps': float(self.corr is not None),
            'rr_corr': zero if self.corr is None else self.corr,
            'rr_text_captions': float(self.looked_up),
            'rr_text_cached': float(self.cached),
        }


def finish_epoch_metrics(metrics: tp.Dict[str, tp.Any]) -> tp.Dict[str, tp.Any]:
    """Turn the epoch averages of sums and counts into ratios; drop a ratio with no count.

    `rr` is then L_rr averaged over the steps that computed it, `rr_corr` likewise, `rr_text_cached`
    the fraction of looked-up captions found in the cache.
    """
    out = dict(metrics)
    for value, count in RATIOS.items():
        if value not in out or count not in out:
            continue
        if out[count] > 0:
            out[value] = out[value] / out[count]
        else:
            del out[value]
    for count in HELPER_COUNTS:
        out.pop(count, None)
    return out
