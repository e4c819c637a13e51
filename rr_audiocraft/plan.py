"""What a training recipe needs per GPU, before anything is queued: `python -m rr_audiocraft.plan`.

    python -m rr_audiocraft.plan solver=rr_musicgen/musicgen_300m --gpus 16 --gpu-memory 80
    python -m rr_audiocraft.plan solver=rr_audiogen/audiogen_300m optim.ema.device=cpu --gpus 8 --gpu-memory 40 --json
    python -m rr_audiocraft.plan --table solver=rr_audiogen/audiogen_300m solver=rr_musicgen/musicgen_300m

How (docs/plan.md has the reasoning and how exact each part is):
- The config is composed as `dora run` composes it (`train.main.get_xp`), the global batch is split over the
  GPUs as `train.get_solver` splits it, and the LM's per-GPU batch follows `settings.lm_batch_size` (AudioGen's
  mixing keeps `mix_p` of what is loaded).
- The LM is built by the solvers' own builder (`get_rr_lm_model`) on the meta device: every parameter with its
  real shape, no weights, no GPU. Stock's T5 conditioner downloads T5 in its constructor; here the T5 encoder
  of a known name is built on meta from its `transformers.T5Config` instead (`T5_ENCODERS`), and kept out of
  the LM's parameters exactly as stock keeps it (unless `finetune`).
- Weights, gradients, optimizer state (AdamW/Adam: 2 fp32 tensors per parameter; stock dadam: 3) and EMA
  follow from the parameter count and the settings: FSDP (`shard_grad_op`, stock's only working strategy)
  shards fp32 weights, gradients, optimizer state and EMA over the GPUs and holds a full `param_dtype` copy of
  the weights from the forward to the end of the backward; autocast keeps fp32 weights and casts them for the
  forward (those copies are measured with the activations).
- Activations are measured, not modelled: one training forward (LM, cross-entropy, RR's pooling and L_rr) of
  a 1- and a 2-layer model of the recipe's width runs on the CPU at batches 2, 3 and 16, 32, 48 frames, in the
  recipe's precision (CPU autocast, or the weights cast to `fsdp.param_dtype`), and the bytes of the tensors
  autograd saves for the backward are summed (`torch.autograd.graph.saved_tensors_hooks`, each storage once,
  parameters excluded). Those 12 sums fix, exactly, `bytes = c0 + L c1 + B (a(T) + L b(T))` with a, b
  quadratic in T (linear with memory-efficient attention); that form is then evaluated at the recipe's depth,
  per-GPU batch and frames. `tests/test_plan.py` checks it against a direct measurement at full depth.
- Activation checkpointing (`transformer_lm.checkpointing=torch`) keeps each layer's input (measured: the
  tensor entering a layer) instead of everything a layer saves; one layer's saved tensors come back while
  the backward recomputes it. The logits, which the solver's step holds through its backward, and their
  gradient are counted apart.
"""
import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import tempfile
import typing as tp
from pathlib import Path

import numpy as np
import omegaconf
import torch
from transformers import T5Config, T5EncoderModel

from audiocraft.models import builders as stock_builders
from audiocraft.modules.conditioners import T5Conditioner, TextConditioner
from audiocraft.solvers.compression import CompressionSolver
from audiocraft.solvers.musicgen import MusicGenSolver

from .models.builders import get_rr_lm_model
from .regularization import masked_pool, rr_loss
from .settings import lm_batch_size, loaded_batch_size, split_batches_over_ranks
from .train import main as dora_main

GIB = 2 ** 30
# Usable memory of a GPU of M GiB: (M - CUDA_CONTEXT_GIB) * (1 - ALLOCATOR_MARGIN). See docs/plan.md.
CUDA_CONTEXT_GIB = 1.0    # CUDA context, cuBLAS/cuDNN workspaces and NCCL buffers, outside torch's allocator
ALLOCATOR_MARGIN = 0.10   # fragmentation and rounding of torch's caching allocator
CAPTION_TOKENS = 32       # text tokens per caption in the measured forward (cross-attention keys and values)
MEASURE_LAYERS = (1, 2)
MEASURE_BATCHES = (2, 3)  # RR's L_rr needs 2 samples
MEASURE_FRAMES = (16, 32, 48)
FEW_RR_PAIRS_BATCH = 8    # below this many samples per GPU, b(b-1) < 56 pairs: suggest rr.gather=true
GPU_MEMORY_ENV = 'RR_GPU_MEMORY_GB'  # the cluster's memory per GPU, read by the `dora grid` submission check

# Encoder shapes of the T5 names stock's T5Conditioner accepts (HF model configs); built on meta.
T5_ENCODERS: tp.Dict[str, tp.Dict[str, tp.Any]] = {
    't5-small': dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8),
    't5-base': dict(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12),
    't5-large': dict(d_model=1024, d_kv=64, d_ff=4096, num_layers=24, num_heads=16),
    't5-3b': dict(d_model=1024, d_kv=128, d_ff=16384, num_layers=24, num_heads=32),
    't5-11b': dict(d_model=1024, d_kv=128, d_ff=65536, num_layers=24, num_heads=128),
    'google/flan-t5-small': dict(d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_heads=6,
                                 feed_forward_proj='gated-gelu'),
    'google/flan-t5-base': dict(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12,
                                feed_forward_proj='gated-gelu'),
    'google/flan-t5-large': dict(d_model=1024, d_kv=64, d_ff=2816, num_layers=24, num_heads=16,
                                 feed_forward_proj='gated-gelu'),
}
# Released models and the stock recipe that trained their compression model (its shapes, built on meta): for
# `//pretrained/facebook/NAME`, and for a local copy in the hub layout (`//pretrained//DIR/NAME[/FILE]`) that
# is not on this machine.
PUBLIC_COMPRESSION = {
    'encodec_32khz': 'compression/encodec_musicgen_32khz',
    'musicgen-small': 'compression/encodec_musicgen_32khz',
    'musicgen-medium': 'compression/encodec_musicgen_32khz',
    'musicgen-large': 'compression/encodec_musicgen_32khz',
    'audiogen-medium': 'compression/encodec_audiogen_16khz',
}
OPTIMIZER_STATES = {'adam': 2, 'adamw': 2, 'dadam': 3}  # fp32 tensors per parameter (dadam: s, exp_avg, exp_avg_sq)
DTYPE_BYTES = {'float32': 4, 'float16': 2, 'bfloat16': 2}


class PlanError(ValueError):
    """Settings the planner cannot plan (unknown solver, a batch the GPUs do not divide, ...): one message."""


# ---------------------------------------------------------------------------------------------------------
# The config and the model, without weights.

def compose(overrides: tp.Sequence[str]) -> omegaconf.DictConfig:
    """The XP config `dora run OVERRIDES` would train (global batch sizes, as the config gives them)."""
    if not any(o.startswith('solver=') for o in overrides):
        raise PlanError("give the recipe as solver=NAME (e.g. solver=rr_musicgen/musicgen_300m)")
    try:
        cfg = dora_main.get_xp(list(overrides)).cfg
    except Exception as error:  # Hydra's composition errors: unknown group option, bad override syntax
        said = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PlanError(f"cannot compose {' '.join(overrides)}: {said}") from None
    if cfg.get('lm_model') not in ('transformer_lm',) or 'transformer_lm' not in cfg:
        raise PlanError(f"solver={cfg.get('solver')} is not a transformer LM recipe: the planner plans LM training")
    return omegaconf.OmegaConf.create(omegaconf.OmegaConf.to_container(cfg, resolve=False))


class _T5EncoderOnMeta:
    """Stands in for stock's `T5Conditioner` while the planner builds: same output projection and the same
    rule for where the encoder lives (a submodule only with `finetune`), the encoder built on meta from its
    config instead of downloaded."""
    def __new__(cls, name: str, output_dim: int, finetune: bool, device: str, **_: tp.Any):
        if name not in T5_ENCODERS:
            raise PlanError(f"conditioner T5 name {name!r} has no known shape; known: {sorted(T5_ENCODERS)}")
        conditioner = T5Conditioner.__new__(T5Conditioner)
        TextConditioner.__init__(conditioner, T5Conditioner.MODELS_DIMS[name], output_dim)
        conditioner.name, conditioner.finetune, conditioner.device = name, finetune, device
        with torch.device('meta'):
            encoder = T5EncoderModel(T5Config(vocab_size=32128, **T5_ENCODERS[name]))
        if finetune:
            conditioner.t5 = encoder
        else:  # as stock: outside the module's parameters and state dict
            conditioner.__dict__['t5'] = encoder
        return conditioner


@contextlib.contextmanager
def _t5_without_download():
    stock = stock_builders.T5Conditioner
    stock_builders.T5Conditioner = _T5EncoderOnMeta  # type: ignore
    try:
        yield
    finally:
        stock_builders.T5Conditioner = stock


def build_lm(cfg: omegaconf.DictConfig, device: str = 'meta', num_layers: tp.Optional[int] = None) -> torch.nn.Module:
    """The RR solvers' LM (`get_rr_lm_model`) on `device`; T5 encoders on meta, never downloaded."""
    cfg = omegaconf.OmegaConf.create(omegaconf.OmegaConf.to_container(cfg, resolve=False))
    cfg.device = device
    if num_layers is not None:
        cfg.transformer_lm.num_layers = num_layers
    # `device` reaches every module through the builders' factory arguments (stock LMModel, our HF encoders
    # load on the CPU and move); a meta device context would refuse the HF encoders' `from_pretrained`.
    with _t5_without_download():
        return get_rr_lm_model(cfg)


def frozen_text_encoders(lm: torch.nn.Module) -> tp.Dict[str, int]:
    """Parameters of each conditioner's encoder kept outside the LM's parameters (frozen T5, local HF)."""
    found = {}
    for name, conditioner in lm.condition_provider.conditioners.items():
        for attr in ('t5', 'encoder'):
            module = conditioner.__dict__.get(attr)
            if isinstance(module, torch.nn.Module):
                found[f"{name} ({getattr(conditioner, 'name', attr)})"] = sum(p.numel() for p in module.parameters())
    return found


def compression_facts(cfg: omegaconf.DictConfig, frame_rate: tp.Optional[float] = None) -> tp.Dict[str, tp.Any]:
    """Frame rate and parameter count of the compression model the LM is trained on.

    A public name is planned from the stock recipe that trained it (built on meta); anything else (//sig/,
    a local export) is loaded on the CPU with stock's loader. `frame_rate` skips that (weights not counted).
    """
    checkpoint = str(cfg.compression_model_checkpoint)
    if frame_rate is not None:
        return {'frame_rate': frame_rate, 'params': 0, 'source': f"--frame-rate {frame_rate:g} (weights not counted)"}
    if checkpoint not in _COMPRESSION:  # a grid's XPs share their compression model: built once
        _COMPRESSION[checkpoint] = _compression_facts(checkpoint)
    return dict(_COMPRESSION[checkpoint])


_COMPRESSION: tp.Dict[str, tp.Dict[str, tp.Any]] = {}


def _compression_facts(checkpoint: str) -> tp.Dict[str, tp.Any]:
    released = _released_name(checkpoint)
    local = checkpoint.startswith('//pretrained//') or not checkpoint.startswith('//pretrained/')
    if released is None or (local and Path(checkpoint.replace('//pretrained/', '', 1)).exists()):
        try:
            model = CompressionSolver.model_from_checkpoint(checkpoint, device='cpu')
        except Exception as error:
            said = str(error).strip().splitlines()[0] if str(error).strip() else ''
            raise PlanError(f"cannot load compression_model_checkpoint={checkpoint} to read its frame rate "
                            f"({type(error).__name__}: {said}); pass --frame-rate HZ to plan without it") from None
        source = f"{checkpoint}, loaded"
    else:
        recipe = _compose_compression(PUBLIC_COMPRESSION[released])
        recipe.device = 'meta'
        with torch.device('meta'):
            model = stock_builders.get_compression_model(recipe)
        source = f"{checkpoint}: {released}, shapes of stock solver={PUBLIC_COMPRESSION[released]}"
    return {'frame_rate': float(model.frame_rate), 'params': sum(p.numel() for p in model.parameters()),
            'source': source}


def _released_name(checkpoint: str) -> tp.Optional[str]:
    """`musicgen-small` of `//pretrained/facebook/musicgen-small` or `//pretrained//DIR/musicgen-small/FILE`."""
    if not checkpoint.startswith('//pretrained/'):
        return None
    parts = [part for part in checkpoint[len('//pretrained/'):].split('/') if part]
    if parts and parts[-1].endswith('.bin'):
        parts = parts[:-1]
    return parts[-1] if parts and parts[-1] in PUBLIC_COMPRESSION else None


def _compose_compression(solver: str) -> omegaconf.DictConfig:
    # `dset=audio/example`: a compression recipe composes only with some data source; its shapes do not use it.
    return dora_main.get_xp([f'solver={solver}', 'dset=audio/example']).cfg


# ---------------------------------------------------------------------------------------------------------
# Activations: measured on the CPU on shallow models, fitted, scaled.

@dataclasses.dataclass
class ActivationProfile:
    """Bytes autograd keeps for the backward, as measured: `const(T) + L per_layer_const(T) + B (base(T) + L layer(T))`.

    Attributes:
        const, per_layer_const (list): batch-independent bytes (autocast's casted weights, a causal mask),
            outside / per layer: coefficients of quadratics in T (frames).
        base, layer (list): per sample, outside / per layer: coefficients of quadratics in T.
        layer_input (list): linear coefficients of the bytes of one layer's input per sample (what checkpointing keeps).
        logits_bytes_per_frame (float): bytes of the logits per sample and frame (their gradient is a
            backward transient).
        mode (str): the precision measured.
    """
    const: tp.List[float]
    per_layer_const: tp.List[float]
    base: tp.List[float]
    layer: tp.List[float]
    layer_input: tp.List[float]
    logits_bytes_per_frame: float
    mode: str

    def saved(self, layers: int, batch: int, frames: int) -> float:
        return float(np.polyval(self.const, frames) + layers * np.polyval(self.per_layer_const, frames) + batch * (
            np.polyval(self.base, frames) + layers * np.polyval(self.layer, frames)))

    def checkpointed(self, layers: int, batch: int, frames: int) -> float:
        """Peak kept with `checkpointing=torch`: in the backward, the layer inputs plus one recomputed layer's
        saved tensors."""
        return float(self.checkpointed_forward_end(layers, batch, frames) + batch * np.polyval(self.layer, frames)
                     + np.polyval(self.per_layer_const, frames))

    def checkpointed_forward_end(self, layers: int, batch: int, frames: int) -> float:
        """Kept at the end of a forward with `checkpointing=torch`: each layer's input and what is saved outside
        the layers. What a layer saves that does not grow with the batch (autocast's weight copies, an attention
        mask) is recomputed too: measured, `tests/test_plan.py`."""
        kept = batch * (np.polyval(self.base, frames) + layers * np.polyval(self.layer_input, frames))
        return float(kept + np.polyval(self.const, frames))


def precision_mode(cfg: omegaconf.DictConfig) -> str:
    """How the LM computes: 'params-DTYPE' (FSDP casts the weights), 'autocast-DTYPE', or 'DTYPE'."""
    if cfg.fsdp.use:
        return f"params-{cfg.fsdp.param_dtype}" if cfg.fsdp.param_dtype != 'float32' else 'float32'
    if cfg.autocast:
        return f"autocast-{cfg.autocast_dtype}"
    return str(cfg.dtype)


def training_forward(lm: torch.nn.Module, batch: int, frames: int, mode: str,
                     caption_tokens: int = CAPTION_TOKENS) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """The RR solver's training forward of `lm` on the CPU, on random tokens and text-encoder outputs:
    `compute_predictions`, stock's per-codebook cross-entropy, RR's max-pool of the last hidden states, L_rr.

    Returns:
        tuple: the loss (scalar) and the logits [B, K, T, card].
    """
    dtype = {'params-bfloat16': torch.bfloat16, 'params-float16': torch.bfloat16}.get(mode, torch.float32)
    autocast = (torch.autocast('cpu', dtype=torch.bfloat16) if mode.startswith('autocast-')
                else contextlib.nullcontext())  # CPU bf16 measures fp16 too: same sizes
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, lm.card, (batch, lm.num_codebooks, frames), generator=generator)
    with autocast:
        condition_tensors = {}
        for name, conditioner in lm.condition_provider.conditioners.items():
            encoded = torch.randn(batch, caption_tokens, conditioner.dim, generator=generator).to(dtype)
            condition_tensors[name] = (conditioner.output_proj(encoded),
                                       torch.ones(batch, caption_tokens, dtype=torch.long))
        with lm.last_hidden_states() as captured:
            output = lm.compute_predictions(codes, [], condition_tensors)
        ce, _ = MusicGenSolver._compute_cross_entropy(None, output.logits, codes, output.mask)  # type: ignore
        hidden = captured[-1]
        audio = masked_pool(hidden, torch.ones(hidden.shape[:2], dtype=torch.bool), 'max')
        return ce + rr_loss(torch.randn(batch, 16, generator=generator), audio), output.logits


def measure_saved_bytes(lm: torch.nn.Module, batch: int, frames: int, mode: str) -> tp.Dict[str, float]:
    """Bytes autograd saves for the backward in one `training_forward`: each storage once, the LM's
    parameters not counted.

    Returns:
        dict: `saved` (bytes), `layer_input` (bytes of the tensor entering the first layer), `logits` (bytes).
    """
    parameters = {p.untyped_storage().data_ptr() for p in lm.parameters()}
    saved: tp.Dict[int, int] = {}
    held: tp.List[torch.Tensor] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
            held.append(tensor)  # alive until counted: a freed pointer is never reused for another entry
        return tensor

    layer_inputs: tp.List[int] = []
    hook = lm.transformer.layers[0].register_forward_pre_hook(
        lambda _module, args: layer_inputs.append(args[0].untyped_storage().nbytes()))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss, logits = training_forward(lm, batch, frames, mode)
    finally:
        hook.remove()
    held.clear()
    del loss
    return {'saved': float(sum(saved.values())), 'layer_input': float(layer_inputs[0]),
            'logits': float(logits.numel() * logits.element_size())}


_PROFILES: tp.Dict[tp.Tuple, ActivationProfile] = {}


def activation_profile(cfg: omegaconf.DictConfig, mode: str) -> ActivationProfile:
    """Measure (once per shape and precision) and fit the ActivationProfile of `cfg`'s LM."""
    # Keyed on what the measurement builds: recipes that differ only in depth, checkpointing or a fine-tuned
    # encoder share one profile.
    measurable = _measurable(cfg)
    measurable.transformer_lm.num_layers = MEASURE_LAYERS[0]  # build_lm sets the depth of each measurement
    key = (omegaconf.OmegaConf.to_yaml(measurable.transformer_lm),
           omegaconf.OmegaConf.to_yaml(measurable.conditioners), omegaconf.OmegaConf.to_yaml(cfg.fuser), mode)
    if key in _PROFILES:
        return _PROFILES[key]
    measured = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for layers in MEASURE_LAYERS:
            torch.manual_seed(0)
            shallow = build_lm(measurable, device='cpu', num_layers=layers)
            shallow.train()
            if mode.startswith('params-'):
                shallow = shallow.to(torch.bfloat16)
            for batch in MEASURE_BATCHES:
                for frames in MEASURE_FRAMES:
                    measured[layers, batch, frames] = measure_saved_bytes(shallow, batch, frames, mode)
            del shallow
    finally:
        torch.set_num_threads(threads)
    _PROFILES[key] = profile = fit_profile(measured, mode)
    return profile


def _measurable(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
    """The config the shallow CPU models are built from: no checkpointing (what it keeps is derived from the
    plain forward), text encoders frozen (they are not run: their outputs are random; a fine-tuned encoder's
    own activations are not measured)."""
    cfg = omegaconf.OmegaConf.create(omegaconf.OmegaConf.to_container(cfg, resolve=False))
    cfg.transformer_lm.checkpointing = 'none'
    for conditioner in (cfg.get('conditioners') or {}).values():
        if isinstance(conditioner, omegaconf.DictConfig) and 'model' in conditioner:
            settings = conditioner.get(conditioner.model)
            if isinstance(settings, omegaconf.DictConfig) and settings.get('finetune'):
                settings.finetune = False
    return cfg


def fit_profile(measured: tp.Dict[tp.Tuple[int, int, int], tp.Dict[str, float]], mode: str) -> ActivationProfile:
    """Solve `bytes = c(T) + L d(T) + B (a(T) + L b(T))`, each of a, b, c, d a quadratic in T, from measurements
    at 2 depths, 2 batches and 3 lengths (12 equations, 12 unknowns: exact at the measured points)."""
    (l1, l2), (b1, b2) = MEASURE_LAYERS, MEASURE_BATCHES
    per_sample = {(layers, frames): (measured[layers, b2, frames]['saved'] - measured[layers, b1, frames]['saved'])
                  / (b2 - b1) for layers in MEASURE_LAYERS for frames in MEASURE_FRAMES}
    const = {(layers, t): measured[layers, b2, t]['saved'] - b2 * per_sample[layers, t]
             for layers in MEASURE_LAYERS for t in MEASURE_FRAMES}
    per_layer_const = [(const[l2, t] - const[l1, t]) / (l2 - l1) for t in MEASURE_FRAMES]
    base_const = [const[l1, t] - l1 * y for t, y in zip(MEASURE_FRAMES, per_layer_const, strict=True)]
    layer = [(per_sample[l2, t] - per_sample[l1, t]) / (l2 - l1) for t in MEASURE_FRAMES]
    base = [per_sample[l1, t] - l1 * y for t, y in zip(MEASURE_FRAMES, layer, strict=True)]
    inputs = [measured[l1, b2, t]['layer_input'] / b2 for t in MEASURE_FRAMES]
    logits = measured[l1, b2, MEASURE_FRAMES[-1]]['logits'] / (b2 * MEASURE_FRAMES[-1])
    return ActivationProfile(
        const=list(np.polyfit(MEASURE_FRAMES, base_const, 2)),
        per_layer_const=list(np.polyfit(MEASURE_FRAMES, per_layer_const, 2)),
        base=list(np.polyfit(MEASURE_FRAMES, base, 2)), layer=list(np.polyfit(MEASURE_FRAMES, layer, 2)),
        layer_input=list(np.polyfit(MEASURE_FRAMES, inputs, 1)), logits_bytes_per_frame=logits, mode=mode)


# ---------------------------------------------------------------------------------------------------------
# The plan.

@dataclasses.dataclass
class Setup:
    """What the memory of one GPU depends on; suggestions change it and record the overrides that do."""
    gpus: int
    batch: int                 # samples per GPU reaching the LM
    loaded: int                # samples per GPU loaded (AudioGen mixing keeps `batch` of them)
    mix_p: tp.Optional[float]
    batch_key: str             # the global-batch key that sets `batch`
    fsdp: bool
    mode: str
    checkpointing: bool
    ema_gpu: bool
    overrides: tp.List[str] = dataclasses.field(default_factory=list)

    def changed(self, *overrides: str, **fields: tp.Any) -> 'Setup':
        return dataclasses.replace(self, overrides=self.overrides + list(overrides), **fields)


@dataclasses.dataclass
class Facts:
    """What does not change with the setup: model sizes, precision settings, the sequence length."""
    params: int
    layers: int
    frames: int
    frozen_encoders: tp.Dict[str, int]
    compression: tp.Dict[str, tp.Any]
    param_bytes: int           # bytes per weight as built (cfg.dtype)
    optimizer: str
    optimizer_states: int
    ema: bool
    ema_device: tp.Optional[str]
    fsdp_param_bytes: int
    fsdp_reduce_bytes: int
    largest_unit: int          # parameters of the largest FSDP unit (a layer, or the root: embeddings and heads)
    rr_weight: float
    rr_gather: bool


def setup_of(cfg: omegaconf.DictConfig, gpus: int) -> Setup:
    """The per-GPU batch as `train.get_solver` and `settings.lm_batch_size` make it, and the settings."""
    per_rank = omegaconf.OmegaConf.create(omegaconf.OmegaConf.to_container(cfg, resolve=False))
    uneven = split_batches_over_ranks(per_rank, gpus)
    if uneven:
        raise PlanError(f"{uneven[0]}: choose --gpus dividing it or change the batch size")
    batch, mixing = lm_batch_size(per_rank)
    train = per_rank.dataset.get('train') or {}
    loaded = loaded_batch_size(per_rank)
    has_train_batch = bool((cfg.dataset.get('train') or {}).get('batch_size', None))
    return Setup(gpus=gpus, batch=batch, loaded=loaded, mix_p=float(train.mix_p) if mixing else None,
                 batch_key='dataset.train.batch_size' if has_train_batch else 'dataset.batch_size',
                 fsdp=bool(cfg.fsdp.use), mode=precision_mode(cfg),
                 checkpointing=cfg.transformer_lm.get('checkpointing', 'none') != 'none',
                 ema_gpu=bool(cfg.optim.ema.use) and str(cfg.optim.ema.get('device') or 'cuda') != 'cpu')


def facts_of(cfg: omegaconf.DictConfig, frame_rate: tp.Optional[float] = None) -> Facts:
    lm = build_lm(cfg)
    optimizer = str(cfg.optim.optimizer)
    if optimizer not in OPTIMIZER_STATES:
        raise PlanError(f"optim.optimizer={optimizer} is not one stock builds; allowed: {sorted(OPTIMIZER_STATES)}")
    if cfg.transformer_lm.get('checkpointing', 'none') not in ('none', 'torch'):
        raise PlanError(f"transformer_lm.checkpointing={cfg.transformer_lm.checkpointing}: the public xformers has "
                        "no checkpoint_fairinternal; use torch")
    compression = compression_facts(cfg, frame_rate)
    params = sum(p.numel() for p in lm.parameters())
    units = [sum(p.numel() for p in layer.parameters()) for layer in lm.transformer.layers]
    in_layers = sum(units) + sum(p.numel() for p in lm.condition_provider.parameters())
    return Facts(
        params=params, layers=len(lm.transformer.layers),
        frames=int(math.ceil(cfg.dataset.segment_duration * compression['frame_rate'])),
        frozen_encoders=frozen_text_encoders(lm), compression=compression,
        param_bytes=DTYPE_BYTES[str(cfg.dtype)], optimizer=optimizer, optimizer_states=OPTIMIZER_STATES[optimizer],
        ema=bool(cfg.optim.ema.use), ema_device=cfg.optim.ema.get('device'),
        fsdp_param_bytes=DTYPE_BYTES[str(cfg.fsdp.param_dtype)],
        fsdp_reduce_bytes=DTYPE_BYTES[str(cfg.fsdp.reduce_dtype)],
        largest_unit=max(units + [params - in_layers]),
        rr_weight=float(cfg.rr.weight) if cfg.get('rr') else 0.0,
        rr_gather=bool(cfg.rr.gather) if cfg.get('rr') else False)


def usable_bytes(gpu_memory_gib: float) -> float:
    return max(0.0, (gpu_memory_gib - CUDA_CONTEXT_GIB) * (1 - ALLOCATOR_MARGIN)) * GIB


def estimate(facts: Facts, setup: Setup, profile: ActivationProfile) -> tp.Dict[str, float]:
    """Bytes per GPU of each part, and the peak: max(backward, optimizer step)."""
    P, N = facts.params, setup.gpus
    shard = N if setup.fsdp else 1
    parts = {
        'weights': P * facts.param_bytes / shard + (P * facts.fsdp_param_bytes if setup.fsdp else 0),
        'gradients': P * facts.param_bytes / shard
        + (facts.largest_unit * (facts.fsdp_param_bytes + facts.fsdp_reduce_bytes) if setup.fsdp else 0),
        'optimizer': facts.optimizer_states * P * facts.param_bytes / shard,
        'ema': P * facts.param_bytes / shard if setup.ema_gpu else 0.0,
        'text_encoder': 4.0 * sum(facts.frozen_encoders.values()),
        'compression_model': 4.0 * facts.compression['params'],
    }
    if setup.checkpointing:
        activations = profile.checkpointed(facts.layers, setup.batch, facts.frames)
    else:
        activations = profile.saved(facts.layers, setup.batch, facts.frames)
    parts['activations'] = float(activations)
    # The logits are not saved by autograd but the solver's step holds them through its backward, which
    # makes their gradient, as large (measured: tests/test_plan.py, what the allocator holds beyond the saves).
    parts['logits'] = 2 * profile.logits_bytes_per_frame * setup.batch * facts.frames
    static = parts['weights'] + parts['optimizer'] + parts['ema'] + parts['text_encoder'] + parts['compression_model']
    backward = static + parts['gradients'] + parts['activations'] + parts['logits']
    # torch's foreach AdamW/Adam allocate state-sized temporaries in the step (one counted).
    step = static + parts['gradients'] + P * facts.param_bytes / shard
    parts['peak'] = max(backward, step)
    return parts


def start_problems(setup: Setup, facts: Facts) -> tp.List[str]:
    if setup.fsdp and setup.gpus < 2:
        return ["fsdp.use=true needs 2 or more GPUs (Dora creates no process group for one, and FSDP needs one); "
                "on 1 GPU set fsdp.use=false autocast=true autocast_dtype=bfloat16"]
    if facts.rr_weight > 0 and (setup.batch * (setup.gpus if facts.rr_gather else 1)) < 2:
        return [f"rr.weight={facts.rr_weight:g} needs 2 samples per step to form pairs; the per-GPU batch is "
                f"{setup.batch}"]
    return []


def _with_batch(setup: Setup, batch: int) -> Setup:
    if setup.mix_p:
        loaded = int(math.ceil(batch / setup.mix_p))
        while int(setup.mix_p * loaded) < batch:
            loaded += 1
        return setup.changed(f"{setup.batch_key}={loaded * setup.gpus}", batch=batch, loaded=loaded)
    return setup.changed(f"{setup.batch_key}={batch * setup.gpus}", batch=batch, loaded=batch)


def _lean(option: Setup) -> Setup:
    """`option` with EMA on the CPU and activation checkpointing, each when not so already."""
    if option.ema_gpu:
        option = option.changed('optim.ema.device=cpu', ema_gpu=False)
    if not option.checkpointing:
        option = option.changed('transformer_lm.checkpointing=torch', checkpointing=True)
    return option


def suggestions(facts: Facts, setup: Setup, gpu_memory: float,
                profile_for: tp.Callable[[str], ActivationProfile]) -> tp.List[Setup]:
    """Setups that fit, cheapest change first: EMA on CPU, checkpointing, both; else the largest per-GPU batch
    that fits with both; and the fewest GPUs (FSDP) that fit the recipe's global batch."""
    base = setup
    if base.fsdp and base.gpus < 2:
        base = base.changed('fsdp.use=false', 'autocast=true', 'autocast_dtype=bfloat16', fsdp=False,
                            mode='autocast-bfloat16')
    usable = usable_bytes(gpu_memory)
    options = [base]
    if base.ema_gpu:
        options.append(base.changed('optim.ema.device=cpu', ema_gpu=False))
    if not base.checkpointing:
        options += [option.changed('transformer_lm.checkpointing=torch', checkpointing=True)
                    for option in list(options)]
    leanest = _lean(base)  # = options[-1]

    def fits(option: Setup) -> bool:
        return not start_problems(option, facts) and estimate(facts, option, profile_for(option.mode))['peak'] <= usable

    found = [option for option in options if option.overrides and fits(option)][:1]
    if not found and leanest.batch > 1:
        smaller = [b for b in range(leanest.batch - 1, 0, -1) if fits(_with_batch(leanest, b))]
        if smaller:
            found.append(_with_batch(leanest, smaller[0]))
    # FSDP on the GPUs given (when the recipe has it off), else more GPUs at the recipe's global batch (the
    # per-GPU batch shrinks), with FSDP: as the recipe is, else with EMA on CPU and checkpointing.
    global_loaded = setup.loaded * setup.gpus
    same = (setup.gpus,) if setup.gpus >= 2 and not setup.fsdp else ()
    for gpus in same + (2, 4, 8, 16, 32, 64):
        if (gpus <= setup.gpus and gpus not in same) or global_loaded % gpus:
            continue
        loaded = global_loaded // gpus
        batch = int(setup.mix_p * loaded) if setup.mix_p else loaded
        option = setup.changed(f"--gpus {gpus}", gpus=gpus, loaded=loaded, batch=batch) if gpus != setup.gpus \
            else setup
        if not option.fsdp:
            option = option.changed('fsdp.use=true', 'autocast=false', 'fsdp.param_dtype=bfloat16', fsdp=True,
                                    mode='params-bfloat16')
        fitting = [candidate for candidate in (option, _lean(option)) if fits(candidate)]
        if fitting:
            found.append(fitting[0])
            break
    return found


def plan(overrides: tp.Sequence[str], gpus: int, gpu_memory: float,
         frame_rate: tp.Optional[float] = None) -> tp.Dict[str, tp.Any]:
    """The plan as a dict (what `--json` prints)."""
    if gpus < 1:
        raise PlanError(f"--gpus {gpus}: give 1 or more")
    if not gpu_memory > 0:
        raise PlanError(f"--gpu-memory {gpu_memory}: give the memory of one GPU in GB (GiB), > 0")
    cfg = compose(overrides)
    setup = setup_of(cfg, gpus)
    facts = facts_of(cfg, frame_rate)
    return plan_from(cfg, facts, setup, gpu_memory, overrides)


def plan_from(cfg: omegaconf.DictConfig, facts: Facts, setup: Setup, gpu_memory: float,
              overrides: tp.Sequence[str] = ()) -> tp.Dict[str, tp.Any]:
    def profile_for(mode: str) -> ActivationProfile:
        return activation_profile(cfg, mode)
    parts = estimate(facts, setup, profile_for(setup.mode))
    problems = start_problems(setup, facts)
    usable = usable_bytes(gpu_memory)
    fits = not problems and parts['peak'] <= usable
    pairs = setup.batch * (setup.batch - 1)
    result: tp.Dict[str, tp.Any] = {
        'recipe': ' '.join(overrides), 'solver': str(cfg.solver), 'params': facts.params,
        'gpus': setup.gpus, 'gpu_memory_gib': gpu_memory, 'usable_gib': usable / GIB,
        'per_gpu_batch': setup.batch, 'loaded_per_gpu': setup.loaded, 'frames': facts.frames,
        'rr_pairs_per_gpu': pairs, 'rr_gather': facts.rr_gather,
        'rr_pairs_gathered': (setup.batch * setup.gpus) * (setup.batch * setup.gpus - 1) if facts.rr_gather else None,
        'precision': setup.mode, 'fsdp': setup.fsdp, 'checkpointing': setup.checkpointing,
        'optimizer': f"{facts.optimizer} ({facts.optimizer_states} fp32 states)",
        'ema': ('off' if not facts.ema else f"on {'GPU' if setup.ema_gpu else 'CPU'} (optim.ema.device="
                f"{facts.ema_device})"),
        'text_encoders': facts.frozen_encoders, 'compression_model': facts.compression,
        'memory_gib': {key: value / GIB for key, value in parts.items()},
        'peak_gib': parts['peak'] / GIB, 'fits': fits, 'problems': problems,
        'suggest_gather': bool(facts.rr_weight > 0 and not facts.rr_gather and setup.gpus > 1
                               and setup.batch < FEW_RR_PAIRS_BATCH),
        'suggestions': [],
    }
    if not fits:
        for option in suggestions(facts, setup, gpu_memory, profile_for):
            peak = estimate(facts, option, profile_for(option.mode))['peak']
            result['suggestions'].append({'overrides': option.overrides, 'per_gpu_batch': option.batch,
                                          'rr_pairs_per_gpu': option.batch * (option.batch - 1),
                                          'peak_gib': peak / GIB})
    return result


def describe(result: tp.Dict[str, tp.Any]) -> str:
    """The plan in words, one fact a line."""
    m = result['memory_gib']
    sharded = f" (FSDP: fp32 weights, gradients, optimizer state, EMA sharded over {result['gpus']} GPUs)" \
        if result['fsdp'] else ''
    lines = [
        f"plan: {result['recipe']} on {result['gpus']} GPU(s) of {result['gpu_memory_gib']:g} GB",
        f"  LM parameters: {result['params']:,} ({result['params'] / 1e6:.2f}M)",
        f"  precision: {result['precision']}{sharded}; activation checkpointing: "
        f"{'torch' if result['checkpointing'] else 'off'}",
        f"  per-GPU batch: {result['per_gpu_batch']} samples of {result['frames']} frames"
        + (f" ({result['loaded_per_gpu']} loaded, AudioGen mixing keeps mix_p of them)"
           if result['loaded_per_gpu'] != result['per_gpu_batch'] else ''),
        f"  RR pairs per GPU: {result['rr_pairs_per_gpu']}"
        + (f"; gathered over GPUs (rr.gather=true): {result['rr_pairs_gathered']}" if result['rr_gather'] else ''),
        "  per GPU (GiB):",
        f"    weights            {m['weights']:8.2f}",
        f"    gradients          {m['gradients']:8.2f}",
        f"    optimizer state    {m['optimizer']:8.2f}  {result['optimizer']}",
        f"    EMA                {m['ema']:8.2f}  {result['ema']}",
        f"    text encoder       {m['text_encoder']:8.2f}  frozen, fp32: "
        + (', '.join(f"{k} {v / 1e6:.1f}M" for k, v in result['text_encoders'].items()) or 'none outside the LM'),
        f"    compression model  {m['compression_model']:8.2f}  {result['compression_model']['source']}",
        f"    activations        {m['activations']:8.2f}  measured on the CPU, scaled (docs/plan.md)",
        f"    logits             {m['logits']:8.2f}  held by the step, and their gradient",
        f"    peak estimate      {result['peak_gib']:8.2f}  of {result['usable_gib']:.2f} usable "
        f"(({result['gpu_memory_gib']:g} - {CUDA_CONTEXT_GIB:g}) x {1 - ALLOCATOR_MARGIN:.2f})",
        f"  fits: {'yes' if result['fits'] else 'NO'}",
    ]
    lines += [f"  problem: {problem}" for problem in result['problems']]
    if result['suggest_gather']:
        lines.append(f"  few RR pairs per GPU: rr.gather=true makes L_rr span all {result['gpus']} GPUs "
                     f"({result['per_gpu_batch'] * result['gpus']} samples)")
    for option in result['suggestions']:
        lines.append(f"  would fit: {' '.join(option['overrides'])} -> peak {option['peak_gib']:.2f} GiB, per-GPU "
                     f"batch {option['per_gpu_batch']}, RR pairs {option['rr_pairs_per_gpu']}")
    if not result['fits'] and not result['suggestions']:
        lines.append("  no setting tried fits (EMA on CPU, checkpointing, smaller batch, up to 64 GPUs)")
    return '\n'.join(lines)


def refusal(result: tp.Dict[str, tp.Any]) -> str:
    """One line: why a plan does not fit, and the first change that would."""
    why = '; '.join(result['problems']) or (f"peak estimate {result['peak_gib']:.1f} GiB > {result['usable_gib']:.1f} "
                                            f"usable of {result['gpu_memory_gib']:g} GB")
    fix = (f"; would fit: {' '.join(result['suggestions'][0]['overrides'])}" if result['suggestions']
           else '; nothing tried fits')
    return f"memory plan: does not fit {result['gpus']} GPU(s): {why}{fix} (python -m rr_audiocraft.plan)"


# ---------------------------------------------------------------------------------------------------------
# The table of docs/plan.md.

TABLE_GPUS = (1, 8, 16)
TABLE_MEMORY = (24, 40, 80)


def table(recipes: tp.Sequence[str], gpus: tp.Sequence[int] = TABLE_GPUS,
          memories: tp.Sequence[float] = TABLE_MEMORY) -> str:
    """Markdown: every recipe on every GPU count and memory."""
    rows = ["| recipe | GPUs | GB | fits | per-GPU batch | RR pairs / GPU | peak est. (GiB) | usable (GiB) "
            "| suggested changes |", "|---|---|---|---|---|---|---|---|---|"]
    for recipe in recipes:
        overrides = recipe.split()
        cfg = compose(overrides)
        facts = facts_of(cfg)
        for count in gpus:
            try:
                setup = setup_of(cfg, count)
            except PlanError as error:
                rows.append(f"| `{recipe}` | {count} | – | – | – | – | – | – | {error} |")
                continue
            for memory in memories:
                result = plan_from(cfg, facts, setup, memory, overrides)
                fix = '; '.join(problem.split(' (')[0] for problem in result['problems'])  # the cause, not the why
                if result['suggestions']:
                    option = result['suggestions'][0]
                    batch = (f", batch {option['per_gpu_batch']}, {option['rr_pairs_per_gpu']} pairs"
                             if option['per_gpu_batch'] != result['per_gpu_batch'] else '')
                    change = f"`{' '.join(option['overrides'])}` ({option['peak_gib']:.1f} GiB{batch})"
                    fix += ('; ' if fix else '') + change
                elif not result['fits']:
                    fix += ('; ' if fix else '') + 'nothing tried fits'
                if result['suggest_gather']:
                    fix += ('; ' if fix else '') + 'few pairs: `rr.gather=true`'
                rows.append(f"| `{recipe}` | {count} | {memory:g} | {'yes' if result['fits'] else '**no**'} | "
                            f"{result['per_gpu_batch']} | {result['rr_pairs_per_gpu']} | {result['peak_gib']:.1f} | "
                            f"{result['usable_gib']:.1f} | {fix or '–'} |")
    return '\n'.join(rows) + '\n'


def _write_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile('w', dir=path.parent, delete=False, prefix=f'.{path.name}.') as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m rr_audiocraft.plan', description=__doc__.split('\n')[0])
    parser.add_argument('overrides', nargs='+', help="solver=NAME and config overrides, as for `dora run` "
                        "(with --table: one solver=NAME per recipe)")
    parser.add_argument('--gpus', type=int, help="GPUs the XP runs on (the global batch is split over them)")
    parser.add_argument('--gpu-memory', type=float, help="memory of one GPU in GB (as nvidia-smi, GiB)")
    parser.add_argument('--json', action='store_true', help="print the plan as JSON")
    parser.add_argument('--frame-rate', type=float, default=None,
                        help="token rate of the compression model (Hz), instead of reading it from the model")
    parser.add_argument('--table', action='store_true', help=f"markdown table of each solver=NAME on {TABLE_GPUS} "
                        f"GPUs of {TABLE_MEMORY} GB")
    parser.add_argument('--out', type=Path, default=None, help="with --table: write the table to this file")
    return parser


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.table and (args.gpus is None or args.gpu_memory is None):
        parser.error("give --gpus N and --gpu-memory GB (or --table)")
    try:
        if args.table:
            text = table(args.overrides)
            if args.out:
                _write_atomically(args.out, text)
            print(text, end='')
            return 0
        result = plan(args.overrides, args.gpus, args.gpu_memory, args.frame_rate)
    except PlanError as error:
        # The class path first, as train.main prints start-up refusals (also when run as __main__).
        print(f"rr_audiocraft.plan.PlanError: {error}", file=sys.stderr, flush=True)
        return 2
    print(json.dumps(result, indent=2) if args.json else describe(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
