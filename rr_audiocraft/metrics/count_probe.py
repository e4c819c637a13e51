"""Likelihood count probe: does an LM's likelihood prefer the number of events its caption names?

A generation-free check of count adherence, in seconds instead of a generate-and-judge pass. Each clip
of a benchmark split is scored by the LM, teacher-forced, under its caption rewritten for every count
(`synth.count_variants`: same template and words, only the count phrase differs):

    ce_k(clip) = mean over valid token positions of −log p(codes of the clip | caption with count k)

An LM whose likelihood uses the count ranks the true count first; one that ignores it ranks the counts
by how it reacts to the words alone. Reported per LM:

- `acc`: fraction of clips whose true count has the lowest ce, beside `majority` (the share of the
  most frequent count: an LM that always names one count reaches at most that),
- `gain`: mean over clips of (mean ce of the other counts − ce of the true count), nats per token, with
  a 95 % bootstrap interval over clips: 0 when the likelihood does not depend on the count,
- `confusion`: [true count − 1][count with the lowest ce − 1],
- `caption_scale`: the same gain and acc with two other clips' captions in place of the other counts
  (clip i against the captions of clips i + n/3 and i + 2n/3): how much the likelihood depends on the
  caption at all, the scale the count gain is read against.

All counts of a clip are scored in one batch: stock text conditioners pad a batch's captions with zero
embeddings that stock cross-attention still attends (no key mask), so a ce depends on the longest
caption of its batch (by up to 0.016 nats per token for a tiny test LM), and only the ce's of one batch
compare exactly.

CLI::

    python -m rr_audiocraft.metrics.count_probe //sig/SIG [//sig/SIG2 ...] --data data/synth-seed0-2000clips \\
        [--split valid] [--clips 200] [--json out.json]
"""
import argparse
import json
from pathlib import Path
import sys
import typing as tp

import numpy as np
import torch

from ..data import synth
from ..environment import configure

CLIPS_PER_BATCH = 16  # x MAX_COUNT caption variants per forward pass


def count_cross_entropies(compression_model: tp.Any, lm: tp.Any, wavs: tp.Sequence[np.ndarray], sample_rate: int,
                          variants: tp.Sequence[tp.Mapping[int, str]]) -> np.ndarray:
    """Teacher-forced ce of each clip under each count's caption.

    Args:
        compression_model: the codec the LM was trained on (eval mode).
        lm: an AudioCraft LMModel (eval mode), conditioned on text attribute `description`.
        wavs: mono waveforms at `sample_rate`, one per clip (same length).
        variants: per clip, dict count -> caption (`synth.count_variants`).
    Returns:
        np.ndarray: [num_clips, MAX_COUNT] ce in nats per token, column k-1 for count k.
    """
    from audiocraft.data.audio_utils import convert_audio
    from audiocraft.modules.conditioners import ConditioningAttributes
    if len(wavs) != len(variants):
        raise ValueError(f"count_cross_entropies: {len(wavs)} clips but {len(variants)} caption sets.")
    counts = list(range(1, synth.MAX_COUNT + 1))
    device = next(lm.parameters()).device
    ces = []
    for start in range(0, len(wavs), CLIPS_PER_BATCH):
        batch = torch.stack([torch.as_tensor(np.asarray(wav, dtype=np.float32))
                             for wav in wavs[start:start + CLIPS_PER_BATCH]])[:, None]
        audio = convert_audio(batch, sample_rate, compression_model.sample_rate, compression_model.channels)
        with torch.no_grad():
            codes, _ = compression_model.encode(audio.to(device))  # [B, K, T]
            codes = codes.repeat_interleave(len(counts), dim=0)  # clip b, count k at row b * len(counts) + k - 1
            attributes = [ConditioningAttributes(text={'description': clip[count]})
                          for clip in variants[start:start + CLIPS_PER_BATCH] for count in counts]
            output = lm.compute_predictions(codes, attributes)
            nll = -output.logits.log_softmax(-1).gather(-1, codes[..., None])[..., 0]  # [B * counts, K, T]
            # Invalid (delay-pattern) positions hold NaN logits: zero them rather than multiply by the mask.
            nll = torch.where(output.mask, nll, torch.zeros_like(nll))
            ce = nll.sum((1, 2)) / output.mask.sum((1, 2))
        ces.append(ce.view(-1, len(counts)).cpu().numpy())
    result = np.concatenate(ces).astype(np.float64)
    if not np.isfinite(result).all():
        raise FloatingPointError("count_cross_entropies: the LM gave a non-finite ce; check its checkpoint.")
    return result


def summarize(ce: np.ndarray, true_counts: tp.Sequence[int], num_resamples: int = 10_000,
              seed: int = 0) -> tp.Dict[str, tp.Any]:
    """`acc`, `majority`, `gain` {'mean', 'ci95'} and `confusion` of a [num_clips, MAX_COUNT] ce table."""
    ce = np.asarray(ce, dtype=np.float64)
    truth = np.asarray(true_counts, dtype=np.int64)
    if ce.ndim != 2 or ce.shape[0] != truth.shape[0] or ce.shape[0] == 0:
        raise ValueError(f"summarize: ce of shape {ce.shape} for {truth.shape[0]} counts; want [num_clips, counts].")
    if truth.min() < 1 or truth.max() > ce.shape[1]:
        raise ValueError(f"summarize: counts must lie in 1..{ce.shape[1]}, got {sorted(set(truth.tolist()))}.")
    rows = np.arange(len(truth))
    true_ce = ce[rows, truth - 1]
    other_ce = (ce.sum(1) - true_ce) / (ce.shape[1] - 1)
    gain = other_ce - true_ce
    chosen = ce.argmin(1) + 1
    confusion = np.zeros((ce.shape[1], ce.shape[1]), dtype=np.int64)
    np.add.at(confusion, (truth - 1, chosen - 1), 1)
    resampled = gain[np.random.default_rng(seed).integers(0, len(gain), (num_resamples, len(gain)))].mean(1)
    low, high = np.percentile(resampled, [2.5, 97.5])
    return {'clips': int(len(truth)), 'acc': float((chosen == truth).mean()),
            'majority': float(np.bincount(truth).max() / len(truth)),
            'gain': {'mean': float(gain.mean()), 'ci95': [float(low), float(high)]},
            'confusion': confusion.tolist()}


def load_probe_clips(data: tp.Union[str, Path], split: str = 'valid', num_clips: tp.Optional[int] = None
                     ) -> tp.Tuple[tp.List[np.ndarray], tp.List[dict], int, tp.List[tp.Dict[int, str]]]:
    """The split's first clips, their sidecars, sample rate and count variants, checked against each other
    (read once, then scored by every LM)."""
    variants = synth.count_variants(data, split, num_clips)
    if len(variants) < 3:
        raise ValueError(f"The count probe needs at least 3 clips (the caption scale swaps in other clips' "
                         f"captions); got {len(variants)}.")
    wavs, infos, sample_rate = synth.load_clips(Path(data) / 'egs' / split)
    wavs, infos = wavs[:len(variants)], infos[:len(variants)]
    for info, clip in zip(infos, variants, strict=True):
        if clip.get(info['count']) != info['description']:
            raise synth.BenchmarkError(f"The {split} manifest of {data} is not in the order its clips were written "
                                       f"({info['name']}: {info['description']!r}); regenerate the benchmark.")
    return wavs, infos, sample_rate, variants


def probe(name: str, clips: tp.Tuple[tp.List[np.ndarray], tp.List[dict], int, tp.List[tp.Dict[int, str]]],
          device: str = 'cpu') -> tp.Dict[str, tp.Any]:
    """Runs the probe of one LM (`//sig/SIG`, an export, a checkpoint: `models.loaders.load_models`) on
    `load_probe_clips`' clips."""
    from ..models.loaders import load_models
    wavs, infos, sample_rate, variants = clips
    compression_model, lm = load_models(name, device=device)
    ce = count_cross_entropies(compression_model, lm, wavs, sample_rate, variants)
    captions, num = [info['description'] for info in infos], len(infos)
    # Column k - 1 of count k, so the own caption (column 0) is "count 1" for summarize.
    swapped = [{1: captions[i], 2: captions[(i + num // 3) % num], 3: captions[(i + 2 * num // 3) % num]}
               for i in range(num)]
    scale = summarize(count_cross_entropies(compression_model, lm, wavs, sample_rate, swapped), [1] * num)
    return {'model': name, **summarize(ce, [info['count'] for info in infos]),
            'caption_scale': {'acc': scale['acc'], 'gain': scale['gain']}}


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m rr_audiocraft.metrics.count_probe',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('models', nargs='+', help="LMs: //sig/SIG, an exported folder or a checkpoint")
    parser.add_argument('--data', type=Path, required=True,
                        help="benchmark folder (python -m rr_audiocraft.data.synth)")
    parser.add_argument('--split', choices=synth.SPLITS, default='valid', help="default: valid (never tune on test)")
    parser.add_argument('--clips', type=int, default=None, help="the split's first N clips (default: all)")
    parser.add_argument('--json', type=Path, default=None, help="also write the results as a JSON list")
    args = parser.parse_args(argv)
    configure()
    from ..models.loaders import resolve_checkpoint
    try:  # every name and the benchmark checked before the first LM is scored
        for name in args.models:
            resolve_checkpoint(name)
        clips = load_probe_clips(args.data, args.split, args.clips)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    results = []
    for name in args.models:
        result = {**probe(name, clips), 'data': str(args.data), 'split': args.split}
        gain, scale = result['gain'], result['caption_scale']
        print(f"{name}: count acc {result['acc']:.3f} (majority {result['majority']:.3f}), ce gain of the true count "
              f"{gain['mean']:+.4f} [{gain['ci95'][0]:+.4f}, {gain['ci95'][1]:+.4f}] nats/token over "
              f"{result['clips']} {args.split} clips; confusion {result['confusion']}; other clips' captions: "
              f"acc {scale['acc']:.3f}, gain {scale['gain']['mean']:+.4f} [{scale['gain']['ci95'][0]:+.4f}, "
              f"{scale['gain']['ci95'][1]:+.4f}]", flush=True)
        results.append(result)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
