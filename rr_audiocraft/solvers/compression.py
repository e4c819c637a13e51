"""The embedded codec's solver: AudioCraft's CompressionSolver plus a quantizer-free warm-up.

An RVQ initialises its codebooks by k-means on the first batch it sees. From a cold start that
batch comes out of a random encoder, and a small codec then trains for thousands of steps at the
noise floor (on this benchmark: relative MSE 0.91 after 5000 steps, against 0.28 after 1000
warm-up steps + 1500 with RVQ; docs/notes/tiny-encodec.md). RAVE trains its autoencoder first and turns
the quantizer on later (`warmup_quantize`); this solver does the same: for the first
`quantizer_warmup_epochs` epochs (train and valid) the model runs with stock AudioCraft's
`DummyQuantizer` in place of its RVQ, so the codebooks are k-means-initialised on the first
training batch after the warm-up, by the trained encoder.

Stock AudioCraft cannot do this by configuration alone: `continue_from` from a `no_quant` XP into
an RVQ one loads strictly, and the RVQ's codebook buffers are missing from it. Everything else is
the stock solver; with `quantizer_warmup_epochs: 0` it is exactly the stock solver.
"""
import contextlib
import typing as tp

import omegaconf

from audiocraft.quantization import DummyQuantizer
from audiocraft.solvers.compression import CompressionSolver


class RRCompressionSolver(CompressionSolver):
    """`solver: rr_compression`: stock compression training with a quantizer-free warm-up.

    Config key (top level): `quantizer_warmup_epochs` (int >= 0, default 0): epochs, from the first,
    during which the quantizer is bypassed. Logged metric `quantized`: 0 in those epochs, 1 after.
    """
    def __init__(self, cfg: omegaconf.DictConfig):
        warmup = cfg.get('quantizer_warmup_epochs', 0)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup < cfg.optim.epochs:
            raise ValueError(f"quantizer_warmup_epochs={warmup!r} must be a whole number of epochs in "
                             f"[0, optim.epochs={cfg.optim.epochs}) (0: stock training)")
        super().__init__(cfg)

    @property
    def in_quantizer_warmup(self) -> bool:
        return self.epoch <= self.cfg.get('quantizer_warmup_epochs', 0)

    @contextlib.contextmanager
    def _bypassed_quantizer(self) -> tp.Iterator[None]:
        quantizer = self.model.quantizer
        self.model.quantizer = DummyQuantizer()
        try:
            yield
        finally:
            self.model.quantizer = quantizer

    def run_step(self, idx: int, batch, metrics: dict):
        if not self.in_quantizer_warmup:
            metrics = super().run_step(idx, batch, metrics)
            metrics['quantized'] = 1.
            return metrics
        with self._bypassed_quantizer():
            metrics = super().run_step(idx, batch, metrics)
        metrics['quantized'] = 0.
        return metrics
