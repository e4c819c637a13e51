"""Each rater's plan: the trials in a random order, and which clip goes on which side.

Sides are counterbalanced per rater: of the pair trials, half show their first system on the left (one more
on one side when the count is odd, that side drawn at random), and likewise the right answer of the catch
trials. The plan is drawn once, from the study seed and the rater id, and stored with the rater, so a
reload, a closed tab or a server restart shows the same trials in the same order and on the same sides.
"""
import random
import typing as tp

from .study import Study


def _balanced_swaps(count: int, rng: random.Random) -> tp.List[bool]:
    swaps = [False] * (count // 2) + [True] * (count // 2)
    if count % 2:
        swaps.append(rng.random() < 0.5)
    rng.shuffle(swaps)
    return swaps


def draw_plan(study: Study, rater: str) -> tp.List[tp.Dict[str, tp.Any]]:
    """The rater's trials in order: [{'trial': id, 'swap': bool}, ...].

    `swap` False: the trial's first clip plays in slot 1 (left), its second in slot 2 (right).
    """
    rng = random.Random(f'{study.seed}:{rater}')
    plan = []
    for kind in ('pair', 'catch'):
        ids = [trial['id'] for trial in study.data['trials'] if trial['kind'] == kind]
        swaps = _balanced_swaps(len(ids), rng)
        plan += [{'trial': trial, 'swap': swap} for trial, swap in zip(ids, swaps, strict=True)]
    rng.shuffle(plan)
    return plan


def slots(step: tp.Dict[str, tp.Any]) -> tp.Tuple[int, int]:
    """Indices (into the trial's clips / systems) shown in slot 1 and slot 2 for a plan step."""
    return (1, 0) if step['swap'] else (0, 1)
