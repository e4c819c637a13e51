"""Tally a study's answers (`python -m rr_audiocraft.listen tally STUDY`).

Per pair of systems: wins, losses and ties; the preference with a Wilson 95 % interval and the exact
two-sided sign test (ties left out of both, reported apart); a rater x prompt bootstrap interval, since
answers cluster by rater and by prompt (107/160 answers is p = 2e-5, but a 13/20 prompt majority is
p = 0.26: both are shown); position bias (the share of left choices and its test); catch-trial failures,
and the whole tally again without the raters who failed; Fleiss' kappa; Bradley-Terry strengths when
more than two systems. Written to STUDY/results: tally.md (Table 4's layout first), tally.json, and every
answer as answers.csv / answers.json.
"""
import csv
import json
import typing as tp
from pathlib import Path

import numpy as np

from .stats import binomial_summary, bradley_terry, cluster_bootstrap, fleiss_kappa
from .storage import ANSWER_FIELDS, Storage
from .study import ANSWERS_FILE, RESULTS_DIR, Study, StudyError

EXPORT_FIELDS = ANSWER_FIELDS[:5] + ['caption'] + ANSWER_FIELDS[5:8] + ['chosen'] + ANSWER_FIELDS[8:]


def _chosen(answer: dict) -> str:
    return {'left': answer['system_left'], 'right': answer['system_right']}.get(answer['choice'], 'tie')


def compare_pair(answers: tp.List[dict], first: str, second: str, bootstrap: int, seed: int) -> dict:
    """Statistics of the pair trials of `first` vs `second` (preference shares are `second`'s)."""
    own = [a for a in answers if {a['system_left'], a['system_right']} == {first, second}]
    decisive = [a for a in own if a['choice'] != 'tie']
    wins = [int(_chosen(a) == second) for a in decisive]
    summary = binomial_summary(sum(wins), len(wins))
    low, high = cluster_bootstrap([a['rater'] for a in decisive], [a['prompt'] for a in decisive], wins,
                                  num_samples=bootstrap, seed=seed)
    # The prompt-level view: which system won the majority of each prompt's decisive answers.
    by_prompt: tp.Dict[str, tp.List[int]] = {}
    for answer, win in zip(decisive, wins, strict=True):
        by_prompt.setdefault(answer['prompt'], []).append(win)
    prompts_second = sum(1 for w in by_prompt.values() if 2 * sum(w) > len(w))
    prompts_first = sum(1 for w in by_prompt.values() if 2 * sum(w) < len(w))
    return {
        'systems': [first, second], 'answers': len(own), 'wins': {first: len(wins) - sum(wins), second: sum(wins)},
        'ties': len(own) - len(decisive), 'raters': len({a['rater'] for a in own}),
        'prompts': len({a['prompt'] for a in own}),
        'preference': {second: summary['share'], first: None if summary['share'] is None else 1 - summary['share']},
        'wilson_95': [summary['ci_low'], summary['ci_high']], 'sign_test_p': summary['p_value'],
        'bootstrap_95': [low, high],
        'prompt_majority': {first: prompts_first, second: prompts_second,
                            'even': len(by_prompt) - prompts_first - prompts_second,
                            'sign_test_p': binomial_summary(prompts_second, prompts_first + prompts_second)['p_value']},
    }


def summarise(study: Study, answers: tp.List[dict], bootstrap: int = 2000, seed: int = 0) -> dict:
    """Every statistic of the pair answers given (catch trials are counted apart, in `tally`)."""
    pairs = [a for a in answers if a['kind'] == 'pair']
    systems = study.systems
    comparisons = [compare_pair(pairs, first, second, bootstrap, seed)
                   for i, first in enumerate(systems) for second in systems[i + 1:]]
    decisive = [a for a in pairs if a['choice'] != 'tie']
    position = binomial_summary(sum(a['choice'] == 'left' for a in decisive), len(decisive))
    # Agreement: each pair trial is an item, rated "first system", "second system" or "tie".
    items: tp.Dict[str, tp.List[int]] = {}
    for answer in pairs:
        first, _ = study.trials[answer['trial']]['systems']
        category = 2 if answer['choice'] == 'tie' else int(_chosen(answer) != first)
        items.setdefault(answer['trial'], [0, 0, 0])[category] += 1
    kappa = fleiss_kappa(np.array(list(items.values()))) if items else None
    result = {'raters': len({a['rater'] for a in pairs}), 'answers': len(pairs), 'comparisons': comparisons,
              'position_bias': {'left_choices': sum(a['choice'] == 'left' for a in decisive),
                                'decisive': len(decisive), 'left_share': position['share'],
                                'wilson_95': [position['ci_low'], position['ci_high']],
                                'sign_test_p': position['p_value']},
              'fleiss_kappa': kappa, 'bradley_terry': None}
    if len(systems) > 2:
        wins = np.zeros((len(systems), len(systems)))
        for answer in decisive:
            winner = _chosen(answer)
            loser = answer['system_right'] if winner == answer['system_left'] else answer['system_left']
            wins[systems.index(winner), systems.index(loser)] += 1
        result['bradley_terry'] = dict(zip(systems, map(float, bradley_terry(wins)), strict=True))
    return result


def tally(study_dir: tp.Union[str, Path], max_catch_misses: int = 0, bootstrap: int = 2000, seed: int = 0) -> dict:
    """All statistics of a study, with and without the raters who missed more than `max_catch_misses`
    catch trials, and every answer."""
    study = Study(study_dir)
    if not (study.folder / ANSWERS_FILE).exists():
        raise StudyError(f"{study.folder / ANSWERS_FILE}: no answers yet (serve the study first)")
    answers = Storage(study.folder / ANSWERS_FILE).answers()
    catch: tp.Dict[str, tp.Dict[str, int]] = {}
    for answer in answers:
        if answer['kind'] == 'catch':
            own = catch.setdefault(answer['rater'], {'answered': 0, 'missed': 0})
            own['answered'] += 1
            own['missed'] += int(not answer['correct'])
    failed = sorted(rater for rater, own in catch.items() if own['missed'] > max_catch_misses)
    kept = [a for a in answers if a['rater'] not in failed]
    for answer in answers:
        answer['caption'] = study.captions[answer['prompt']]
        answer['chosen'] = _chosen(answer)
    return {
        'study': str(study.folder), 'systems': study.systems, 'ties_allowed': study.ties,
        'prompts': len(study.captions), 'raters': sorted({a['rater'] for a in answers}),
        'catch_trials': {'per_rater': catch, 'max_misses': max_catch_misses, 'failed_raters': failed},
        'all_raters': summarise(study, answers, bootstrap, seed),
        'without_failed_raters': summarise(study, kept, bootstrap, seed) if failed else None,
        'answers': [{field: a[field] for field in EXPORT_FIELDS} for a in answers],
    }


def _pct(value: tp.Optional[float]) -> str:
    return '–' if value is None else f'{100 * value:.1f} %'


def _interval(values: tp.Sequence[tp.Optional[float]]) -> str:
    return '–' if values[0] is None else f'[{100 * values[0]:.1f}, {100 * values[1]:.1f}] %'


def _p(value: tp.Optional[float]) -> str:
    return '–' if value is None else f'{value:.2g}'


def format_summary(summary: dict) -> tp.List[str]:
    lines = ["Preference (Table 4's layout: share of decisive answers):", '',
             '| comparison | first system preferred | second system preferred | ties | answers |',
             '|---|---|---|---|---|']
    for c in summary['comparisons']:
        first, second = c['systems']
        lines.append(f"| {first} vs {second} | {first}: {_pct(c['preference'][first])} | "
                     f"{second}: {_pct(c['preference'][second])} | {c['ties']} | {c['answers']} |")
    lines += ['', 'Statistics (of the second system\'s preference):', '',
              '| comparison | wins–losses | Wilson 95 % | sign test p | rater×prompt bootstrap 95 % | raters × prompts '
              '| prompts won (first/second/even) | prompt sign test p |',
              '|---|---|---|---|---|---|---|---|']
    for c in summary['comparisons']:
        first, second = c['systems']
        majority = c['prompt_majority']
        lines.append(f"| {first} vs {second} | {c['wins'][second]}–{c['wins'][first]} | {_interval(c['wilson_95'])} | "
                     f"{_p(c['sign_test_p'])} | {_interval(c['bootstrap_95'])} | {c['raters']} × {c['prompts']} | "
                     f"{majority[first]}/{majority[second]}/{majority['even']} | {_p(majority['sign_test_p'])} |")
    bias = summary['position_bias']
    kappa = summary['fleiss_kappa']
    lines += ['', f"Position bias: the left clip was chosen in {bias['left_choices']}/{bias['decisive']} decisive "
                  f"answers ({_pct(bias['left_share'])}, Wilson 95 % {_interval(bias['wilson_95'])}, sign test p = "
                  f"{_p(bias['sign_test_p'])}).",
              f"Agreement: Fleiss' kappa = {'–' if kappa is None else f'{kappa:.3f}'} "
              f"({summary['raters']} raters, {summary['answers']} pair answers)."]
    if summary['bradley_terry']:
        lines += ['', '| system | Bradley–Terry strength |', '|---|---|']
        lines += [f'| {name} | {value:.3f} |' for name, value in
                  sorted(summary['bradley_terry'].items(), key=lambda item: -item[1])]
    return lines


def format_tally(result: dict) -> str:
    """The markdown report."""
    lines = [f"# Listening test: {result['study']}", '',
             f"{len(result['raters'])} raters, {result['prompts']} prompts, systems: {', '.join(result['systems'])}; "
             f"ties {'allowed' if result['ties_allowed'] else 'not allowed'}.", '']
    lines += format_summary(result['all_raters'])
    catch = result['catch_trials']
    per_rater = catch['per_rater']
    lines += ['', f"Catch trials (a clip of another prompt; a rater fails above {catch['max_misses']} misses): "
                  f"{sum(c['missed'] for c in per_rater.values())} missed of "
                  f"{sum(c['answered'] for c in per_rater.values())}; "
                  + (f"failed: {', '.join(catch['failed_raters'])}." if catch['failed_raters'] else "no rater failed.")]
    if result['without_failed_raters']:
        failed = len(catch['failed_raters'])
        lines += ['', f"## Without the {failed} rater{'s' if failed != 1 else ''} who failed catch trials", '']
        lines += format_summary(result['without_failed_raters'])
    return '\n'.join(lines) + '\n'


def write_results(result: dict, folder: Path) -> tp.Dict[str, Path]:
    """tally.md, tally.json, answers.csv and answers.json in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in ('tally.md', 'tally.json', 'answers.csv', 'answers.json')}
    paths['tally.md'].write_text(format_tally(result))
    paths['tally.json'].write_text(json.dumps({k: v for k, v in result.items() if k != 'answers'}, indent=1,
                                              ensure_ascii=False) + '\n')
    paths['answers.json'].write_text(json.dumps(result['answers'], indent=1, ensure_ascii=False) + '\n')
    with paths['answers.csv'].open('w', newline='') as file:
        writer = csv.DictWriter(file, fieldnames=EXPORT_FIELDS)
        writer.writeheader()
        writer.writerows(result['answers'])
    return paths


def results_dir(study_dir: tp.Union[str, Path]) -> Path:
    return Path(study_dir) / RESULTS_DIR
