"""The benchmark's metrics, computed from the judge's predictions (`Judge.predict`).

`clip_outcomes` holds the per-clip rules and `metrics_from_sums` turns their sums into metrics, so
that `score_predictions` (`Judge.score` predicts and calls it) and the paired statistics of
`rr_audiocraft.metrics.paired` (which resample the clips) compute the same thing. Per
clip, against the caption's ground truth (the sidecar): source micro-F1, count accuracy, order
accuracy (over "then" captions, the only ones that fix an order), count slope (events heard per event
asked, which credits a count followed in part, where count accuracy only credits the exact count) and
relation accuracy, plus which
sources were heard but absent or missed (a codec's hiss heard as `noise`, its rumble as `hum`).
Against reference clips of the same captions: `kl` (the analogue of AudioCraft's PaSST KL over the
judge's label posteriors) and `fd` (the analogue of FAD over its embeddings).
"""
import typing as tp

import numpy as np
import scipy.linalg

Prediction = tp.Mapping[str, tp.Any]
Truth = tp.Mapping[str, tp.Any]


def check_truths(truths: tp.Sequence[tp.Mapping[str, tp.Any]], num_clips: int) -> None:
    if len(truths) != num_clips:
        raise ValueError(f"Got {num_clips} clips but {len(truths)} ground truths.")
    for index, truth in enumerate(truths):
        missing = [key for key in ('sources', 'count') if key not in truth]
        if missing:
            raise ValueError(f"Ground truth {index} lacks {missing} (expected a sidecar of rr_audiocraft.data.synth).")


def frechet_distance(embeddings_a: np.ndarray, embeddings_b: np.ndarray, ridge: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two embedding sets, [N, D] and [M, D].

    `ridge` is added to both covariance diagonals: with fewer clips than dimensions the sample
    covariances are singular and their matrix square root would be ill-conditioned.
    """
    if len(embeddings_a) < 2 or len(embeddings_b) < 2:
        raise ValueError("The Fréchet distance needs at least 2 clips per set.")
    mu_a, mu_b = embeddings_a.mean(0), embeddings_b.mean(0)
    eye = np.eye(embeddings_a.shape[1])
    sigma_a = np.cov(embeddings_a, rowvar=False) + ridge * eye
    sigma_b = np.cov(embeddings_b, rowvar=False) + ridge * eye
    covmean = scipy.linalg.sqrtm(sigma_a @ sigma_b)
    covmean = np.real(covmean)  # sqrtm returns tiny imaginary parts from round-off.
    distance = np.sum((mu_a - mu_b) ** 2) + np.trace(sigma_a + sigma_b - 2 * covmean)
    return float(max(distance, 0.))


def kl_divergence(target_probs: np.ndarray, pred_probs: np.ndarray, epsilon: float = 1e-6) -> np.ndarray:
    """KL(target || pred) per row of [N, K] distributions, with AudioCraft's KLDivergenceMetric
    convention (epsilon added to the predictions before the log). Returns [N]."""
    return np.sum(target_probs * (np.log(target_probs + 1e-12) - np.log(pred_probs + epsilon)), axis=-1)



# Per-clip outcomes (`clip_outcomes`); every adherence metric is a function of their sums.
OUTCOME_KEYS = ('clips', 'true_positives', 'false_positives', 'false_negatives', 'count_hit', 'ordered', 'order_hit',
                'asked', 'heard', 'asked_squared', 'asked_heard')
# Heard counts above this read as this in the count slope: one more than the benchmark's largest count
# (3), so that a few runaway clips (the judge hears up to 10 events in some generated ones) cannot
# outweigh the rest of a row.
HEARD_COUNT_CAP = 4


def clip_outcomes(predictions: tp.Sequence[Prediction], truths: tp.Sequence[Truth]) -> tp.Dict[str, tp.List[int]]:
    """What each clip contributes to the adherence metrics, key (`OUTCOME_KEYS`) -> one int per clip:
    the clip itself (1), sources heard and there, heard but not there, there but missed; whether the count is right;
    whether the caption fixes an order ("then") and whether the heard order is it; the count asked (c), the
    count heard (h, at most `HEARD_COUNT_CAP`), c² and c·h, whose sums give the count slope."""
    check_truths(truths, len(predictions))
    outcomes: tp.Dict[str, tp.List[int]] = {key: [] for key in OUTCOME_KEYS}
    for prediction, truth in zip(predictions, truths, strict=True):
        predicted, expected = set(prediction['sources']), set(truth['sources'])
        ordered = truth.get('relation') == 'then'
        asked, heard = int(truth['count']), min(int(prediction['count']), HEARD_COUNT_CAP)
        for key, value in zip(OUTCOME_KEYS, (
                1, len(predicted & expected), len(predicted - expected), len(expected - predicted),
                prediction['count'] == truth['count'], ordered,
                ordered and list(prediction['order']) == list(truth['sources']),
                asked, heard, asked * asked, asked * heard), strict=True):
            outcomes[key].append(int(value))
    return outcomes


def _ratio(numerator: tp.Any, denominator: tp.Any, empty: float) -> np.ndarray:
    """numerator / denominator elementwise, `empty` where the denominator is 0."""
    numerator, denominator = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.), empty)


def metrics_from_sums(sums: tp.Mapping[str, tp.Any]) -> tp.Dict[str, tp.Any]:
    """source_f1 (micro), count_acc, count_slope and order_acc from the sums of `clip_outcomes` over clips.

    count_slope is the least-squares slope of the heard count on the asked count over the clips,
    (n Σch - Σc Σh) / (n Σc² - (Σc)²): 1 when every clip is heard with its caption's count, about 0
    when the heard count does not depend on the asked one (an LM that ignores the count, references
    against shuffled captions), 0.2 when a clip asked for one more event has 0.2 more on average.

    Works elementwise on arrays of sums (e.g. one per bootstrap resample); a metric without clips
    (order accuracy without "then" captions; the count slope when every caption asks the same count)
    is NaN, source F1 without any source is 1.
    """
    true_positives = np.asarray(sums['true_positives'], dtype=np.float64)
    clips, asked = np.asarray(sums['clips'], dtype=np.float64), np.asarray(sums['asked'], dtype=np.float64)
    # Exact in float64 for integer sums: the spread of the asked counts is 0 only when they are all equal.
    asked_spread = clips * np.asarray(sums['asked_squared'], dtype=np.float64) - asked * asked
    return {'source_f1': _ratio(2 * true_positives,
                                2 * true_positives + np.asarray(sums['false_positives'])
                                + np.asarray(sums['false_negatives']),
                                1.),
            'count_acc': _ratio(sums['count_hit'], clips, np.nan),
            'count_slope': _ratio(clips * np.asarray(sums['asked_heard'], dtype=np.float64)
                                  - asked * np.asarray(sums['heard'], dtype=np.float64), asked_spread, np.nan),
            'order_acc': _ratio(sums['order_hit'], sums['ordered'], np.nan)}


def _by_count(counts: tp.Dict[str, int]) -> tp.Dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def score_predictions(predictions: tp.Sequence[Prediction], truths: tp.Sequence[Truth],
                      reference_predictions: tp.Optional[tp.Sequence[Prediction]] = None,
                      fd_ridge: float = 1e-6) -> tp.Dict[str, tp.Any]:
    """Benchmark metrics of predictions against their ground truths (and reference clips).

    Args:
        predictions: `Judge.predict` outputs (at least `sources` and `count`; `order`, and for
            the reference metrics `posteriors` and `embedding`).
        truths: the ground truth (sidecar) of each clip's caption, same order.
        reference_predictions: predictions on the dataset's clip of each caption, same order;
            adds `kl` and `fd`.
        fd_ridge: see `frechet_distance`.
    Returns:
        dict with source_f1, count_acc, count_slope, order_acc ("then" captions; NaN if none), relation_acc
        (NaN if the truths have no relation), num_clips, heard_absent and missed (source ->
        number of clips, most frequent first), clip_outcomes (`clip_outcomes`: what the paired
        statistics of `rr_audiocraft.metrics.paired` resample) and, with references, kl (mean over clips of
        KL(p_ref || p_gen); 0 when the judge hears the same labels) and fd (NaN for one clip).
    """
    outcomes = clip_outcomes(predictions, truths)
    heard_absent: tp.Dict[str, int] = {}
    missed: tp.Dict[str, int] = {}
    relation_hits, num_related = 0, 0
    for prediction, truth in zip(predictions, truths, strict=True):
        predicted, expected = set(prediction['sources']), set(truth['sources'])
        for source in predicted - expected:
            heard_absent[source] = heard_absent.get(source, 0) + 1
        for source in expected - predicted:
            missed[source] = missed.get(source, 0) + 1
        if truth.get('relation') is not None:
            num_related += 1
            relation_hits += int(prediction.get('relation') == truth['relation'])
    metrics: tp.Dict[str, tp.Any] = {
        **{key: float(value) for key, value in metrics_from_sums({k: sum(v) for k, v in outcomes.items()}).items()},
        'relation_acc': relation_hits / num_related if num_related else float('nan'),
        'num_clips': len(predictions),
        'heard_absent': _by_count(heard_absent),
        'missed': _by_count(missed),
        'clip_outcomes': outcomes,
    }
    if reference_predictions is not None:
        if len(reference_predictions) != len(predictions):
            raise ValueError(f"Got {len(predictions)} generated clips but {len(reference_predictions)} references.")
        posteriors = np.stack([prediction['posteriors'] for prediction in predictions])
        reference_posteriors = np.stack([prediction['posteriors'] for prediction in reference_predictions])
        metrics['kl'] = float(kl_divergence(reference_posteriors, posteriors).mean())
        metrics['fd'] = float('nan')
        if len(predictions) >= 2:
            metrics['fd'] = frechet_distance(
                np.stack([prediction['embedding'] for prediction in predictions]),
                np.stack([prediction['embedding'] for prediction in reference_predictions]), ridge=fd_ridge)
    return metrics
