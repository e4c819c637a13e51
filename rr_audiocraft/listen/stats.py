"""Statistics of pairwise preference answers, each a few lines over numpy/scipy.

- `binomial_summary`: a proportion with its Wilson 95 % interval and the exact two-sided sign-test p-value.
- `cluster_bootstrap`: a percentile interval of a preference when answers cluster by rater *and* prompt
  (raters and prompts are resampled independently, each answer weighted by both draws).
- `fleiss_kappa`: agreement between raters on items rated by varying numbers of raters.
- `bradley_terry`: system strengths from a win matrix, by minorisation-maximisation (Hunter, 2004).
"""
import math
import typing as tp

import numpy as np


def binomial_summary(successes: int, trials: int) -> tp.Dict[str, tp.Optional[float]]:
    """Share of successes, its Wilson 95 % interval and the exact two-sided binomial (sign) test of 1/2."""
    if trials == 0:
        return {'share': None, 'ci_low': None, 'ci_high': None, 'p_value': None}
    from scipy.stats import binomtest
    result = binomtest(successes, trials, p=0.5)
    interval = result.proportion_ci(confidence_level=0.95, method='wilson')
    return {'share': successes / trials, 'ci_low': float(interval.low), 'ci_high': float(interval.high),
            'p_value': float(result.pvalue)}


def cluster_bootstrap(raters: tp.Sequence[tp.Hashable], prompts: tp.Sequence[tp.Hashable],
                      wins: tp.Sequence[float], num_samples: int = 2000, seed: int = 0,
                      confidence: float = 0.95) -> tp.Tuple[tp.Optional[float], tp.Optional[float]]:
    """Percentile interval of mean(wins) resampling raters and prompts (two-way crossed bootstrap).

    Args:
        raters, prompts: The rater and prompt of each decisive answer.
        wins: 1 when the answer preferred the system of interest, else 0.
    Returns:
        (low, high), or (None, None) without answers.
    """
    if len(wins) == 0:
        return None, None
    rater_ids = {r: i for i, r in enumerate(dict.fromkeys(raters))}
    prompt_ids = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
    won = np.zeros((len(rater_ids), len(prompt_ids)))
    count = np.zeros_like(won)
    for rater, prompt, win in zip(raters, prompts, wins, strict=True):
        won[rater_ids[rater], prompt_ids[prompt]] += win
        count[rater_ids[rater], prompt_ids[prompt]] += 1
    from ..metrics.paired import crossed_bootstrap_weights
    # How often each rater / prompt is drawn in each resample: an answer counts (rater draws x prompt draws).
    rater_weights, prompt_weights = crossed_bootstrap_weights(len(rater_ids), len(prompt_ids), num_samples,
                                                              np.random.default_rng(seed))
    numerator = np.einsum('br,rp,bp->b', rater_weights, won, prompt_weights)
    denominator = np.einsum('br,rp,bp->b', rater_weights, count, prompt_weights)
    shares = numerator[denominator > 0] / denominator[denominator > 0]
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(shares, tail)), float(np.percentile(shares, 100 - tail))


def fleiss_kappa(counts: np.ndarray) -> tp.Optional[float]:
    """Fleiss' kappa of an items x categories matrix of rating counts (items may have different numbers
    of ratings; items with fewer than 2 are left out). None when undefined (no such item, or one category
    used throughout)."""
    counts = np.asarray(counts, dtype=float)
    per_item = counts.sum(axis=1)
    counts, per_item = counts[per_item >= 2], per_item[per_item >= 2]
    if len(counts) == 0:
        return None
    agreement = ((counts * (counts - 1)).sum(axis=1) / (per_item * (per_item - 1))).mean()
    shares = counts.sum(axis=0) / per_item.sum()
    chance = float((shares ** 2).sum())
    if math.isclose(chance, 1.0):
        return None
    return float((agreement - chance) / (1 - chance))


def bradley_terry(wins: np.ndarray, iterations: int = 1000, tolerance: float = 1e-10) -> np.ndarray:
    """Bradley-Terry strengths (summing to 1) from wins[i, j] = times i was preferred to j.

    MM update: p_i <- W_i / sum_j n_ij / (p_i + p_j), with n_ij = wins[i, j] + wins[j, i]. A system that
    never wins gets strength 0; systems never compared with the others keep an arbitrary share.
    """
    wins = np.asarray(wins, dtype=float)
    games = wins + wins.T
    total_wins = wins.sum(axis=1)
    strength = np.full(len(wins), 1 / len(wins))
    for _ in range(iterations):
        pair_sums = strength[:, None] + strength[None, :]
        with np.errstate(divide='ignore', invalid='ignore'):
            denominator = np.where(games > 0, games / pair_sums, 0.0).sum(axis=1)
            updated = np.where(denominator > 0, total_wins / denominator, strength)
        updated /= updated.sum()
        if np.abs(updated - strength).max() < tolerance:
            return updated
        strength = updated
    return strength
