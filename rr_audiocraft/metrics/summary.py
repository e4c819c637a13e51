"""A table's statistics over LM seeds and test captions: rows pooled with bootstrap intervals, each row against
the baseline (paired), and runs on several benchmarks pooled into one table.

Judge metrics resample seeds and captions (`metrics.paired`); the per-XP scalars (valid ce, KL, FD, valid rr) have
no per-clip outcomes and get a Student-t interval over seeds.
"""
import json
import math
import typing as tp
from pathlib import Path

import numpy as np
from scipy import stats

from ..table1 import BASELINE
from .paired import paired_comparison, row_summary, stack_seeds

BASELINE_KEY = tuple(BASELINE.record())  # the baseline as results.json records its rows
JUDGE_METRICS = ('source_f1', 'count_acc', 'count_slope', 'order_acc')  # per-clip outcomes: paired bootstrap
XP_SCALARS = ('kl', 'fd', 'valid_ce', 'valid_rr', 'valid_rr_corr')  # one value per XP: no per-clip outcomes


def finite(values: tp.Iterable[tp.Optional[float]]) -> tp.List[float]:
    """The values that were measured: neither None nor NaN."""
    return [v for v in values if v is not None and not math.isnan(v)]


def mean_ci(values: tp.List[float]) -> tp.Dict[str, tp.Any]:
    """Mean over seeds and its 95 % Student-t interval ([NaN, NaN] for one value): for the per-XP
    scalars (valid ce, KL, FD) that have no per-clip outcomes to resample."""
    values_arr = np.asarray(finite(values), dtype=float)
    if len(values_arr) == 0:
        return {'mean': float('nan'), 'ci95': [float('nan'), float('nan')]}
    mean = float(values_arr.mean())
    if len(values_arr) == 1:
        return {'mean': mean, 'ci95': [float('nan'), float('nan')]}
    half = stats.t.ppf(0.975, len(values_arr) - 1) * values_arr.std(ddof=1) / math.sqrt(len(values_arr))
    return {'mean': mean, 'ci95': [mean - float(half), mean + float(half)]}


def summarise(results: tp.List[dict]) -> tp.Tuple[tp.List[dict], tp.List[dict]]:
    """Rows of the table and each row against the baseline, from the per-XP results.

    Judge metrics are pooled over a row's seeds and captions with a 95 % bootstrap interval (seeds
    and captions resampled, `metrics.paired.row_summary`); each row is compared with `BASELINE_KEY`
    paired over the same seeds and captions (`metrics.paired.paired_comparison`: difference, 95 %
    bootstrap interval, permutation p-value). Valid ce, KL and FD: mean over seeds, Student-t interval.

    Returns:
        tuple: rows (`pool`, `cfg`, `lambda`, `seeds`, and per metric {'mean', 'ci95'}) and
        vs_baseline (`pool`, `cfg`, `lambda`, and per judge metric {'difference', 'ci95', 'p_value'}).
    """
    by_row: tp.Dict[tuple, tp.List[dict]] = {}
    for result in results:
        by_row.setdefault(tuple(result['row']), []).append(result)
    rows, outcomes = [], {}
    for row, runs in by_row.items():
        runs = sorted(runs, key=lambda run: run['seed'])
        outcomes[row] = stack_seeds([run['metrics']['clip_outcomes'] for run in runs])
        entry = {'pool': row[0], 'cfg': row[1], 'lambda': row[2], 'seeds': [run['seed'] for run in runs],
                 **row_summary(outcomes[row])}
        for key in XP_SCALARS:
            entry[key] = mean_ci([run['metrics'].get(key) for run in runs])
        rows.append(entry)
    vs_baseline = []
    if BASELINE_KEY in by_row:
        base_seeds = sorted(run['seed'] for run in by_row[BASELINE_KEY])
        for row, runs in by_row.items():
            if row == BASELINE_KEY:
                continue
            if sorted(run['seed'] for run in runs) != base_seeds:
                raise ValueError(f"row {row} was trained with seeds {sorted(run['seed'] for run in runs)}, the "
                                 f"baseline with {base_seeds}: paired comparisons need the same seeds")
            vs_baseline.append({'pool': row[0], 'cfg': row[1], 'lambda': row[2],
                                **paired_comparison(outcomes[row], outcomes[BASELINE_KEY])})
    return rows, vs_baseline


def combine_results(folders: tp.Sequence[Path]) -> tp.Dict[str, tp.Any]:
    """Several runs of the same rows on different benchmarks (e.g. `--data-seed` 0, 1, 2) as one table.

    For each (row, LM seed) the per-clip outcomes of every run are concatenated, so each row is pooled
    over all benchmarks' captions and the paired bootstrap and permutation test of `summarise` run over
    them (captions stay the exchangeable units; a bootstrap seed draws that seed's LMs of every
    benchmark together). Per-XP scalars (valid ce, KL, FD, valid rr) are the benchmarks' mean per seed.
    Only rows present, with the same seeds, in every run are kept.

    Args:
        folders: results folders of `demo` runs (each holding the `results.json` it wrote).
    Returns:
        dict: `benchmarks` (each run's folder and benchmark stamp), `rows`, `vs_baseline` (as in
        results.json) and `dropped_rows` (rows missing from some run).
    Raises:
        ValueError: fewer than two runs, a run without results, two runs on the same benchmark (its
            captions would count twice) or on different codecs, or no baseline row common to all.
    """
    if len(folders) < 2:
        raise ValueError("give at least two results folders to combine")
    loaded = []
    for folder in folders:
        path = Path(folder) / 'results.json'
        if not path.is_file():
            raise ValueError(f"{path} does not exist: point at the --out folder of a finished demo or reproduce run")
        results = json.loads(path.read_text())
        if 'runs' not in results:
            raise ValueError(f"{path} holds no trained rows (a --until ceiling run?)")
        loaded.append((Path(folder), results))
    stamps = [{k: v for k, v in results['benchmark'].items() if k != 'path'} for _, results in loaded]
    for i, stamp in enumerate(stamps):
        if stamp in stamps[:i]:
            raise ValueError(f"{loaded[i][0]} and {loaded[stamps.index(stamp)][0]} ran on the same benchmark "
                             f"({stamp}): its captions would count twice")
    codecs = {results['codec']['sha256'] for _, results in loaded}
    if len(codecs) > 1:
        raise ValueError(f"the runs used different codecs ({sorted(c[:16] for c in codecs)}): their tables "
                         "do not measure the same thing")
    keyed = [{(tuple(run['row']), run['seed']): run for run in results['runs']} for _, results in loaded]

    def seeds_of(runs: tp.Mapping[tuple, dict], row: tuple) -> tp.List[int]:
        return sorted(seed for (other, seed) in runs if other == row)
    first_order = list(dict.fromkeys(row for row, _ in keyed[0]))
    kept_rows = [row for row in first_order if all(seeds_of(runs, row) == seeds_of(keyed[0], row) for runs in keyed)]
    if BASELINE_KEY not in kept_rows:
        raise ValueError(f"the baseline row {BASELINE_KEY} with the same seeds is not in every run")
    merged = []
    for row in kept_rows:
        for seed in seeds_of(keyed[0], row):
            runs = [by_key[(row, seed)] for by_key in keyed]
            keys = [set(run['metrics']['clip_outcomes']) for run in runs]
            if any(k != keys[0] for k in keys):
                raise ValueError(f"row {row} seed {seed}: the runs' judges recorded different outcomes "
                                 f"({sorted(keys[0] ^ next(k for k in keys if k != keys[0]))}); rerun the older "
                                 "run's command with this code to re-judge its samples")
            outcomes = {name: np.concatenate([np.asarray(run['metrics']['clip_outcomes'][name], dtype=float)
                                              for run in runs]).tolist()
                        for name in runs[0]['metrics']['clip_outcomes']}
            metrics: tp.Dict[str, tp.Any] = {'clip_outcomes': outcomes}
            for name in XP_SCALARS:
                values = finite([run['metrics'].get(name) for run in runs])
                metrics[name] = float(np.mean(values)) if values else None
            merged.append({'row': list(row), 'seed': seed, 'sigs': [run['sig'] for run in runs], 'metrics': metrics})
    all_rows = {row for runs in keyed for row, _ in runs}
    rows, vs_baseline = summarise(merged)
    benchmarks = [{'folder': str(folder), **stamp} for (folder, _), stamp in zip(loaded, stamps, strict=True)]
    return {'benchmarks': benchmarks,
            'rows': rows, 'vs_baseline': vs_baseline,
            'dropped_rows': [list(row) for row in sorted(all_rows - set(kept_rows), key=str)]}
