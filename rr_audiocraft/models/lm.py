"""RRLMModel: AudioCraft's LMModel that also exposes its last hidden states.

A_b of eq. 4 is the max-pool over time of the LM's last hidden states (after `out_norm`, before the K
output heads) for sample b, over valid positions only. The stock `forward` returns logits alone, so
this subclass reads the heads' input with a forward pre-hook while the stock code runs unchanged. It
adds no parameter and no buffer: its state dict is an LMModel state dict, and whatever it trains loads
in stock `MusicGen/AudioGen.get_pretrained`.
"""
import typing as tp
from dataclasses import dataclass

import torch

from audiocraft.models.lm import ConditionTensors, LMModel, LMOutput
from audiocraft.modules.conditioners import ConditioningAttributes

from ..modules.cfg_dropout import RecordingCFGDropout


@dataclass
class HiddenStates:
    """Last hidden states of one `compute_predictions` call, in pattern (delay-interleaved) time.

    Attributes:
        states (torch.Tensor): [B, S, D], after `out_norm`, before the output heads.
        mask (torch.Tensor): [B, S] bool; True where the state predicts at least one valid
            (non-special, non-padding) target token.
    """
    states: torch.Tensor
    mask: torch.Tensor


class RRLMModel(LMModel):
    """LMModel whose `compute_predictions` can record the last hidden states for RR.

    Set `capture_hidden = True` and the next `compute_predictions` call stores a `HiddenStates` in
    `last_hidden`; with it False (the default, e.g. at generation) nothing extra is computed. The
    classifier-free guidance dropout is a `RecordingCFGDropout` (same draws as stock).
    """
    capture_hidden: bool = False
    last_hidden: tp.Optional[HiddenStates] = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cfg_dropout = RecordingCFGDropout.from_stock(self.cfg_dropout)

    @classmethod
    def from_lm(cls, lm: LMModel) -> 'RRLMModel':
        """Turn a built stock LMModel into an RRLMModel in place.

        Building through AudioCraft's own `get_lm_model` and converting keeps parameter
        initialisation identical to stock (same modules, same RNG draws), which is what makes
        `rr.weight=0` train exactly like the stock solver.
        """
        if type(lm) is not LMModel:
            raise TypeError(f"RRLMModel.from_lm expects a plain LMModel, got {type(lm).__name__}")
        lm.__class__ = cls
        lm.cfg_dropout = RecordingCFGDropout.from_stock(lm.cfg_dropout)
        return tp.cast(RRLMModel, lm)

    def compute_predictions(self, codes: torch.Tensor, conditions: tp.List[ConditioningAttributes],
                            condition_tensors: tp.Optional[ConditionTensors] = None, stage: int = -1,
                            keep_only_valid_steps: bool = True) -> LMOutput:
        """Stock `compute_predictions`; also fills `last_hidden` when `capture_hidden` is set."""
        if not self.capture_hidden:
            return super().compute_predictions(codes, conditions, condition_tensors, stage,
                                               keep_only_valid_steps)
        captured: tp.List[torch.Tensor] = []
        handle = self.linears[0].register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            output = super().compute_predictions(codes, conditions, condition_tensors, stage,
                                                 keep_only_valid_steps)
        finally:
            handle.remove()
        B, K, T = codes.shape
        pattern = self.pattern_provider.get_pattern(T)
        # Which tokens are real targets: padding and masked tokens carry the special id.
        token_valid = (codes != self.special_token_id).long().contiguous()
        valid_seq, _, _ = pattern.build_pattern_sequence(token_valid, 0, keep_only_valid_steps)
        S = valid_seq.shape[-1]
        # The output at pattern step s predicts the codes placed at step s + 1 (the pattern starts
        # with an all-special step), so a state is valid iff step s + 1 holds a valid target.
        step_has_target = valid_seq.bool().any(dim=1)  # [B, S]
        mask = torch.zeros_like(step_has_target)
        mask[:, :-1] = step_has_target[:, 1:]
        states = captured[-1][:, -S:]  # drop a 'prepend' fuser's condition prefix, if any
        self.last_hidden = HiddenStates(states=states, mask=mask)
        return output
