"""RRLMModel: AudioCraft's LMModel that can also hand out its last hidden states.

A_b of eq. 4 is the max-pool over time of the LM's last hidden states (after `out_norm`, before the K
output heads) for sample b, over valid positions only. The stock `forward` returns logits alone, so
`last_hidden_states` reads the heads' input with a forward pre-hook while the stock code runs
unchanged, and `hidden_state_mask` says which of those states predict a real target token. It adds no
parameter and no buffer: its state dict is an LMModel state dict, and whatever it trains loads in
stock `MusicGen/AudioGen.get_pretrained`.
"""
import contextlib
import typing as tp

import torch

from audiocraft.models.lm import LMModel

from ..modules.cfg_dropout import RecordingCFGDropout


class RRLMModel(LMModel):
    """LMModel whose last hidden states RR can read; its CFG dropout is a `RecordingCFGDropout`
    (same draws as stock)."""

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

    @contextlib.contextmanager
    def last_hidden_states(self, when: tp.Callable[[], bool] = lambda: True) -> tp.Iterator[tp.List[torch.Tensor]]:
        """Collect the heads' input [B, S', D] of every forward run inside, while `when()` is true.

        S' counts a 'prepend' fuser's condition prefix too; `hidden_state_mask` gives S, the last S
        states are the sequence's. Nothing is kept (nor computed) while `when()` is false.
        """
        captured: tp.List[torch.Tensor] = []
        handle = self.linears[0].register_forward_pre_hook(
            lambda _module, args: captured.append(args[0]) if when() else None)
        try:
            yield captured
        finally:
            handle.remove()

    def hidden_state_mask(self, token_valid: torch.Tensor) -> torch.Tensor:
        """Which last hidden states predict at least one real target (valid positions of eq. 4).

        Hidden states are in pattern (delay-interleaved) time with the stock `keep_only_valid_steps`;
        the output at pattern step s predicts the codes placed at step s + 1 (the pattern starts with an
        all-special step), so a state is valid iff step s + 1 holds a valid target.

        Args:
            token_valid (torch.Tensor): [B, K, T] bool, True for real (non-padding) tokens.
        Returns:
            torch.Tensor: [B, S] bool.
        """
        B, K, T = token_valid.shape
        pattern = self.pattern_provider.get_pattern(T)
        valid_seq, _, _ = pattern.build_pattern_sequence(token_valid.long().contiguous(), 0, keep_only_valid_steps=True)
        step_has_target = valid_seq.bool().any(dim=1)  # [B, S]
        mask = torch.zeros_like(step_has_target)
        mask[:, :-1] = step_has_target[:, 1:]
        return mask
