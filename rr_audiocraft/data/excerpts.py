"""Salient excerpts of benchmark clips: the training audio of the embedded EnCodec.

The benchmark's 4 s clips are sparse: most of a random 1 s crop is the faint noise floor between
events. AudioCraft's compression solver takes random crops, and its RVQ initialises its codebooks
by k-means on the first batch, so on such crops a small codec learns to output near-silence (the
L2-optimal answer) and stays there. Codecs that converge fast train on loud excerpts instead (DAC
picks crops above -40 dB loudness; RAVE drops silence). Here the sidecars say where every event
is, so each excerpt is cut around one event onset (or, for a tenth of them, anywhere: the codec
must also reproduce quiet stretches), and written at the codec's sample rate, band-limited first.
Event excerpts are brought to a random level around the benchmark's own (RMS log-uniform in
`rms_range`, -26 to -14 dBFS): the stock solver's L2 is on the raw waveform, where the loudest
excerpts would otherwise outweigh the quiet events tenfold (DAC normalises its crops to -16 dB),
and AudioCraft's LMs need a codec without `renormalize` (their tokens carry no scale), which must
then encode every level it will meet.

The stock solver then crops `dataset.segment_duration` out of each excerpt at random (with
`dataset.min_segment_ratio=1` never past its end), which jitters the event's position for free.

Layout (what `dora ... datasource.train=OUT/egs/train` reads)::

    OUT/{train,valid}/000000.wav    PCM16 mono at `sample_rate`
    OUT/egs/{train,valid}/data.jsonl

CLI::

    python -m rr_audiocraft.data.excerpts BENCHMARK_ROOT OUT [--seconds 1.5] [--sample-rate 8000]
"""
import argparse
import json
from pathlib import Path
import sys
import typing as tp

import numpy as np
import scipy.signal
import soundfile

from .synth import load_clips

EXCERPT_SPLITS = ('train', 'valid')  # never the test split: the codec must not hear held-out pairs


def excerpt_starts(events: tp.Sequence[tp.Mapping[str, tp.Any]], clip_seconds: float, seconds: float,
                   rng: np.random.Generator, quiet_fraction: float) -> tp.List[tp.Tuple[float, bool]]:
    """Start times (s) of the excerpts of one clip, each with whether it is cut around an event:
    one per event, its onset 0.1-0.5 s in, plus a random window with probability `quiet_fraction`.
    Every window lies inside the clip."""
    latest = max(0., clip_seconds - seconds)
    starts = [(float(np.clip(event['onset'] - rng.uniform(0.1, 0.5), 0., latest)), True) for event in events]
    if rng.random() < quiet_fraction:
        starts.append((float(rng.uniform(0., latest)), False))
    return starts


def write_excerpts(root: tp.Union[str, Path], out: tp.Union[str, Path], seconds: float = 1.5,
                   sample_rate: int = 8000, quiet_fraction: float = 0.1,
                   rms_range: tp.Tuple[float, float] = (0.05, 0.2), seed: int = 0) -> tp.Dict[str, int]:
    """Cuts salient excerpts out of the train and valid splits of a benchmark written by
    `rr_audiocraft.data.synth.generate_dataset`.

    Args:
        root: the benchmark root (holding ``egs/{train,valid}``).
        out: output root; written as described in the module docstring.
        seconds: excerpt length.
        sample_rate: rate of the written excerpts (a divisor of the benchmark's; resampled with an
            anti-aliasing polyphase filter).
        quiet_fraction: probability per clip of one extra excerpt at a random place (kept at its level).
        rms_range: range of the event excerpts' RMS (log-uniform; lowered where the peak would clip).
        seed: seed of the excerpt positions.
    Returns:
        dict: split -> number of excerpts written.
    """
    root, out = Path(root), Path(out).absolute()
    counts = {}
    for split_index, split in enumerate(EXCERPT_SPLITS):
        wavs, infos, source_rate = load_clips(root / 'egs' / split)
        if source_rate % sample_rate:
            raise ValueError(f"sample_rate={sample_rate} must divide the benchmark's {source_rate} Hz.")
        if any('events' not in info for info in infos):
            raise ValueError(f"Clips in {root / 'egs' / split} lack the 'events' of rr_audiocraft.data.synth sidecars.")
        rng = np.random.default_rng([seed, split_index])
        split_dir = out / split
        split_dir.mkdir(parents=True, exist_ok=True)
        length = int(round(seconds * sample_rate))
        lines = []
        for wav, info in zip(wavs, infos, strict=True):
            low_rate = scipy.signal.resample_poly(wav, 1, source_rate // sample_rate).astype(np.float32)
            clip_seconds = len(low_rate) / sample_rate
            if clip_seconds < seconds:
                raise ValueError(f"Clips of {clip_seconds:.2f} s are shorter than the excerpts ({seconds} s).")
            for start, around_event in excerpt_starts(info['events'], clip_seconds, seconds, rng, quiet_fraction):
                begin = int(round(start * sample_rate))
                excerpt = low_rate[begin:begin + length]
                if around_event:
                    rms = float(np.sqrt(np.mean(excerpt ** 2))) + 1e-9
                    target = float(np.exp(rng.uniform(np.log(rms_range[0]), np.log(rms_range[1]))))
                    excerpt = excerpt * min(target / rms, 0.95 / (np.abs(excerpt).max() + 1e-9))
                path = split_dir / f'{len(lines):06d}.wav'
                soundfile.write(path, np.clip(excerpt, -1., 1.), sample_rate, subtype='PCM_16')
                lines.append(json.dumps({'path': str(path), 'duration': len(excerpt) / sample_rate,
                                         'sample_rate': sample_rate, 'amplitude': None, 'weight': None,
                                         'info_path': None}) + '\n')
        manifest = out / 'egs' / split / 'data.jsonl'
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(''.join(lines))
        counts[split] = len(lines)
    return counts


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m rr_audiocraft.data.excerpts', description=__doc__.split('\n')[0])
    parser.add_argument('root', type=Path, help="benchmark root written by rr_audiocraft.data.synth")
    parser.add_argument('out', type=Path, help="output root")
    parser.add_argument('--seconds', type=float, default=1.5)
    parser.add_argument('--sample-rate', type=int, default=8000)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    try:
        counts = write_excerpts(args.root, args.out, args.seconds, args.sample_rate, seed=args.seed)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    print(f"Wrote {counts} excerpts to {args.out}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
