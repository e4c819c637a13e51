"""RR vs stock: what a training step costs. `make bench` runs `python -m rr_audiocraft.bench`.

Three measurements, written to `bench/results/NAME.json` and `NAME.md` and printed:

1. **CFG-dropped steps** (CFG dropout forced to p = 1): the stock AudioGen solver's `run_step` against
   the RR solver's (λ = 3 by default) on the identical model weights, batch and seed. This is where RR
   does its work: it pools T of the original captions and A and adds λ·L_rr. Twice: with the batch's
   captions in RR's caption cache (every epoch after the first: a frozen encoder's T is looked up,
   `PooledTextCache`) and with the cache emptied before the step (a caption's first sight: the captions
   are encoded, as stock encodes the nulled ones).
2. **Normal steps** (p = 0): the same pair; RR (`apply_on: cfg`) only reads the recorded CFG draw.
3. **L_rr alone**: `rr_loss` forward + backward on pooled [B, w] inputs, for batch sizes
   8, 64, 192, 1024 and widths 384-1024.
4. **Caption cache under AudioGen's mixing** (tiny LM): two training epochs with mixing on
   (`aug_p = mix_p = 0.5`, as the sound recipe) and CFG p = 0.5; per epoch `rr_text_cached` (the fraction
   of RR-step captions whose T came from the cache), the captions kept, and how many distinct captions
   reached the LM. Mixed captions are one-off concatenations: the cache keeps only the dataset's.

How the step timings are taken: both solvers are built in one process from the same composed config
(`solver=rr_audiogen/tiny` plus size overrides; the stock one with `solver: audiogen`, i.e. AudioCraft's
own `AudioGenSolver` and a plain `LMModel`), the RR model gets the stock model's weights, and one batch
from the train loader is fed to both. Steps alternate (stock, RR, then RR, stock, ...) so that machine
noise and drift hit both alike; the first `--warmup` rounds are discarded; the reported ratio is the
median of the per-round ratios RR/stock (each round's steps ran back to back), with its quartiles,
beside the plain medians. On CFG steps the RR variants of `CFG_VARIANTS` run in the same rounds (the
order rotates), each an RR solver built with config switches: `rr_cold` (`rr.text_cache=0`: a
caption's first sight) and, with `--before-after`, `rr_before` (also `rr.skip_nulled_text_pass=false`:
the nulled captions encoded as in stock, as before the CFG-step optimisations). Each step is timed in
wall time (`perf_counter`) and, on CPU, in CPU time of this process (`process_time`, all its threads):
on a shared machine other processes' load inflates wall time far more than CPU time, so the CPU ratio is
the steadier one. Both models keep training as they are timed: a step's cost does not depend on the
weights' values. `--threads` defaults to 1: two OpenMP threads per process on an oversubscribed 2-core
machine stall each other.

Peak memory, what it means: on CPU, the peak of the bytes held by torch's CPU allocator during one
step, above what was held when the step started (model, optimizer state and batch are already there;
gradients, activations and the text encoder's activations are not). It is read from torch's profiler
allocation events (`profile_memory=True`), in separate rounds from the timed ones so that the
profiler's overhead never enters a timing. It does not see Python objects or the tokenizer's own
(Rust) memory. Process RSS was not used: glibc keeps freed blocks mapped, so the RSS high-water mark
of a warmed-up process barely moves with what a step allocates. On CUDA: `torch.cuda.max_memory_allocated`
above the allocation at the start of the step.

Both solvers use the project's local text encoder (all-MiniLM-L6-v2 through `HFTextConditioner`): stock
AudioCraft's T5 needs weights from the Hugging Face hub. The compression model is a tiny EnCodec from
`solver=rr_compression/tiny`, built by the bench with its RVQ codebooks k-means-initialised on the
benchmark audio (untrained otherwise): the LM step's cost does not depend on the EnCodec weights, and
real k-means codebooks give varied tokens. `--compression-checkpoint` takes a trained one instead.

Sizes: `tiny` is the LM of `solver=rr_audiogen/tiny` (dim 64, 2 layers); `small` is dim 256, 4 layers,
card 1024 (the size of the CPU timings in the design notes); `recipe` is the paper's 300 M LM (dim 1024,
24 layers, card 2048), meant for `--device cuda --autocast bfloat16` (too slow on CPU).

    python -m rr_audiocraft.bench                      # tiny + small on CPU, ~5 min
    python -m rr_audiocraft.bench --tiny --out DIR     # smoke run, under a minute (the test)
    python -m rr_audiocraft.bench --before-after       # + RR before the CFG-step optimisation, paired
    python -m rr_audiocraft.bench --sizes recipe --device cuda --autocast bfloat16
"""
from . import configured  # noqa: F401  (first: the process set-up AudioCraft needs at import)
import argparse
import contextlib
import datetime
import functools
import json
import logging
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import typing as tp
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.synth import datasource_overrides, generate_dataset
from .environment import override_dora_dir

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / 'bench' / 'results'

# LM sizes (transformer_lm settings); `card` is also the bench EnCodec's codebook size.
SIZES: tp.Dict[str, tp.Dict[str, int]] = {
    'tiny': dict(dim=64, num_heads=4, num_layers=2, card=256),
    'small': dict(dim=256, num_heads=8, num_layers=4, card=1024),
    'recipe': dict(dim=1024, num_heads=16, num_layers=24, card=2048),
}
RR_LOSS_BATCHES = (8, 64, 192, 1024)
RR_LOSS_WIDTHS = (384, 512, 768, 1024)
PHASES = (('cfg', 1.0), ('normal', 0.0))  # name, forced CFG dropout probability
MEMORY_NOTE = {
    'cpu': "peak bytes held by torch's CPU allocator during one step, above the bytes held at its start "
           "(torch profiler allocation events; Python objects and tokenizer memory not included)",
    'cuda': "torch.cuda.max_memory_allocated during one step, above memory_allocated at its start",
}


# ----------------------------------------------------------------------------------------------
# Assets: a small synthetic dataset and a k-means-initialised tiny EnCodec per codebook size.

def _compose(overrides: tp.List[str]):
    from .train import main
    return main.get_xp(overrides)


def build_compression_checkpoint(data_dir: Path, bins: int, path: Path, num_clips: int = 8,
                                 seconds: float = 2.0) -> Path:
    """Write an AudioCraft compression checkpoint: tiny EnCodec, RVQ k-means-initialised on real clips.

    Args:
        data_dir (Path): Output folder of `rr_audiocraft.data.synth` (train clips are read).
        bins (int): Codebook size (the LM `card`).
        path (Path): Where the checkpoint goes (`compression_model_checkpoint=PATH` loads it).
        num_clips (int): Clips the k-means sees (the first `seconds` of each; at 50 Hz, 8 x 2 s give
            800 frames per codebook).
    Returns:
        Path: `path`.
    """
    import julius
    import soundfile
    from audiocraft.models.builders import get_compression_model

    xp = _compose(['solver=rr_compression/tiny', f'rvq.bins={bins}', *datasource_overrides(data_dir)])
    cfg = xp.cfg
    model = get_compression_model(cfg)
    wavs = []
    for wav_path in sorted((data_dir / 'train').glob('*.wav'))[:num_clips]:
        wav, sr = soundfile.read(str(wav_path), dtype='float32')
        # The benchmark is written at 16 kHz, the codec runs at its own rate (as the stock loader resamples).
        wavs.append(julius.resample_frac(torch.from_numpy(wav), sr, cfg.sample_rate))
    length = min([w.shape[-1] for w in wavs] + [int(seconds * cfg.sample_rate)])
    audio = torch.stack([w[:length] for w in wavs]).unsqueeze(1)  # [B, 1, T]
    # One forward in training mode runs the RVQ's k-means initialisation on these frames.
    model.train()
    with torch.no_grad():
        model(audio)
    model.eval()
    torch.save({'xp.cfg': cfg, 'best_state': {'model': model.state_dict()}}, path)
    return path


# ----------------------------------------------------------------------------------------------
# Solvers.

@contextlib.contextmanager
def _stock_lm_with_local_text_encoder():
    """Make the stock `build_model` build a plain `LMModel` that uses our local text conditioner.

    Stock AudioCraft cannot build the `hf` conditioner (its T5 needs the hub), so the LM is built the way
    the RR solver builds it (the stock `get_lm_model`, then our conditioner added) and handed back as a
    stock `LMModel` with a stock `ClassifierFreeGuidanceDropout` carrying the same RNG state.
    """
    import audiocraft.models.builders as stock_builders
    from audiocraft.models.lm import LMModel
    from audiocraft.modules.conditioners import ClassifierFreeGuidanceDropout
    from .models.builders import get_rr_lm_model

    def build(cfg):
        lm = get_rr_lm_model(cfg)
        recording = lm.cfg_dropout
        lm.__class__ = LMModel
        dropout = ClassifierFreeGuidanceDropout(p=recording.p)
        dropout.rng.set_state(recording.rng.get_state())
        lm.cfg_dropout = dropout
        return lm

    stock = stock_builders.get_lm_model
    stock_builders.get_lm_model = build
    try:
        yield
    finally:
        stock_builders.get_lm_model = stock


# RR variants timed on CFG steps beside the default RR solver, each a config switch (rr/default.yaml).
CFG_VARIANTS: tp.Dict[str, tp.List[str]] = {
    # A caption's first sight (the first epoch): no cache, so RR encodes the batch's captions.
    'rr_cold': ['rr.text_cache=0'],
    # Before the CFG-step optimisations: no cache, and the nulled captions go through the encoder as in stock.
    'rr_before': ['rr.text_cache=0', 'rr.skip_nulled_text_pass=false'],
}


def build_solvers(overrides: tp.List[str], variants: tp.Sequence[str] = ()) -> tp.Tuple[tp.Any, ...]:
    """Build the stock AudioGen solver, the RR one and the RR `variants` (`CFG_VARIANTS` names) from the
    same overrides, all with the stock model's weights.

    Must be called inside `xp.enter()` of `_compose(overrides)`; returns (stock, rr, *variants).
    """
    from .train import get_solver
    cfg = _compose(overrides).cfg.copy()
    cfg.solver = 'audiogen'
    torch.manual_seed(cfg.seed)
    with _stock_lm_with_local_text_encoder():
        stock = get_solver(cfg)
    solvers = [stock]
    for extra in [[]] + [CFG_VARIANTS[name] for name in variants]:
        cfg = _compose(overrides + extra).cfg
        torch.manual_seed(cfg.seed)
        solver = get_solver(cfg)
        solver.model.load_state_dict(stock.model.state_dict())
        solvers.append(solver)
    return tuple(solvers)


def _in_train_stage(solvers: tp.Sequence[tp.Any], fn: tp.Callable[[], tp.Any]) -> tp.Any:
    """Run `fn` with every solver in flashy's 'train' stage (stages nest, one per solver)."""
    if not solvers:
        return fn()
    result: tp.List[tp.Any] = []

    def inner():
        result.append(_in_train_stage(solvers[1:], fn))
        return {}

    solvers[0].run_stage('train', inner)
    return result[0]


# ----------------------------------------------------------------------------------------------
# Measurement primitives.

def _sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def _step(solver, batch) -> None:
    # idx >= 2: the stock step's CUDA synchronisation-point check (idx == 1) stays off.
    solver.run_step(2, batch, {})


@dataclass(frozen=True)
class Timing:
    """One timed call: wall seconds (`perf_counter`) and CPU seconds (`process_time`, all threads of this
    process); every time in the report is a median of these."""
    wall_s: float
    cpu_s: float


def timed(fn: tp.Callable[[], tp.Any], device: str) -> Timing:
    """Time one call (device synchronised before and after)."""
    _sync(device)
    begin, begin_cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return Timing(time.perf_counter() - begin, time.process_time() - begin_cpu)


def peak_memory(fn: tp.Callable[[], tp.Any], device: str) -> int:
    """Peak bytes allocated by torch during one call, above those held when it starts (see module doc)."""
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events: tp.List[tp.Tuple[int, int]] = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.typed[0] == _EventType.Allocation and node.typed[1].device.type == 'cpu':
            events.append((node.start_time_ns, node.typed[1].alloc_size))  # > 0 alloc, < 0 free
        stack.extend(node.children)
    current = peak = 0
    for _, size in sorted(events):
        current += size
        peak = max(peak, current)
    return peak


def alternate(fns: tp.Dict[str, tp.Callable[[], tp.Any]], rounds: int, warmup: int) -> tp.Dict[str, tp.List[tp.Any]]:
    """Call the measurements in a rotating order (A B, B A for two; A B C, B C A, C A B for three), so
    that each comes first, second... equally often; drop the first `warmup` rounds."""
    names = list(fns)
    out: tp.Dict[str, tp.List[tp.Any]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            value = fns[name]()
            if r >= warmup:
                out[name].append(value)
    return out


@dataclass(frozen=True)
class Comparison:
    """Something measured against stock in the same rounds (a time or a peak memory): medians and ratios.

    Attributes:
        stock (float): Median of stock's values.
        other (float): Median of the other's values.
        ratio (float): Median of the per-round ratios other / stock; each round's calls ran back to back,
            so this cancels slow drift of the machine.
        ratio_of_medians (float): other / stock.
        ratio_iqr (tuple of float): First and third quartiles of the per-round ratios.
    """
    stock: float
    other: float
    ratio: float
    ratio_of_medians: float
    ratio_iqr: tp.Tuple[float, float]


def compare(stock: tp.List[float], other: tp.List[float]) -> Comparison:
    """Compare the values of the same rounds (round i of `other` against round i of `stock`)."""
    per_round = [o / s for o, s in zip(other, stock, strict=True)]
    return Comparison(statistics.median(stock), statistics.median(other), statistics.median(per_round),
                      statistics.median(other) / statistics.median(stock), _quartiles(per_round))


def _quartiles(values: tp.List[float]) -> tp.Tuple[float, float]:
    """First and third quartiles (both the value itself for a single value): the spread of the noise."""
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method='inclusive')
    return q[0], q[2]


# ----------------------------------------------------------------------------------------------
# The three benchmarks.

def bench_steps(size: str, data_dir: Path, compression_checkpoint: str, args) -> tp.List[dict]:
    """Stock vs RR `run_step` on CFG-dropped and normal steps, for one LM size."""
    from .modules.text import text_representation
    lm = SIZES[size]
    overrides = [
        'solver=rr_audiogen/tiny', f'compression_model_checkpoint={compression_checkpoint}',
        *datasource_overrides(data_dir),
        f'device={args.device}', f'num_threads={args.threads}',
        f'transformer_lm.dim={lm["dim"]}', f'transformer_lm.num_heads={lm["num_heads"]}',
        f'transformer_lm.num_layers={lm["num_layers"]}', f'transformer_lm.card={lm["card"]}',
        f'dataset.batch_size={args.batch_size}', f'dataset.segment_duration={args.duration}',
        f'rr.weight={args.weight}',
    ]
    if args.autocast:
        overrides += ['autocast=true', f'autocast_dtype={args.autocast}']
    if args.device == 'cuda':
        overrides += ['transformer_lm.memory_efficient=true']
    xp = _compose(overrides)
    rows = []
    with xp.enter():
        variants = ['rr_cold'] + (['rr_before'] if args.before_after else [])
        stock, rr, *variant_solvers = build_solvers(overrides, variants)
        torch.set_num_threads(args.threads)
        batch = next(iter(stock.dataloaders['train']))
        audio, infos = batch
        n_tokens = audio.shape[0] * round(audio.shape[-1] / stock.compression_model.sample_rate
                                          * stock.compression_model.frame_rate) * stock.compression_model.num_codebooks
        n_params = sum(p.numel() for p in stock.model.parameters() if p.requires_grad)
        solvers = {'stock': stock, 'rr': rr}
        # The stock solver's conditioner: the RR one skips the nulled pass this measures.
        conditioner = stock.model.condition_provider.conditioners[rr.cfg.rr.condition]
        captions = [info.to_condition_attributes().text.get(rr.cfg.rr.condition) for info in infos]

        def measure():
            for phase, p in PHASES:
                for solver in solvers.values():
                    solver.model.cfg_dropout.p = p
                    solver.model.train()
                logger.info("bench %s/%s: timing %d rounds (+%d warm-up)", size, phase, args.rounds, args.warmup)
                steps = {name: (lambda s=s: _step(s, batch)) for name, s in solvers.items()}
                if phase == 'cfg':
                    # RR variants in the same rounds (config switches, `CFG_VARIANTS`): captions not cached
                    # yet, and (--before-after) without the CFG-step optimisations at all.
                    for name, solver in zip(variants, variant_solvers, strict=True):
                        solver.model.cfg_dropout.p = p
                        solver.model.train()
                        steps[name] = lambda s=solver: _step(s, batch)
                timings = alternate({name: (lambda f=f: timed(f, args.device)) for name, f in steps.items()},
                                    args.rounds, args.warmup)
                times = {name: [t.wall_s for t in values] for name, values in timings.items()}
                cpu_times = {name: [t.cpu_s for t in values] for name, values in timings.items()}
                mems = alternate({name: (lambda s=s: float(peak_memory(lambda: _step(s, batch), args.device)))
                                  for name, s in solvers.items()}, args.memory_rounds, 1)
                t = compare(times['stock'], times['rr'])
                c = compare(cpu_times['stock'], cpu_times['rr'])
                m = compare(mems['stock'], mems['rr'])
                row = {
                    'size': size, 'steps': phase, 'cfg_dropout_p': p, 'lm_params': n_params,
                    'batch_size': int(audio.shape[0]), 'tokens_per_step': n_tokens,
                    'stock_s': t.stock, 'rr_s': t.other, 'time_ratio': t.ratio,
                    'time_ratio_of_medians': t.ratio_of_medians, 'time_ratio_iqr': t.ratio_iqr,
                    'stock_tokens_per_s': n_tokens / t.stock, 'rr_tokens_per_s': n_tokens / t.other,
                    'stock_peak_bytes': int(m.stock), 'rr_peak_bytes': int(m.other),
                    'memory_ratio': m.ratio_of_medians,
                    'stock_cpu_s': c.stock, 'rr_cpu_s': c.other, 'cpu_time_ratio': c.ratio,
                    'cpu_time_ratio_iqr': c.ratio_iqr,
                    'stock_times_s': times['stock'], 'rr_times_s': times['rr'],
                    'stock_cpu_times_s': cpu_times['stock'], 'rr_cpu_times_s': cpu_times['rr'],
                }
                for name in ('rr_cold', 'rr_before'):
                    if name not in timings:
                        continue
                    tb, cb = compare(times['stock'], times[name]), compare(cpu_times['stock'], cpu_times[name])
                    suffix = name[len('rr_'):]
                    row.update({f'{name}_s': tb.other, f'time_ratio_{suffix}': tb.ratio,
                                f'time_ratio_{suffix}_iqr': tb.ratio_iqr, f'{name}_cpu_s': cb.other,
                                f'cpu_time_ratio_{suffix}': cb.ratio, f'cpu_time_ratio_{suffix}_iqr': cb.ratio_iqr,
                                f'{name}_times_s': times[name], f'{name}_cpu_times_s': cpu_times[name]})
                if phase == 'cfg':
                    # What RR cannot avoid on these steps: one text-encoder pass over the original captions;
                    # and what stock spends instead: one over the nulled (empty) captions, which RR skips.
                    nulled = conditioner.tokenize([None] * len(captions))
                    repeats = max(3, args.rounds // 2)
                    encode = [timed(lambda: text_representation(conditioner, captions), args.device)
                              for _ in range(repeats)]
                    with torch.no_grad():
                        encode_nulled = [timed(functools.partial(type(conditioner).forward, conditioner, nulled),
                                               args.device) for _ in range(repeats)]
                    for key, values in [('text_encoder_pass', encode), ('nulled_text_encoder_pass', encode_nulled)]:
                        row[f'{key}_s'] = statistics.median(t.wall_s for t in values)
                        row[f'{key}_cpu_s'] = statistics.median(t.cpu_s for t in values)
                rows.append(row)

        _in_train_stage(list(solvers.values()) + variant_solvers, measure)
    return rows


def bench_caption_cache(data_dir: Path, compression_checkpoint: str, args) -> tp.List[dict]:
    """The caption cache over two epochs with AudioGen's mixing on (tiny LM): hit rate and what it keeps."""
    lm = SIZES['tiny']
    updates = 3 if args.tiny else 8
    loaded = 2 * args.batch_size  # mix_p = 0.5 of them reach the LM
    overrides = [
        'solver=rr_audiogen/tiny', f'compression_model_checkpoint={compression_checkpoint}',
        *datasource_overrides(data_dir), f'device={args.device}', f'num_threads={args.threads}',
        f'transformer_lm.card={lm["card"]}', f'dataset.batch_size={loaded}',
        f'dataset.segment_duration={args.duration}',
        '+dataset.train.aug_p=0.5', '+dataset.train.mix_p=0.5', f'dataset.train.num_samples={loaded * updates}',
        f'optim.updates_per_epoch={updates}', 'classifier_free_guidance.training_dropout=0.5',
        f'rr.weight={args.weight}',
    ]
    from .train import get_solver
    xp = _compose(overrides)
    rows = []
    with xp.enter():
        # Stock's AudioDataset draws its shuffled clips with Python's `random` and the mixing its SNRs with
        # NumPy's: seeded too, so that which captions reach the LM, and what the cache keeps, is the same on
        # every run (unseeded, two runs saw 22 and 17 distinct captions in epoch 1, and one CI run failed the
        # test's check that each epoch caches some but not all of them).
        random.seed(xp.cfg.seed)
        np.random.seed(xp.cfg.seed)
        torch.manual_seed(xp.cfg.seed)
        solver = get_solver(xp.cfg)
        torch.set_num_threads(args.threads)
        cache = solver.rr_lm.condition_provider.conditioners[solver.cfg.rr.condition].caption_cache
        seen: tp.Set[str] = set()
        stock_run_step = solver.run_step

        def run_step(idx, batch, metrics):
            seen.update(info.description for info in batch[-1])
            return stock_run_step(idx, batch, metrics)
        solver.run_step = run_step  # counts the captions that reach the LM; the step itself is the solver's
        for epoch in (1, 2):
            logger.info("bench caption cache: epoch %d (%d updates, mixing on)", epoch, updates)
            metrics = solver.run_stage('train', solver.train)
            solver.commit(save_checkpoints=False)  # the next stage is the next epoch's
            rows.append({'epoch': epoch, 'updates': updates, 'lm_batch_size': loaded // 2,
                         'rr_text_cached': metrics.get('rr_text_cached'), 'rr_steps': metrics.get('rr_steps'),
                         'cached_captions': len(cache), 'distinct_captions_seen': len(seen)})
    return rows


def bench_rr_loss(batches: tp.Sequence[int], widths: tp.Sequence[int], rounds: int, device: str) -> tp.List[dict]:
    """`rr_loss` forward + backward alone on pooled [B, w] text and audio representations."""
    from .regularization import rr_loss

    def forward_backward(text: torch.Tensor, audio: torch.Tensor) -> None:
        rr_loss(text, audio).backward()
        audio.grad = None  # every call starts from no gradient

    rows = []
    generator = torch.Generator().manual_seed(0)
    for batch in batches:
        for width in widths:
            text = torch.randn(batch, width, generator=generator).to(device)
            audio = torch.randn(batch, width, generator=generator).to(device).requires_grad_()
            once = functools.partial(forward_backward, text, audio)
            once()  # warm-up
            times = [timed(once, device).wall_s for _ in range(rounds)]
            rows.append({'batch_size': batch, 'width': width, 'time_s': statistics.median(times),
                         'peak_bytes': peak_memory(once, device)})
    return rows


# ----------------------------------------------------------------------------------------------
# Report.

def _mb(n: float) -> str:
    return f"{n / 2**20:.2f}"


def markdown(result: dict) -> str:
    """The report as markdown tables."""
    meta = result['meta']
    cpu = meta['device'] == 'cpu'
    lines = [
        f"# RR vs stock training step ({meta['date']})",
        "",
        f"`{meta['command']}` on {meta['device_name']}, torch {meta['torch']}, {meta['threads']} thread(s); "
        f"{meta['rounds']} timed rounds after {meta['warmup']} warm-up, alternating; RR weight λ = "
        f"{meta['rr_weight']}; batch {meta['batch_size']} x {meta['duration']} s; load average at the start "
        f"{meta['load_average']}. GPU: {meta['gpu']}.",
        "",
        "Ratios: median over rounds of RR/stock, each round's two steps back to back [quartiles]. Wall: "
        "`perf_counter`" + ("; CPU: `process_time` of this process, which other processes' load inflates far "
                            "less (on a shared machine the wall ratio carries scheduler noise)" if cpu else "")
        + f". Peak memory: {meta['memory_measure']}.",
        "",
        "| LM | steps | stock s/step | RR s/step | RR/stock wall | " + ("RR/stock CPU | " if cpu else "")
        + "stock tokens/s | RR tokens/s | stock peak MiB | RR peak MiB | RR/stock memory |",
        "|---|---|---|---|---|" + ("---|" if cpu else "") + "---|---|---|---|---|",
    ]
    for row in result['steps']:
        ratio = f"**{row['time_ratio']:.3f}** [{row['time_ratio_iqr'][0]:.3f}, {row['time_ratio_iqr'][1]:.3f}] | "
        if cpu:
            ratio += (f"**{row['cpu_time_ratio']:.3f}** [{row['cpu_time_ratio_iqr'][0]:.3f}, "
                      f"{row['cpu_time_ratio_iqr'][1]:.3f}] | ")
        lines.append(
            f"| {row['size']} ({row['lm_params'] / 1e6:.2f} M) | {row['steps']} (p={row['cfg_dropout_p']:g}) "
            f"| {row['stock_s']:.4f} | {row['rr_s']:.4f} | {ratio}"
            f"{row['stock_tokens_per_s']:.0f} | {row['rr_tokens_per_s']:.0f} "
            f"| {_mb(row['stock_peak_bytes'])} | {_mb(row['rr_peak_bytes'])} | **{row['memory_ratio']:.3f}** |")
    variants = [(key, title) for key, title in [
        ('cold', "captions not cached yet (a caption's first sight: RR encodes them, stock encodes the nulled ones)"),
        ('before', "before the CFG-step optimisations (nulled captions encoded too, no caption cache)")]
        if any(f'time_ratio_{key}' in row for row in result['steps'])]
    if variants:
        lines += ["", "CFG steps, the same RR solver timed in the same rounds as stock and the row above (RR/stock, "
                  "[quartiles]): the row above has the batch's captions cached (every epoch after the first).", ""]
        for key, title in variants:
            lines.append(f"- **{title}**:")
            for row in result['steps']:
                if f'time_ratio_{key}' not in row:
                    continue
                text = (f"wall {row[f'time_ratio_{key}']:.3f} [{row[f'time_ratio_{key}_iqr'][0]:.3f}, "
                        f"{row[f'time_ratio_{key}_iqr'][1]:.3f}]")
                if cpu:
                    text += (f", CPU {row[f'cpu_time_ratio_{key}']:.3f} [{row[f'cpu_time_ratio_{key}_iqr'][0]:.3f}, "
                             f"{row[f'cpu_time_ratio_{key}_iqr'][1]:.3f}]")
                lines.append(f"  - {row['size']}: {text}")
    encoder_rows = [row for row in result['steps'] if 'text_encoder_pass_s' in row]
    if encoder_rows:
        unit = 'CPU s' if cpu else 's'
        suffix = '_cpu_s' if cpu else '_s'
        step_key = 'cpu_s' if cpu else 's'
        lines += ["", "What an uncached CFG step adds: RR encodes the batch's original captions (T of eq. 3); stock "
                  "encodes the nulled ones, which RR skips (their output is all-masked):", ""]
        for row in encoder_rows:
            original, nulled = row['text_encoder_pass' + suffix], row['nulled_text_encoder_pass' + suffix]
            stock = row['stock_' + step_key]
            line = (f"- {row['size']}: original captions {original:.4f} {unit} ({original / stock:.1%} of the "
                    f"stock CFG step), nulled captions {nulled:.4f} {unit}; the difference alone predicts "
                    f"RR/stock = {1 + (original - nulled) / stock:.3f}")
            lines.append(line)
    if result.get('caption_cache'):
        lines += ["", "Caption cache under AudioGen's mixing (tiny LM; aug_p = mix_p = 0.5, CFG p = 0.5): only the "
                  "dataset's captions are kept, mixed ones are one-off concatenations:", "",
                  "| epoch | updates | rr_text_cached | RR steps | captions cached | distinct captions seen |",
                  "|---|---|---|---|---|---|"]
        for row in result['caption_cache']:
            cached = 'n/a' if row['rr_text_cached'] is None else f"{row['rr_text_cached']:.3f}"
            rr_steps = 'n/a' if row['rr_steps'] is None else f"{row['rr_steps']:.2f}"
            lines.append(f"| {row['epoch']} | {row['updates']} | {cached} | {rr_steps} | {row['cached_captions']} "
                         f"| {row['distinct_captions_seen']} |")
    lines += ["", "L_rr alone (`rr_loss` forward + backward on pooled [B, w] inputs):", "",
              "| B \\ width | " + " | ".join(str(w) for w in result['rr_loss_widths']) + " |",
              "|---|" + "---|" * len(result['rr_loss_widths'])]
    for batch in result['rr_loss_batches']:
        cells = []
        for width in result['rr_loss_widths']:
            row = next(r for r in result['rr_loss'] if r['batch_size'] == batch and r['width'] == width)
            cells.append(f"{row['time_s'] * 1e3:.3f} ms, {_mb(row['peak_bytes'])} MiB")
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: tp.Optional[tp.List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m rr_audiocraft.bench', description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--tiny', action='store_true',
                        help="smoke run: tiny LM, 2 rounds, L_rr at B in (8, 64) x 384 (for the test suite)")
    parser.add_argument('--sizes', default='tiny,small', help=f"comma-separated LM sizes among {list(SIZES)}")
    parser.add_argument('--rounds', type=int, default=15, help="timed rounds per phase (each times both solvers)")
    parser.add_argument('--warmup', type=int, default=3, help="untimed rounds first")
    parser.add_argument('--memory-rounds', type=int, default=3, help="profiled rounds per phase (memory)")
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--duration', type=float, default=4.0, help="segment seconds")
    parser.add_argument('--weight', type=float, default=3.0, help="RR λ (the paper's best: 3)")
    parser.add_argument('--threads', type=int, default=1,
                        help="torch threads; 1 by default: on a shared machine, 2 OpenMP threads per process "
                             "stall each other (the configs use 2 on an idle 2-core machine)")
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--autocast', default=None, choices=['bfloat16', 'float16'])
    parser.add_argument('--compression-checkpoint', default=None,
                        help="a trained compression model (//sig/SIG or path) instead of the k-means-initialised "
                             "one; its codebook size must be the sizes' card (tiny 256, small 1024, recipe 2048)")
    parser.add_argument('--before-after', action='store_true',
                        help="on CFG steps, also time RR as before the optimisation (nulled captions through the "
                             "text encoder, as in stock), in the same rounds: a paired before/after")
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT, help="folder for NAME.json and NAME.md")
    parser.add_argument('--name', default='rr_bench', help="file name stem of the results")
    args = parser.parse_args(argv)
    if args.tiny:
        args.sizes, args.rounds, args.warmup, args.memory_rounds = 'tiny', 2, 1, 1
        args.rr_loss_batches, args.rr_loss_widths, args.rr_loss_rounds = (8, 64), (384,), 2
        args.duration = 2.0
    else:
        args.rr_loss_batches, args.rr_loss_widths, args.rr_loss_rounds = RR_LOSS_BATCHES, RR_LOSS_WIDTHS, 7
    args.size_list = [s.strip() for s in args.sizes.split(',') if s.strip()]
    unknown = [s for s in args.size_list if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose among {list(SIZES)}")
    if args.rounds < 1 or args.warmup < 0 or args.memory_rounds < 1:
        parser.error("--rounds and --memory-rounds must be >= 1, --warmup >= 0")
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return args


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark described by `args`; write and return the results."""
    load_average = ' '.join(f'{x:.2f}' for x in os.getloadavg()) if hasattr(os, 'getloadavg') else 'n/a'
    workdir = Path(tempfile.mkdtemp(prefix='rr_bench_'))
    # Throwaway XP folders (solvers create one on start-up) go to the work folder, not to outputs/.
    try:
        with override_dora_dir(workdir / 'dora'):
            data_dir = workdir / 'data'
            # Enough train clips for a batch; the other splits only need to exist.
            generate_dataset(data_dir, num_clips=max(16, 2 * args.batch_size), seed=0,
                             duration=max(args.duration, 2.0))
            steps = []
            for size in args.size_list:
                checkpoint = args.compression_checkpoint
                if checkpoint is None:
                    checkpoint = str(build_compression_checkpoint(data_dir, SIZES[size]['card'],
                                                                  workdir / f'encodec_{SIZES[size]["card"]}.th'))
                logger.info("bench: LM size %s", size)
                steps += bench_steps(size, data_dir, checkpoint, args)
            cache_checkpoint = args.compression_checkpoint or str(workdir / f'encodec_{SIZES["tiny"]["card"]}.th')
            if not Path(cache_checkpoint).exists() and args.compression_checkpoint is None:
                build_compression_checkpoint(data_dir, SIZES['tiny']['card'], Path(cache_checkpoint))
            cache_rows = bench_caption_cache(data_dir, cache_checkpoint, args)
            rr_rows = bench_rr_loss(args.rr_loss_batches, args.rr_loss_widths, args.rr_loss_rounds, args.device)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    device_name = (torch.cuda.get_device_name() if args.device == 'cuda'
                   else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores visible)")
    result = {
        'meta': {
            'date': datetime.datetime.now().isoformat(timespec='seconds'),
            'command': 'python -m rr_audiocraft.bench ' + ' '.join(sys.argv[1:]),
            'torch': torch.__version__, 'python': platform.python_version(),
            'device': args.device, 'device_name': device_name, 'threads': args.threads,
            'gpu': torch.cuda.get_device_name() if torch.cuda.is_available() else 'none available in this run',
            'rounds': args.rounds, 'warmup': args.warmup, 'memory_rounds': args.memory_rounds,
            'rr_weight': args.weight, 'batch_size': args.batch_size, 'duration': args.duration,
            'autocast': args.autocast, 'memory_measure': MEMORY_NOTE[args.device],
            'load_average': load_average,
        },
        'steps': steps,
        'rr_loss_batches': list(args.rr_loss_batches), 'rr_loss_widths': list(args.rr_loss_widths),
        'rr_loss': rr_rows,
        'caption_cache': cache_rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f'{args.name}.json').write_text(json.dumps(result, indent=2) + '\n')
    (args.out / f'{args.name}.md').write_text(markdown(result))
    return result


def main(argv: tp.Optional[tp.List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(levelname)s %(message)s')
    # The solvers log every stage; keep the console to the bench's own progress.
    for name in ('flashy', 'audiocraft', 'dora', 'rr_audiocraft.solvers'):
        logging.getLogger(name).setLevel(logging.WARNING)
    result = run(args)
    print(markdown(result))
    print(f"written: {args.out / (args.name + '.json')} and {args.out / (args.name + '.md')}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
