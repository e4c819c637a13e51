"""RR solvers: stock MusicGen/AudioGen training plus representation regularisation (arXiv 2309.08773).

On a training step where classifier-free guidance (CFG) dropout removed the captions, the loss is
L_uncond + λ·L_rr (eq. 6): T from the frozen text encoder on the *original* captions (eq. 3), A from
the LM's last hidden states (eq. 4), L_rr of eq. 5. Cross-attention still gets the nulled condition,
exactly as stock. Other steps keep the stock loss.

Nothing of the stock step is rewritten: the stock `run_step` calls three hooks in order, and RR lives
in them.
  1. `_prepare_tokens_and_attributes`: the stock one draws the CFG dropout; the recording dropout of
     `RRLMModel` tells whether it dropped and keeps the original captions, which are encoded (no grad)
     and pooled into T. The LM is told to capture its hidden states for this step. With a frozen
     encoder, dropped steps skip the stock pass over the nulled captions (all-masked anyway), and T
     comes from `PooledTextCache`, filled by the stock pass of normal steps: once a caption has been
     seen, its dropped steps run no encoder at all (`_stock_text_encoder_pass`; `make bench`).
  2. `_compute_cross_entropy`: the stock CE; on RR steps, A is pooled from the captured hidden states
     and λ·L_rr is added to what the stock step back-propagates.
  3. `run_step` (wrapping the stock one): `ce`/`ppl` are put back to the pure cross-entropy and the
     RR metrics are added (`rr`, `rr_corr`, `cfg_dropped`).
With λ = 0 nothing is added to the loss and L_rr is only measured (no grad), so training is exactly
the stock one.
"""
import contextlib
import math
import typing as tp

import flashy
import omegaconf
import torch

import audiocraft.models.builders as stock_model_builders
from audiocraft.modules.conditioners import T5Conditioner
from audiocraft.solvers.audiogen import AudioGenSolver
from audiocraft.solvers.musicgen import MusicGenSolver

from ..data.validate import validate_datasets
from ..evaluation import check_evaluation_assets
from ..models.builders import get_rr_lm_model
from ..models.lm import RRLMModel
from ..codec import verify_compression_reference
from ..modules.text import HFTextConditioner, PooledTextCache, projection_input, text_representation
from ..regularization import (POOLING_MODES, gather_with_grad, masked_pool, rr_loss,
                              similarity_correlation)

APPLY_ON = ('cfg', 'all')


def validate_rr_config(cfg: omegaconf.DictConfig, world_size: int = 1) -> None:
    """Check the `rr` group before anything is built; one error naming the key and allowed values.

    `cfg.dataset.batch_size` is the per-rank batch, as the solvers receive it from `train.get_solver`.
    """
    if not cfg.get('compression_model_checkpoint'):
        raise ValueError("compression_model_checkpoint is not set: give the compression model the LM is trained "
                         "on, as //sig/SIG of a compression XP, //pretrained/NAME or a checkpoint path")
    # A shipped artefact (assets/) is checked against its recorded sha256 before anything loads it.
    verify_compression_reference(cfg.compression_model_checkpoint)
    rr = cfg.get('rr')
    if rr is None:
        raise ValueError("RR solver needs an `rr` config group (keys: weight, pooling, apply_on, gather, text_cache, "
                         "condition)")
    if rr.pooling not in POOLING_MODES:
        raise ValueError(f"rr.pooling={rr.pooling!r} is not supported; allowed values: {list(POOLING_MODES)}")
    if rr.apply_on not in APPLY_ON:
        raise ValueError(f"rr.apply_on={rr.apply_on!r} is not supported; allowed values: {list(APPLY_ON)}")
    weight = rr.weight
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
            or weight < 0:
        raise ValueError(f"rr.weight={weight!r} must be a finite number >= 0 (0 turns RR off)")
    if not isinstance(rr.gather, bool):
        raise ValueError(f"rr.gather={rr.gather!r} must be true or false")
    text_cache = rr.get('text_cache', 0)
    if isinstance(text_cache, bool) or not isinstance(text_cache, int) or text_cache < 0:
        raise ValueError(f"rr.text_cache={text_cache!r} must be a whole number of captions >= 0 (0 turns the cache off)")
    conditioners = cfg.get('conditioners') or {}
    if rr.condition not in conditioners:
        raise ValueError(f"rr.condition={rr.condition!r} names no conditioner; allowed values: "
                         f"{sorted(conditioners)}")
    if weight > 0:
        per_rank = cfg.dataset.batch_size
        pairs_batch = per_rank * world_size if rr.gather else per_rank
        if pairs_batch < 2:
            raise ValueError(
                f"rr.weight={weight} needs at least 2 samples per step to form pairs, but dataset.batch_size="
                f"{per_rank * world_size} over {world_size} rank(s) gives {per_rank} per rank"
                f"{' and ' + str(pairs_batch) + ' gathered' if rr.gather else ''}; raise dataset.batch_size"
                f"{'' if rr.gather or world_size == 1 else ', set rr.gather=true'} or set rr.weight=0")


@contextlib.contextmanager
def _rr_lm_builder():
    """Have the stock `build_model` build an RRLMModel (its only builder call is `get_lm_model`)."""
    stock = stock_model_builders.get_lm_model
    stock_model_builders.get_lm_model = get_rr_lm_model
    try:
        yield
    finally:
        stock_model_builders.get_lm_model = stock


def frozen_text_encoder(conditioner: tp.Any) -> bool:
    """A T5 or HF conditioner whose only trainable part is `output_proj`.

    Its encoder outputs are then a function of the caption alone, and its nulled (empty) captions are
    known to be all-masked, with `inputs['attention_mask']` as the mask.
    """
    projection = {id(p) for p in conditioner.output_proj.parameters()}
    frozen = all(id(p) in projection for p in conditioner.parameters() if p.requires_grad)
    return isinstance(conditioner, (T5Conditioner, HFTextConditioner)) and frozen


@contextlib.contextmanager
def _stock_text_encoder_pass(lm: RRLMModel, condition: str,
                             harvest: tp.Optional[tp.List[tp.Tuple[tp.List[tp.Any], torch.Tensor, torch.Tensor]]]):
    """The stock step's text-encoder pass, made cheaper for RR with a frozen encoder (no-op otherwise).

    On CFG-dropped steps, give the nulled captions' cross-attention input without an encoder pass:
    CFG dropout nulls every caption of the batch, and the stock conditioner runs its encoder over the
    empty captions only to multiply the result by their all-zero mask. With a frozen encoder that pass
    cannot matter: `output_proj(zeros) * mask` has the stock values (zeros), shape [B, T, D] and dtype,
    and `output_proj` still gets its (zero) gradients, so the optimizer does exactly what it does in
    stock. RR needs the original captions on these steps anyway (for T).

    On other steps the stock pass encodes the original captions, which is what T is made of: with
    `harvest` a list, (captions, pre-projection outputs [B, T, Dt], mask [B, T]) is appended to it for
    `PooledTextCache`. Not when T5 word dropout is active: the encoded text is then not the caption.
    """
    conditioner = lm.condition_provider.conditioners[condition]
    if not frozen_text_encoder(conditioner):
        yield
        return
    tokenized: tp.List[tp.Any] = []

    def tokenize(texts):
        tokenized[:] = list(texts)
        return type(conditioner).tokenize(conditioner, texts)

    def forward(inputs):
        if lm.cfg_dropout.last_dropped:  # drawn for this step, before the conditioners run
            mask = inputs['attention_mask']
            proj = conditioner.output_proj
            zeros = torch.zeros(*mask.shape, proj.in_features, device=proj.weight.device, dtype=proj.weight.dtype)
            return proj(zeros) * mask.unsqueeze(-1), mask
        if harvest is None or (conditioner.training and getattr(conditioner, 'word_dropout', 0.) > 0):
            return type(conditioner).forward(conditioner, inputs)
        with projection_input(conditioner) as captured:
            out = type(conditioner).forward(conditioner, inputs)
        harvest.append((list(tokenized), captured[0], inputs['attention_mask']))
        return out

    # Instance attributes: attribute lookup finds them before the class's methods.
    conditioner.tokenize, conditioner.forward = tokenize, forward
    try:
        yield
    finally:
        del conditioner.tokenize, conditioner.forward


def check_finite_rr_inputs(text: torch.Tensor, audio: torch.Tensor, across_ranks: bool, epoch: int) -> None:
    """Stop with a message naming RR if the pooled T [B, Dt] or A [B, Da] hold NaN or inf.

    With `across_ranks`, the ranks agree first (one all-reduce of 2 flags): a rank that raised alone
    would leave the others waiting forever in the gradient all-reduce. Gathered T and A (`rr.gather`)
    are the same on every rank, so there every rank decides alike without it.
    """
    bad = torch.stack([~torch.isfinite(text).all(), ~torch.isfinite(audio).all()]).float()
    if across_ranks:
        flashy.distrib.all_reduce(bad)
    if bad.any():
        which = 'text-encoder outputs (T)' if bad[0] else 'LM hidden states (A)'
        raise RuntimeError(f"RR: non-finite values in the pooled {which} (epoch {epoch}"
                           f"{', on some rank' if flashy.distrib.is_distributed() else ''}); "
                           "stopping before they reach the loss")


class RRSolverMixin:
    """RR on top of a stock MusicGen-family solver; see the module docstring for the hook order."""
    def __init__(self, cfg: omegaconf.DictConfig):
        # Validate before the stock constructor builds models and loads data.
        validate_rr_config(cfg, flashy.distrib.world_size())
        validate_datasets(cfg, self.DATASET_TYPE)  # type: ignore  # manifests + sidecars: one error naming files
        check_evaluation_assets(cfg)  # FAD/KL/CLAP weight files of enabled metrics, before any training step
        self._rr_text: tp.Optional[tp.Tuple[torch.Tensor, torch.Tensor]] = None
        self._rr_metrics: tp.Dict[str, torch.Tensor] = {}
        self._rr_pure_ce: tp.Optional[torch.Tensor] = None
        # Pooled T per caption; used only with a frozen T5/HF encoder (`frozen_text_encoder`).
        text_cache = cfg.rr.get('text_cache', 0)
        self._rr_text_cache = PooledTextCache(text_cache, cfg.rr.pooling) if text_cache else None
        super().__init__(cfg)  # type: ignore

    def build_dataloaders(self) -> None:
        super().build_dataloaders()  # type: ignore
        # Stock ends an epoch when the train loader runs out, even before optim.updates_per_epoch: the run
        # would then train fewer steps (and see fewer CFG-dropped steps) than configured, and say nothing.
        cfg = self.cfg  # type: ignore
        wanted, loader = cfg.optim.updates_per_epoch, self.dataloaders.get('train')  # type: ignore
        # Batches read back from `cache.path` come from a loader stock sizes to updates_per_epoch itself
        # (MusicGenSolver swaps it in on this same condition once the model is built).
        reads_cached_batches = bool(cfg.cache.path) and not cfg.cache.write
        if wanted and loader is not None and not reads_cached_batches and len(loader) < wanted:
            items = len(loader.dataset)  # num_samples random segments, or the files once when it is unset
            source = (f"dataset.train.num_samples={items}" if cfg.dataset.train.get('num_samples')
                      else f"one pass over the {items} training files")
            raise ValueError(
                f"optim.updates_per_epoch={wanted} but the train loader ends after {len(loader)} batches ({source} "
                f"at dataset.batch_size={cfg.dataset.batch_size}): every epoch would stop there and train "
                f"{len(loader) * cfg.optim.epochs} steps instead of {wanted * cfg.optim.epochs}. Set "
                f"dataset.train.num_samples={math.ceil(items * wanted / len(loader))} (random segments, as the stock "
                f"recipes do) or optim.updates_per_epoch={len(loader)}.")

    def build_model(self) -> None:
        def mismatch() -> tp.Optional[str]:
            # Stock asserts this with a tuple for a message (and not at all under `python -O`): say it once.
            cfg, compression = self.cfg, getattr(self, 'compression_model', None)  # type: ignore
            if compression is None:
                return None
            wrong = [(key, ours, theirs) for key, ours, theirs in [
                ('sample_rate', cfg.sample_rate, compression.sample_rate),
                ('transformer_lm.card', cfg.transformer_lm.card, compression.cardinality),
                ('transformer_lm.n_q', cfg.transformer_lm.n_q, compression.num_codebooks)] if ours != theirs]
            if not wrong:
                return None
            return (f"LM settings do not match the compression model (compression_model_checkpoint="
                    f"{cfg.compression_model_checkpoint}): "
                    + '; '.join(f"{key}={ours} but the compression model has {theirs}" for key, ours, theirs in wrong)
                    + ". Set " + ' '.join(f"{key}={theirs}" for key, _, theirs in wrong) + ".")

        with _rr_lm_builder():
            try:
                super().build_model()  # type: ignore
            except AssertionError:
                message = mismatch()
                if message is None:
                    raise
                raise ValueError(message) from None
        message = mismatch()
        if message is not None:
            raise ValueError(message)

    @property
    def rr_lm(self) -> RRLMModel:
        """The RRLMModel, also when FSDP wraps it."""
        for module in self.model.modules():  # type: ignore
            if isinstance(module, RRLMModel):
                return module
        raise RuntimeError("RR solver: the model is not an RRLMModel")

    def _prepare_tokens_and_attributes(self, batch, check_synchronization_points: bool = False):
        cache = self._rr_text_cache if self.is_training else None  # type: ignore
        harvest: tp.Optional[list] = [] if cache is not None else None
        with (_stock_text_encoder_pass(self.rr_lm, self.cfg.rr.condition, harvest)  # type: ignore
              if self.is_training else contextlib.nullcontext()):  # type: ignore
            out = super()._prepare_tokens_and_attributes(batch, check_synchronization_points)  # type: ignore
        self._rr_text, self._rr_metrics, self._rr_pure_ce = None, {}, None
        if not self.is_training:  # type: ignore
            return out
        lm, rr = self.rr_lm, self.cfg.rr  # type: ignore
        for captions, embeddings, mask in harvest or []:
            cache.add(captions, embeddings, mask)  # type: ignore
        dropped = bool(lm.cfg_dropout.last_dropped)
        self._rr_metrics['cfg_dropped'] = torch.tensor(float(dropped))
        if dropped or rr.apply_on == 'all':
            captions = [attr.text.get(rr.condition) for attr in lm.cfg_dropout.last_original]
            conditioner = lm.condition_provider.conditioners[rr.condition]
            # Empty captions (all-False mask) have no meaning to compare: `keep` leaves them out of the pairs.
            if cache is not None and frozen_text_encoder(conditioner):
                text, keep, hits = cache.lookup(conditioner, captions)
                self._rr_metrics['rr_text_cached'] = torch.tensor(hits / len(captions))
            else:
                embeddings, mask = text_representation(conditioner, captions)
                text, keep = masked_pool(embeddings, mask, rr.pooling), mask.any(dim=1)
            self._rr_text = text, keep
            lm.capture_hidden = True
        return out

    def _compute_cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor):
        ce, ce_per_codebook = super()._compute_cross_entropy(logits, targets, mask)  # type: ignore
        if self._rr_text is None:
            return ce, ce_per_codebook
        lm, rr = self.rr_lm, self.cfg.rr  # type: ignore
        hidden = lm.last_hidden
        lm.capture_hidden, lm.last_hidden = False, None
        assert hidden is not None, "RRLMModel did not capture hidden states"
        text, keep = self._rr_text
        self._rr_text = None
        with torch.set_grad_enabled(torch.is_grad_enabled() and rr.weight > 0):
            audio = masked_pool(hidden.states, hidden.mask, rr.pooling)
            if rr.gather:
                text, audio = gather_with_grad(text), gather_with_grad(audio)
                keep = gather_with_grad(keep.float()).bool()
            check_finite_rr_inputs(text, audio, across_ranks=not rr.gather, epoch=self.epoch)  # type: ignore
            text, audio = text[keep], audio[keep]
            if text.shape[0] < 2:
                return ce, ce_per_codebook  # fewer than 2 non-empty captions: no pair to compare
            loss_rr = rr_loss(text, audio)
        self._rr_metrics['rr'] = loss_rr.detach()
        corr = similarity_correlation(text, audio)
        if corr is not None:
            self._rr_metrics['rr_corr'] = corr
        if rr.weight == 0:
            return ce, ce_per_codebook
        self._rr_pure_ce = ce.detach()
        return ce + rr.weight * loss_rr, ce_per_codebook

    def run_step(self, idx: int, batch, metrics: dict) -> dict:
        metrics = super().run_step(idx, batch, metrics)  # type: ignore
        if self._rr_pure_ce is not None:
            # The stock step logged ce + λ·L_rr as `ce`: keep `ce` the pure cross-entropy.
            metrics['ce'] = self._rr_pure_ce
            metrics['ppl'] = torch.exp(self._rr_pure_ce)
        metrics.update(self._rr_metrics)
        self._rr_metrics, self._rr_pure_ce = {}, None
        self.rr_lm.capture_hidden = False
        return metrics


class RRMusicGenSolver(RRSolverMixin, MusicGenSolver):
    """MusicGen training (arXiv 2306.05284) with RR."""


class RRAudioGenSolver(RRSolverMixin, AudioGenSolver):
    """AudioGen training (AudioCraft's re-implementation of arXiv 2209.15352) with RR."""
