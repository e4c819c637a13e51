"""Paired statistics of judge outcomes (rr_audiocraft.metrics.paired): a known difference is found, no
difference gives intervals that cover 0 and calibrated p-values, and the metrics agree with the judge's."""
import numpy as np
import pytest

from rr_audiocraft.metrics.judge.scores import OUTCOME_KEYS, clip_outcomes, score_predictions
from rr_audiocraft.metrics.paired import paired_comparison, row_summary, stack_seeds


def simulated_row(rng, num_seeds, num_captions, count_p, source_p, caption_effect, count_follow=0.3):
    """Outcomes of a fake row: count right with probability count_p (shifted per caption by
    caption_effect: some captions are harder for every row), each of a clip's 2 sources heard with
    probability source_p, a third of the captions ordered ("then") and their order right when both
    sources are heard. Caption i asks for 1 + i % 3 events; a clip is heard with that many with
    probability count_follow, else with 1 to 3 at random, so the count slope is about count_follow."""
    count_p = np.clip(count_p + caption_effect, 0, 1)
    heard = rng.random((num_seeds, num_captions, 2)) < source_p
    ordered = np.broadcast_to(np.arange(num_captions) % 3 == 0, (num_seeds, num_captions))
    asked = np.broadcast_to(1. + np.arange(num_captions) % 3, (num_seeds, num_captions))
    heard_count = np.where(rng.random((num_seeds, num_captions)) < count_follow, asked,
                           rng.integers(1, 4, (num_seeds, num_captions)))
    return {'clips': np.ones((num_seeds, num_captions)),
            'asked': asked, 'heard': heard_count, 'asked_squared': asked ** 2, 'asked_heard': asked * heard_count,
            'true_positives': heard.sum(-1).astype(float),
            'false_positives': (rng.random((num_seeds, num_captions)) < 0.1).astype(float),
            'false_negatives': (~heard).sum(-1).astype(float),
            'count_hit': (rng.random((num_seeds, num_captions)) < count_p).astype(float),
            'ordered': ordered.astype(float),
            'order_hit': (ordered & heard.all(-1)).astype(float)}


def test_a_known_difference_is_found():
    rng = np.random.default_rng(0)
    caption_effect = rng.normal(0, 0.15, 200)
    baseline = simulated_row(rng, 3, 200, 0.4, 0.5, caption_effect, count_follow=0.2)
    row = simulated_row(rng, 3, 200, 0.6, 0.8, caption_effect, count_follow=0.6)
    result = paired_comparison(row, baseline, num_resamples=4000)
    for metric, expected in (('count_acc', 0.2), ('source_f1', 0.2), ('count_slope', 0.4)):
        low, high = result[metric]['ci95']
        assert 0 < low < result[metric]['difference'] < high, (metric, result[metric])
        assert abs(result[metric]['difference'] - expected) < 0.1
        assert result[metric]['p_value'] < 0.001
    # Order needs both sources heard: 0.25 -> 0.64 of the ordered captions.
    assert result['order_acc']['difference'] > 0.2 and result['order_acc']['p_value'] < 0.001
    # Swapping the rows flips the difference and keeps the evidence.
    flipped = paired_comparison(baseline, row, num_resamples=4000)
    assert flipped['count_acc']['difference'] == pytest.approx(-result['count_acc']['difference'])
    assert flipped['count_acc']['p_value'] < 0.001


def test_no_difference_covers_zero_and_its_p_values_are_calibrated():
    """Both rows drawn alike: the 95 % interval covers 0 (at least as often as it says: resampling
    seeds and captions is conservative, 199 of 200 here) and p < 0.05 about 5 % of the time."""
    rng = np.random.default_rng(1)
    trials = 200
    covered, rejected = {'count_acc': 0, 'count_slope': 0}, {'count_acc': 0, 'count_slope': 0}
    for trial in range(trials):
        caption_effect = rng.normal(0, 0.2, 60)
        baseline = simulated_row(rng, 3, 60, 0.5, 0.6, caption_effect)
        row = simulated_row(rng, 3, 60, 0.5, 0.6, caption_effect)
        result = paired_comparison(row, baseline, num_resamples=999, seed=trial)
        for metric in covered:
            covered[metric] += result[metric]['ci95'][0] <= 0 <= result[metric]['ci95'][1]
            rejected[metric] += result[metric]['p_value'] < 0.05
    for metric in covered:
        assert covered[metric] / trials >= 0.93, (metric, covered)
        assert 0.01 <= rejected[metric] / trials <= 0.10, (metric, rejected)


def test_row_summary_pools_seeds_and_captions_as_the_judge_scores_them():
    """The row's metrics are the judge's metrics of all its clips together (source F1 micro-averaged)."""
    rng = np.random.default_rng(2)
    sources = ['beep', 'bell', 'hum', 'knock']
    truths = [{'sources': list(rng.choice(sources, 2, replace=False)), 'count': int(rng.integers(1, 4)),
               'relation': 'then' if i % 2 else 'while'} for i in range(12)]
    per_seed, all_predictions = [], []
    for _ in range(3):
        predictions = [{'sources': list(rng.choice(sources, int(rng.integers(0, 3)), replace=False)),
                        'count': int(rng.integers(0, 4)), 'order': list(rng.permutation(truth['sources']))}
                       for truth in truths]
        per_seed.append(clip_outcomes(predictions, truths))
        all_predictions += predictions
    summary = row_summary(stack_seeds(per_seed), num_resamples=2000)
    pooled = score_predictions(all_predictions, truths * 3)
    for metric in ('source_f1', 'count_acc', 'count_slope', 'order_acc'):
        assert summary[metric]['mean'] == pytest.approx(pooled[metric])
        low, high = summary[metric]['ci95']
        assert low <= summary[metric]['mean'] <= high and high - low > 0
    assert set(pooled['clip_outcomes']) == set(OUTCOME_KEYS)


def test_unpaired_rows_are_refused():
    rng = np.random.default_rng(3)
    row, baseline = simulated_row(rng, 3, 20, 0.5, 0.5, 0.), simulated_row(rng, 2, 20, 0.5, 0.5, 0.)
    with pytest.raises(ValueError, match='the row has 3 seeds x 20 captions, the baseline 2 x 20'):
        paired_comparison(row, baseline)
    with pytest.raises(ValueError, match='different numbers of captions'):
        stack_seeds([{key: [1, 0, 1] for key in OUTCOME_KEYS}, {key: [1, 0] for key in OUTCOME_KEYS}])


def test_count_slope_is_the_least_squares_slope_of_heard_on_asked_counts():
    """1 for counts heard exactly, 0 for a heard count that ignores the asked one, the fitted slope in
    between (heard counts above 4 read as 4), NaN when every caption asks the same count."""
    asked = [1, 2, 3] * 4

    def slope(heard, asked=asked):
        truths = [{'sources': ['beep'], 'count': c} for c in asked]
        predictions = [{'sources': ['beep'], 'count': h, 'order': ['beep']} for h in heard]
        return score_predictions(predictions, truths)['count_slope']

    assert slope(asked) == pytest.approx(1.)
    assert slope([1] * len(asked)) == pytest.approx(0.)
    assert slope([3, 2, 1] * 4) == pytest.approx(-1.)
    heard = [1, 1, 2, 0, 2, 1, 1, 2, 9, 1, 1, 3]
    assert slope(heard) == pytest.approx(np.polyfit(asked, np.minimum(heard, 4), 1)[0])
    assert np.isnan(slope([1, 2, 3], asked=[2, 2, 2]))
