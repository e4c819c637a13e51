"""Classifier-free guidance dropout that remembers what it did.

Stock AudioCraft draws the CFG dropout once per batch inside the solver's
`_prepare_tokens_and_attributes`; by the time the loss is computed the captions are already nulled.
RR needs both the draw (RR applies on dropped steps only, eq. 6) and the original captions (T of eq. 3
is computed from them), so this subclass records the two and otherwise behaves exactly like the stock
module: same RNG, same draws, same nulled attributes.
"""
import typing as tp

from audiocraft.modules.conditioners import ClassifierFreeGuidanceDropout, ConditioningAttributes


class RecordingCFGDropout(ClassifierFreeGuidanceDropout):
    """Stock CFG dropout plus `last_dropped` and `last_original` from its latest training call."""
    def __init__(self, p: float, seed: int = 1234):
        super().__init__(p=p, seed=seed)
        self.last_dropped: tp.Optional[bool] = None
        self.last_original: tp.Optional[tp.List[ConditioningAttributes]] = None

    @classmethod
    def from_stock(cls, module: ClassifierFreeGuidanceDropout) -> 'RecordingCFGDropout':
        """Take over a stock module, RNG state included, so the draw sequence is unchanged."""
        recording = cls(p=module.p)
        recording.rng.set_state(module.rng.get_state())
        recording.train(module.training)
        return recording

    def forward(self, samples: tp.List[ConditioningAttributes]) -> tp.List[ConditioningAttributes]:
        out = super().forward(samples)
        if self.training:
            # The stock module returns its input untouched unless it dropped (then a nulled deep copy).
            self.last_dropped = out is not samples
            self.last_original = samples
        return out

    def __repr__(self):
        return f"RecordingCFGDropout(p={self.p})"
