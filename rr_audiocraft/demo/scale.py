"""The scale every table carries: the judge on the clean references, the ceiling (their codec round trips) and
the floor (the references against every other clip's caption)."""
import typing as tp

import numpy as np
import torch

from ..metrics.codec import codec_report, format_bands, round_trip_fn
from ..metrics.judge import score_predictions
from .progress import log

BAR = 0.9  # ceiling bar of count acc, source F1 and order acc
SCALE_KEYS = ('count_acc', 'count_slope', 'source_f1', 'order_acc', 'relation_acc')


def shuffled_floor(predictions: tp.Sequence[dict], truths: tp.Sequence[dict]) -> tp.Dict[str, tp.Any]:
    """The references scored against captions that are not theirs, over every such pairing.

    Clip i is scored against caption (i + s) mod N for every shift s = 1 .. N-1, so each of the N(N-1)
    (clip, other clip's caption) pairs counts once: the expected score of the references under a random
    reassignment of the captions. One random derangement would be a single draw of that, off by its
    sampling noise (about ±0.03 in count acc on 200 clips).

    Args:
        predictions: `Judge.predict` outputs on the N references.
        truths: their captions' ground truth, same order.
    Returns:
        dict: the judge metrics (`SCALE_KEYS`), `num_clips` (N) and `pairs` (N(N-1)); no per-clip outcomes.
    """
    num = len(truths)
    if num < 2:
        raise ValueError("The floor needs at least 2 test clips to score them against each other's captions.")
    shifts = range(1, num)
    scores = score_predictions([predictions[i] for _ in shifts for i in range(num)],
                               [truths[(i + shift) % num] for shift in shifts for i in range(num)])
    return {**{key: scores[key] for key in SCALE_KEYS}, 'num_clips': num, 'pairs': num * (num - 1)}


def scale_stage(judge: tp.Any, codec: tp.Any, wavs: tp.List[tp.Any], truths: tp.List[dict],
                sample_rate: int) -> tp.Dict[str, tp.Any]:
    """The scale every table carries: the judge on the clean test references (`judge_clean`), on
    their codec round trips (`ceiling`: no LM trained on the codec's tokens can do better) and on
    the clean references scored against every other clip's caption (`floor`, `shuffled_floor`)."""
    predictions = judge.predict(wavs, sample_rate)
    judge_clean = score_predictions(predictions, truths)
    floor = shuffled_floor(predictions, truths)
    batch = torch.stack([torch.as_tensor(np.asarray(wav, dtype=np.float32)) for wav in wavs])
    round_trips = round_trip_fn(codec, sample_rate)(batch)
    ceiling = judge.score(round_trips, truths, sample_rate)
    ceiling['codec'] = codec_report(codec, wavs, sample_rate)
    for name, metrics in (('judge on the clean test references', judge_clean),
                          ('ceiling (the references after the codec round trip)', ceiling),
                          ('floor (the references against every other clip\'s caption)', floor)):
        log('scale', f"{name}: " + ', '.join(f"{key} {metrics[key]:.3f}" for key in SCALE_KEYS))
    report = ceiling['codec']
    log('scale', f"codec on these {report['num_clips']} clips: relative MSE {report['relative_mse']:.3f}; "
        "error per band "
        + format_bands(report['band_error_db'])
        + f"; codebook perplexity {report['codebook_perplexity']} of {report['bins']}")
    for key, what in (('heard_absent', 'heard but not there'), ('missed', 'missed')):
        if ceiling[key]:
            log('scale', f"after the round trip the judge {what}: " +
                ', '.join(f"{source} in {n}/{ceiling['num_clips']}" for source, n in ceiling[key].items()))
    below = [key for key in ('count_acc', 'source_f1', 'order_acc') if not ceiling[key] >= BAR]
    if below:
        log('scale', f"WARNING: the ceiling misses the bar ({', '.join(below)} < {BAR}): the codec loses what the "
                     "judge listens for, and judge metrics of generated audio are bounded by it (docs/codec.md)")
    return {'judge_clean': judge_clean, 'ceiling': ceiling, 'floor': floor}
