"""Paired statistics of judge outcomes: rows of a table compared over the same captions and seeds.

Every row of the miniature Table 1 generates the same test captions with the same LM seeds, so
rows are compared *paired*: clip (seed s, caption c) of a row against clip (s, c) of the baseline.
The unit of each metric is the per-clip outcome of `scores.clip_outcomes` (true / false positives
and negatives of sources, count hit, order hit, asked and heard counts); a metric is computed from
their sums, so source F1 and order accuracy are micro-averaged and the count slope fitted over all
clips of a row, exactly as `score_predictions` does.

- `row_summary`: each metric of one row with a 95 % bootstrap interval.
- `paired_comparison`: a row minus the baseline per metric, a 95 % bootstrap interval of that
  difference and a two-sided paired permutation p-value.

The bootstrap resamples both sources of variation, LM seeds and captions (a two-level bootstrap:
seeds with replacement, then captions with replacement, the same draws for both rows of a pair), so
the interval widens when seeds disagree, as it should with three trained models a row; it is on the
conservative side (with seeds that do not matter, 199 of 200 null intervals covered 0). The
permutation test swaps the two rows' clips of a caption (all seeds of that caption together) with
probability 1/2; captions are the exchangeable units, as in a paired test over test items.

Example::

    outcomes = {sig: clip_outcomes(predictions, truths) for ...}   # per XP, [num_captions] each
    row = stack_seeds([outcomes[sig] for sig in row_sigs])       # [num_seeds, num_captions]
    base = stack_seeds([outcomes[sig] for sig in base_sigs])
    paired_comparison(row, base)['source_f1']  # {'difference': .., 'ci95': [lo, hi], 'p_value': ..}
"""
import typing as tp

import numpy as np

from .judge.scores import OUTCOME_KEYS, metrics_from_sums

Outcomes = tp.Mapping[str, np.ndarray]  # outcome key -> [num_seeds, num_captions]
METRIC_KEYS = ('source_f1', 'count_acc', 'count_slope', 'order_acc')


def stack_seeds(per_seed: tp.Sequence[tp.Mapping[str, tp.Sequence[float]]]) -> tp.Dict[str, np.ndarray]:
    """Per-seed outcomes (each key -> [num_captions], the same captions in the same order) stacked to
    key -> [num_seeds, num_captions]."""
    if not per_seed:
        raise ValueError("stack_seeds: no seed given.")
    lengths = {len(outcome[key]) for outcome in per_seed for key in OUTCOME_KEYS}
    if len(lengths) != 1:
        raise ValueError(f"stack_seeds: the seeds were scored on different numbers of captions {sorted(lengths)}; "
                         "rows are paired over the same captions.")
    return {key: np.stack([np.asarray(outcome[key], dtype=np.float64) for outcome in per_seed]) for key in OUTCOME_KEYS}


def _check(outcomes: Outcomes, name: str) -> tp.Tuple[int, int]:
    shapes = {np.shape(outcomes[key]) for key in OUTCOME_KEYS}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"{name}: expected every outcome as [num_seeds, num_captions], got shapes {sorted(shapes)}.")
    num_seeds, num_captions = next(iter(shapes))
    if num_seeds < 1 or num_captions < 2:
        raise ValueError(f"{name}: needs at least 1 seed and 2 captions, got {num_seeds} x {num_captions}.")
    return num_seeds, num_captions


def crossed_bootstrap_weights(num_rows: int, num_columns: int, num_resamples: int,
                              rng: np.random.Generator) -> tp.Tuple[np.ndarray, np.ndarray]:
    """A two-way crossed bootstrap (e.g. seeds x captions, raters x prompts): how often each row and
    each column is drawn in every resample, [R, rows] and [R, columns]. An observation at (row, column)
    then counts row weight x column weight times (`np.einsum('rs,sc,rc->r', rows, X, columns)`)."""
    row_weights = rng.multinomial(num_rows, np.full(num_rows, 1 / num_rows), size=num_resamples)
    column_weights = rng.multinomial(num_columns, np.full(num_columns, 1 / num_columns), size=num_resamples)
    return row_weights.astype(np.float64), column_weights.astype(np.float64)


def _weighted_sums(outcomes: Outcomes, seed_weights: np.ndarray,
                   caption_weights: np.ndarray) -> tp.Dict[str, np.ndarray]:
    """Sum of each outcome over the resampled (seed, caption) clips: key -> [R]."""
    return {key: np.einsum('rs,sc,rc->r', seed_weights, np.asarray(outcomes[key], dtype=np.float64), caption_weights)
            for key in OUTCOME_KEYS}


def _interval(values: np.ndarray) -> tp.List[float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return [float('nan'), float('nan')]
    low, high = np.percentile(finite, [2.5, 97.5])
    return [float(low), float(high)]


def row_summary(outcomes: Outcomes, num_resamples: int = 10_000, seed: int = 0) -> tp.Dict[str, tp.Dict[str, tp.Any]]:
    """Each metric of one row, pooled over its seeds and captions, with a 95 % bootstrap interval.

    Args:
        outcomes: key -> [num_seeds, num_captions] (`stack_seeds`).
        num_resamples: bootstrap resamples.
        seed: seed of the resampling.
    Returns:
        dict metric -> {'mean': x, 'ci95': [lo, hi]} (NaN when the metric has no clip, e.g. order
        accuracy without "then" captions).
    """
    num_seeds, num_captions = _check(outcomes, 'row_summary')
    point = metrics_from_sums({key: np.sum(outcomes[key]) for key in OUTCOME_KEYS})
    weights = crossed_bootstrap_weights(num_seeds, num_captions, num_resamples, np.random.default_rng(seed))
    resampled = metrics_from_sums(_weighted_sums(outcomes, *weights))
    return {metric: {'mean': float(point[metric]), 'ci95': _interval(resampled[metric])} for metric in METRIC_KEYS}


def paired_comparison(row: Outcomes, baseline: Outcomes, num_resamples: int = 10_000,
                      seed: int = 0) -> tp.Dict[str, tp.Dict[str, tp.Any]]:
    """A row against the baseline, paired over the same seeds and captions.

    Args:
        row, baseline: key -> [num_seeds, num_captions]; seed s and caption c of one are paired with
            seed s and caption c of the other.
        num_resamples: bootstrap resamples, and random permutations of the test.
        seed: seed of the resampling and of the permutations.
    Returns:
        dict metric -> {'difference': row - baseline, 'ci95': [lo, hi] (bootstrap, seeds and captions),
        'p_value': two-sided paired permutation p-value (captions swapped between the rows)}.
    """
    shape, base_shape = _check(row, 'paired_comparison (row)'), _check(baseline, 'paired_comparison (baseline)')
    if shape != base_shape:
        raise ValueError(f"paired_comparison: the row has {shape[0]} seeds x {shape[1]} captions, the baseline "
                         f"{base_shape[0]} x {base_shape[1]}; paired rows need the same seeds and captions.")
    num_seeds, num_captions = shape
    rng = np.random.default_rng(seed)

    def difference(row_sums: tp.Mapping[str, np.ndarray],
                   base_sums: tp.Mapping[str, np.ndarray]) -> tp.Dict[str, np.ndarray]:
        row_metrics, base_metrics = metrics_from_sums(row_sums), metrics_from_sums(base_sums)
        return {metric: np.asarray(row_metrics[metric]) - np.asarray(base_metrics[metric]) for metric in METRIC_KEYS}

    observed = difference({key: np.sum(row[key]) for key in OUTCOME_KEYS},
                          {key: np.sum(baseline[key]) for key in OUTCOME_KEYS})
    weights = crossed_bootstrap_weights(num_seeds, num_captions, num_resamples, rng)
    resampled = difference(_weighted_sums(row, *weights), _weighted_sums(baseline, *weights))
    # Permutations: caption c of the two rows swapped where swap[r, c]; summed over seeds first.
    swap = rng.random((num_resamples, num_captions)) < 0.5
    row_by_caption = {key: np.asarray(row[key], dtype=np.float64).sum(0) for key in OUTCOME_KEYS}
    base_by_caption = {key: np.asarray(baseline[key], dtype=np.float64).sum(0) for key in OUTCOME_KEYS}
    permuted = difference(
        {key: np.where(swap, base_by_caption[key], row_by_caption[key]).sum(1) for key in OUTCOME_KEYS},
        {key: np.where(swap, row_by_caption[key], base_by_caption[key]).sum(1) for key in OUTCOME_KEYS})
    out = {}
    for metric in METRIC_KEYS:
        observed_difference = float(observed[metric])
        if np.isnan(observed_difference):
            out[metric] = {'difference': float('nan'), 'ci95': [float('nan'), float('nan')], 'p_value': float('nan')}
            continue
        extreme = np.abs(permuted[metric]) >= abs(observed_difference) - 1e-12
        out[metric] = {'difference': observed_difference, 'ci95': _interval(resampled[metric]),
                       'p_value': float((1 + np.sum(extreme[np.isfinite(permuted[metric])])) / (1 + num_resamples))}
    return out
