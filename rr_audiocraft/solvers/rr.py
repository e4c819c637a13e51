"""RR solvers: stock MusicGen/AudioGen training plus representation regularisation (arXiv 2309.08773).

On a training step where classifier-free guidance (CFG) dropout removed the captions, the loss is
L_uncond + λ·L_rr (eq. 6): T from the frozen text encoder on the *original* captions (eq. 3), A from
the LM's last hidden states over its real frames (eq. 4), L_rr of eq. 5,

    L_rr = Σ_{b≠b'} (cos(T_b, T_b') − cos(A_b, A_b'))² / (B (B − 1)).

Cross-attention still gets the nulled condition, exactly as stock. Other steps keep the stock loss.

Nothing of the stock step is rewritten: the stock `run_step` calls two hooks in order, and RR lives in
them, with one `RRStep` (solvers/step.py) that `run_step` creates before the stock step and drops after.
  1. `_prepare_tokens_and_attributes`: the stock one draws the CFG dropout (the `RecordingCFGDropout`
     of `RRLMModel` records the draw and the original captions) and returns the padding mask. When RR
     acts, T is pooled from the original captions (no grad) and the real tokens are recorded: the stock
     padding mask, and the frames each clip really has (`real_token_mask`), since stock marks padding
     only with `tokens.padding_with_special_token=true`, false in its defaults and the paper recipes.
     With a frozen encoder (`FrozenTextEncoder`, installed when the model is built) dropped steps skip
     the stock pass over the nulled captions, and T comes from its caption cache, filled by the stock
     pass of normal steps with the captions that can recur (not AudioGen's one-off mixed captions).
  2. `_compute_cross_entropy`: the stock CE; when RR acts, A is pooled from the captured last hidden
     states over the states that predict a real token, and λ·L_rr is added to what the stock step
     back-propagates.
`run_step` then puts `ce`/`ppl` back to the pure cross-entropy and adds the RR metrics, the same keys
on every step (`RRStep.logged`). With λ = 0 nothing is added to the loss and L_rr is only measured
(no grad), so training is exactly the stock one.

The valid stage also logs `rr` and `rr_corr` for every λ (0 included): L_rr and the correlation of the
text and audio similarities with the captions nulled, i.e. on the states RR acts on (`_valid_rr`).
"""
import contextlib
import math
import typing as tp

import flashy
import omegaconf
import torch

import audiocraft.models.builders as stock_model_builders
import audiocraft.models.loaders as stock_model_loaders
from audiocraft.modules.conditioners import ClassifierFreeGuidanceDropout
from audiocraft.solvers.audiogen import AudioGenSolver
from audiocraft.solvers.musicgen import MusicGenSolver

from ..assets import verify_compression_reference
from ..data.mixing import MarkRecurringCaptions, caption_recurs
from ..data.token_cache import CacheableInfos, InfoBatchLoader, allow_cached_infos
from ..data.validate import validate_datasets
from ..evaluation import check_evaluation_assets
from ..fsdp import check_cpu_fsdp, stock_fsdp_on_cpu, unsharded, uses_cpu_fsdp
from ..models.builders import get_rr_lm_model
from ..models.lm import RRLMModel
from ..modules.frozen_encoder import FrozenTextEncoder, install_frozen_text_encoder
from ..modules.text import text_representation
from ..regularization import gather_with_grad, masked_pool, rr_loss, similarity_correlation
from ..settings import (APPLY_ON, CheckpointMismatchError, ConfigError,  # noqa: F401 (APPLY_ON: re-exported)
                        checkpoint_mismatch_problem, validate_rr_config)
from .step import RRStep, finish_epoch_metrics


@contextlib.contextmanager
def _rr_lm_builder():
    """Have the stock `build_model` build an RRLMModel (its only builder call is `get_lm_model`)."""
    stock = stock_model_builders.get_lm_model
    stock_model_builders.get_lm_model = get_rr_lm_model
    try:
        yield
    finally:
        stock_model_builders.get_lm_model = stock


def real_token_mask(infos: tp.Sequence[tp.Any], frame_rate: float, shape: torch.Size,
                    device: tp.Union[str, torch.device]) -> torch.Tensor:
    """Tokens made from real audio, not from the zero padding of a clip shorter than the segment.

    The same count stock uses for `tokens.padding_with_special_token`: the first
    floor(n_frames / sample_rate · frame_rate) tokens of each clip.

    Args:
        infos (list): B segment infos (`n_frames`, `sample_rate`), as the batch carries them.
        frame_rate (float): Token rate of the compression model (Hz).
        shape (torch.Size): [B, K, T] of the tokens.
    Returns:
        torch.Tensor: [B, K, T] bool.
    """
    B, K, T = shape
    real = torch.tensor([math.floor(float(info.n_frames) / info.sample_rate * frame_rate) for info in infos])
    per_frame = torch.arange(T).unsqueeze(0) < real.unsqueeze(1)  # [B, T]
    return per_frame.unsqueeze(1).expand(B, K, T).to(device)


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
    _rr_step: tp.Optional[RRStep] = None
    _valid_tokens: tp.Optional[tp.Tuple[torch.Tensor, torch.Tensor]] = None  # tokens, padding mask [B, K, T]
    _checked_source: tp.Optional[str] = None  # the `continue_from` being loaded, whose weights are checked
    _pretrained_cfg: tp.Optional[omegaconf.DictConfig] = None  # the config a `//pretrained/` LM carries (`xp.cfg`)

    def __init__(self, cfg: omegaconf.DictConfig):
        # Validate before the stock constructor builds models and loads data.
        validate_rr_config(cfg, flashy.distrib.world_size())
        check_cpu_fsdp(cfg)  # fsdp.use=true on CPU: float32, shard_grad_op, 2+ ranks (see rr_audiocraft/fsdp.py)
        if cfg.cache.path and not cfg.cache.write:
            if cfg.dataset.num_workers < 1:  # stock reads cached batches with that many threads: 0 fails mid-epoch
                raise ConfigError([f"cache.path={cfg.cache.path} reads the token cache with dataset.num_workers "
                                   f"threads, but dataset.num_workers={cfg.dataset.num_workers}; set it to 1 or more"])
            allow_cached_infos()
        # A shipped artefact (assets/) is checked against its recorded sha256 before anything loads it.
        verify_compression_reference(cfg.compression_model_checkpoint)
        validate_datasets(cfg, self.DATASET_TYPE)  # type: ignore  # manifests + sidecars: one error naming files
        check_evaluation_assets(cfg)  # FAD/KL/CLAP weight files of enabled metrics, before any training step
        super().__init__(cfg)  # type: ignore
        if self._cached_batch_loader is not None:  # type: ignore
            loader = self._cached_batch_loader = InfoBatchLoader.of(self._cached_batch_loader)  # type: ignore
            self.dataloaders['train'] = loader  # type: ignore

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
            raise ConfigError([
                f"optim.updates_per_epoch={wanted} but the train loader ends after {len(loader)} batches ({source} "
                f"at dataset.batch_size={cfg.dataset.batch_size}): every epoch would stop there and train "
                f"{len(loader) * cfg.optim.epochs} steps instead of {wanted * cfg.optim.epochs}. Set "
                f"dataset.train.num_samples={math.ceil(items * wanted / len(loader))} (random segments, as the stock "
                f"recipes do) or optim.updates_per_epoch={len(loader)}."])
        if loader is not None and not reads_cached_batches and getattr(loader.dataset, 'aug_p', 0) > 0:
            # AudioGen mixing: mark which captions can recur, for the caption cache.
            loader.collate_fn = MarkRecurringCaptions(loader.collate_fn)
        if loader is not None and cfg.cache.path and cfg.cache.write:
            loader.collate_fn = CacheableInfos(loader.collate_fn)  # AudioGen's infos as the stock writer wants them

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
                raise ConfigError([message]) from None
        message = mismatch()
        if message is not None:
            raise ConfigError([message])
        # The frozen-encoder conditioner RR reads T from, installed once (see modules/frozen_encoder.py).
        rr = self.cfg.rr  # type: ignore
        install_frozen_text_encoder(self.rr_lm.condition_provider.conditioners[rr.condition], rr.pooling,
                                    rr.get('text_cache', 0), rr.get('skip_nulled_text_pass', True),
                                    int(rr.get('encoder_cache_mb', 0) * 2**20))

    def wrap_with_fsdp(self, model: torch.nn.Module, *args, **kwargs):
        """Stock's FSDP wrapping; on CPU ranks with the CPU as device (stock assumes CUDA; rr_audiocraft/fsdp.py)."""
        if not uses_cpu_fsdp(self.cfg):  # type: ignore
            return super().wrap_with_fsdp(model, *args, **kwargs)  # type: ignore
        with stock_fsdp_on_cpu(self.cfg.fsdp):  # type: ignore
            return super().wrap_with_fsdp(model, *args, **kwargs)  # type: ignore

    def load_checkpoints(self, load_best: bool = False, ignore_state_keys: tp.Sequence[str] = ()
                         ) -> tp.Optional[dict]:
        """Stock loading (the XP's own checkpoint first, else `continue_from`), saying what stock leaves silent.

        An XP with its own checkpoint resumes from it and ignores `continue_from`: that is what lets a preempted or
        requeued run go on where it stopped instead of starting over, but stock says nothing, so one line does.
        Weights from `continue_from` are checked against the model before stock copies them (`load_state_dict`).
        """
        continue_from = self.cfg.continue_from  # type: ignore
        own_checkpoint = self.checkpoint_path(use_fsdp=False)  # type: ignore  # what stock tests first
        resumes = own_checkpoint.exists()
        if continue_from and resumes:
            self.logger.info(  # type: ignore
                "continue_from=%s is ignored: this XP resumes from its own checkpoint %s (so a preempted or requeued "
                "run goes on where it stopped); to start again from continue_from, run `dora run --clear` or change a "
                "setting so the XP gets a new signature", continue_from, own_checkpoint)
        self._checked_source = None if resumes else continue_from
        return super().load_checkpoints(load_best, list(ignore_state_keys))  # type: ignore

    def load_from_pretrained(self, name: str) -> dict:
        """Stock's `//pretrained/NAME` state (the LM's best state, nothing else), keeping the package's `xp.cfg`.

        Stock drops that config; the check of `load_state_dict` compares the settings no tensor shape shows with it.
        """
        package = stock_model_loaders.load_lm_model_ckpt(name)
        if package.get('xp.cfg') is not None:
            self._pretrained_cfg = omegaconf.OmegaConf.create(package['xp.cfg'])
        return {'best_state': {'model': package['best_state']}}

    def load_state_dict(self, state: dict) -> None:
        """Refuse LM weights from `continue_from` that the model cannot take, with each tensor and its config key.

        Stock copies the best state tensor by tensor (`BestStateDictManager.load_state_dict`): a wrong shape ends in
        a traceback that names neither tensor nor key, an extra tensor in a KeyError, and a missing one is silently
        left at its random initialisation.
        """
        source = self._checked_source
        loaded = (state.get('best_state') or state.get('fsdp_best_state') or {}).get('model')
        if source and loaded is not None and not self.cfg.fsdp.use:  # type: ignore  # FSDP: sharded shapes (stock)
            expected = {name: tuple(tensor.shape) for name, tensor in self.model.state_dict().items()}  # type: ignore
            shapes = {name: tuple(tensor.shape) for name, tensor in loaded.items()}
            message = checkpoint_mismatch_problem(
                source, shapes, expected, self.cfg, self._pretrained_cfg)  # type: ignore
            if message is not None:
                raise CheckpointMismatchError([message])
        super().load_state_dict(state)  # type: ignore

    @property
    def rr_lm(self) -> RRLMModel:
        """The RRLMModel, also when FSDP wraps it."""
        for module in self.model.modules():  # type: ignore
            if isinstance(module, RRLMModel):
                return module
        raise RuntimeError("RR solver: the model is not an RRLMModel")

    def _prepare_tokens_and_attributes(self, batch, check_synchronization_points: bool = False):
        step = self._rr_step
        if step is None:  # not a training step
            out = super()._prepare_tokens_and_attributes(batch, check_synchronization_points)  # type: ignore
            if self.current_stage == 'valid':  # type: ignore
                self._valid_tokens = (out[1], out[2])  # the valid step's tokens, for `_valid_rr`
            return out
        lm, rr = self.rr_lm, self.cfg.rr  # type: ignore
        conditioner = lm.condition_provider.conditioners[rr.condition]
        frozen = isinstance(conditioner, FrozenTextEncoder)
        cache = conditioner.caption_cache if frozen else None
        with conditioner.handing_out() if cache is not None else contextlib.nullcontext([]) as passes:
            out = super()._prepare_tokens_and_attributes(batch, check_synchronization_points)  # type: ignore
        infos = batch[-1]  # (audio, infos), or (infos,) read back from cache.path
        recurs = caption_recurs(infos)
        for captions, embeddings, mask in passes:
            cache.add(captions, embeddings, mask, recurs)  # type: ignore
        step.dropped = bool(lm.cfg_dropout.last_dropped)
        if not (step.dropped or rr.apply_on == 'all'):
            return out
        _, audio_tokens, padding_mask = out
        captions = [attr.text.get(rr.condition) for attr in lm.cfg_dropout.last_original]
        # Empty captions (all-False mask) have no meaning to compare: `keep` leaves them out of the pairs.
        step.text, step.keep, hits = self._pooled_text(captions, recurs)
        if hits is not None:
            step.cached, step.looked_up = hits, len(captions)
        step.token_valid = self._token_valid(infos, audio_tokens, padding_mask)
        return out

    def _token_valid(self, infos: tp.Sequence[tp.Any], audio_tokens: torch.Tensor, padding_mask: torch.Tensor
                     ) -> torch.Tensor:
        """[B, K, T] bool: tokens of real audio (the stock padding mask and each clip's real frames)."""
        frame_rate = self.compression_model.frame_rate  # type: ignore
        return padding_mask & real_token_mask(infos, frame_rate, audio_tokens.shape, audio_tokens.device)

    def _pooled_audio(self, hidden: torch.Tensor, token_valid: torch.Tensor) -> torch.Tensor:
        """A [B, D] of eq. 4: the last hidden states [B, S', D] pooled over those that predict a real token."""
        valid = self.rr_lm.hidden_state_mask(token_valid)  # [B, S]
        states = hidden[:, -valid.shape[1]:]  # drop a 'prepend' fuser's condition prefix, if any
        return masked_pool(states, valid, self.cfg.rr.pooling)  # type: ignore

    def _pooled_text(self, captions: tp.List[tp.Optional[str]], recurs: tp.Optional[tp.Sequence[bool]]
                     ) -> tp.Tuple[torch.Tensor, torch.Tensor, tp.Optional[int]]:
        """T [B, Dt] of eq. 3, keep [B] (False for empty captions), captions found in the caption cache."""
        rr = self.cfg.rr  # type: ignore
        conditioner = self.rr_lm.condition_provider.conditioners[rr.condition]
        with unsharded(self.model, conditioner):  # type: ignore  # FSDP: the weights a direct call reads
            if isinstance(conditioner, FrozenTextEncoder):
                return conditioner.pooled_text(captions, recurs)
            embeddings, mask = text_representation(conditioner, captions)
        return masked_pool(embeddings, mask, rr.pooling), mask.any(dim=1), None

    def _valid_rr(self, batch) -> tp.Dict[str, tp.Any]:
        """L_rr and the similarity correlation on a valid batch, where RR acts: A from the LM with the
        captions nulled (as on a CFG-dropped training step), T from the original captions. Measured for
        every λ, 0 included, so rows can be compared on the structure RR changes (no grad, no training).
        """
        step = RRStep()
        audio_tokens, padding_mask = self._valid_tokens
        lm, rr = self.rr_lm, self.cfg.rr  # type: ignore
        infos = batch[-1]
        attributes = [info.to_condition_attributes() for info in infos]
        captions = [attr.text.get(rr.condition) for attr in attributes]
        nulled = ClassifierFreeGuidanceDropout(p=1.0)(attributes)  # a fresh module is in training mode: drops all
        with torch.no_grad(), lm.last_hidden_states() as hidden:
            conditions = lm.condition_provider(lm.condition_provider.tokenize(nulled))
            lm.compute_predictions(audio_tokens, [], conditions)
            text, keep, _ = self._pooled_text(captions, caption_recurs(infos))
            audio = self._pooled_audio(hidden[-1], self._token_valid(infos, audio_tokens, padding_mask))
            text, audio = text[keep], audio[keep]
            if text.shape[0] >= 2:
                step.loss_rr, step.corr = rr_loss(text, audio), similarity_correlation(text, audio)
        logged = step.logged()
        return {key: logged[key] for key in ('rr_steps', 'rr', 'rr_corr_steps', 'rr_corr')}

    def _compute_cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor):
        ce, ce_per_codebook = super()._compute_cross_entropy(logits, targets, mask)  # type: ignore
        step = self._rr_step
        if step is None or not step.acts:
            return ce, ce_per_codebook
        rr = self.cfg.rr  # type: ignore
        assert step.hidden and step.token_valid is not None, "RRLMModel did not capture hidden states"
        states, step.hidden = step.hidden[-1], []
        text, keep = step.text, step.keep
        assert text is not None and keep is not None
        with torch.set_grad_enabled(torch.is_grad_enabled() and rr.weight > 0):
            audio = self._pooled_audio(states, step.token_valid)
            if rr.gather:
                text, audio = gather_with_grad(text), gather_with_grad(audio)
                keep = gather_with_grad(keep.float()).bool()
            check_finite_rr_inputs(text, audio, across_ranks=not rr.gather, epoch=self.epoch)  # type: ignore
            text, audio = text[keep], audio[keep]
            if text.shape[0] < 2:
                return ce, ce_per_codebook  # fewer than 2 non-empty captions: no pair to compare
            loss_rr = rr_loss(text, audio)
        step.loss_rr, step.corr = loss_rr.detach(), similarity_correlation(text, audio)
        if rr.weight == 0:
            return ce, ce_per_codebook
        step.pure_ce = ce.detach()
        return ce + rr.weight * loss_rr, ce_per_codebook

    def run_step(self, idx: int, batch, metrics: dict) -> dict:
        if not self.is_training:  # type: ignore
            metrics = super().run_step(idx, batch, metrics)  # type: ignore
            if self.current_stage == 'valid':  # type: ignore
                metrics.update(self._valid_rr(batch))
            return metrics
        step = self._rr_step = RRStep()
        try:
            with self.rr_lm.last_hidden_states(when=lambda: step.acts) as hidden:
                step.hidden = hidden
                metrics = super().run_step(idx, batch, metrics)  # type: ignore
        finally:
            self._rr_step = None
        if step.pure_ce is not None:
            # The stock step logged ce + λ·L_rr as `ce`: keep `ce` the pure cross-entropy.
            metrics['ce'] = step.pure_ce
            metrics['ppl'] = torch.exp(step.pure_ce)
        metrics.update(step.logged())
        return metrics

    def train(self):
        """Stock train stage; the RR metrics' epoch sums and counts become ratios (solvers/step.py)."""
        return finish_epoch_metrics(super().train())  # type: ignore

    def valid(self):
        """Stock valid stage plus `rr`/`rr_corr` with the captions nulled (`_valid_rr`), as ratios."""
        return finish_epoch_metrics(super().valid())  # type: ignore


class RRMusicGenSolver(RRSolverMixin, MusicGenSolver):
    """MusicGen training (arXiv 2306.05284) with RR."""


class RRAudioGenSolver(RRSolverMixin, AudioGenSolver):
    """AudioGen training (AudioCraft's re-implementation of arXiv 2209.15352) with RR."""
