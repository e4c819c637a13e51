"""The demo's table (Markdown) and its results page, written whole by code (`results/*.md`).

A results page holds the table of one run of a preset, how it was made and how long it took; it is never edited by
hand. What people conclude from it lives apart (docs/results.md) and links to it.
"""
import math
import os
import typing as tp
from pathlib import Path

from ..metrics.summary import JUDGE_METRICS
from ..table1 import BASELINE

# Shown in the table, in this order: (history or report key, column title, higher is better).
# `rr`/`rr_corr`: L_rr and the text-audio similarity correlation on the valid set with the captions nulled
# (where RR acts), for every row: whether RR changed the structure it acts on (no better direction).
METRICS = [('source_f1', 'source F1', True), ('count_acc', 'count acc', True), ('count_slope', 'count slope', True),
           ('order_acc', 'order acc', True),
           ('kl', 'KL', False), ('fd', 'FD', False), ('valid_ce', 'valid ce', False),
           ('valid_rr', 'valid rr', None), ('valid_rr_corr', 'valid rr_corr', None)]

ARROWS = {True: ' ↑', False: ' ↓', None: ''}


def _cell(stat: tp.Mapping[str, tp.Any], key: str = 'mean') -> str:
    value, (low, high) = stat[key], stat['ci95']
    if math.isnan(value):
        return 'n/a'
    return f"{value:.3f}" + ('' if math.isnan(low) else f" [{low:.3f}, {high:.3f}]")


def format_table(rows: tp.List[dict], vs_baseline: tp.List[dict], scale: tp.Dict[str, dict]) -> str:
    """The table of `metrics.summary.summarise`'s rows, the scale rows under them (ceiling, floors), and each row
    against the baseline."""
    head = '| pool | CFG | λ | seeds | ' + ' | '.join(f"{title}{ARROWS[up]}" for _, title, up in METRICS) + ' |'
    lines = [head, '|' + '---|' * (4 + len(METRICS))]
    for entry in rows:
        cells = [_cell(entry[key]) for key, _, _ in METRICS]
        lines.append(f"| {entry['pool']} | {entry['cfg']:g} | {entry['lambda']:g} | {len(entry['seeds'])} | "
                     + ' | '.join(cells) + ' |')
    for name, title in (('ceiling', 'ceiling: references after the codec round trip'),
                        ('floor', 'floor: references against shuffled captions (all pairs)'),
                        ('unconditional', 'floor: the λ=0 LM given empty captions')):
        if name not in scale:
            continue
        metrics = scale[name]
        cells = [f"{metrics[key]:.3f}" if key in metrics else '' for key, _, _ in METRICS]
        lines.append(f"| {title} | | | | " + ' | '.join(cells) + ' |')
    lines.append('')
    if 'ceiling' in scale:  # a combined table (`combine_results`) has no single scale
        lines.append(f"Test captions: {scale['ceiling']['num_clips']} (held-out source pairs); the judge on the clean "
                     f"references: count acc {scale['judge_clean']['count_acc']:.3f}, source F1 "
                     f"{scale['judge_clean']['source_f1']:.3f}, order acc {scale['judge_clean']['order_acc']:.3f}. "
                     "Judge metrics: pooled over seeds and captions, 95 % bootstrap interval (seeds and captions "
                     "resampled); valid ce, KL, FD: mean over seeds, 95 % Student-t interval.")
    if vs_baseline:
        lines += ['', f"Against the baseline (pool {BASELINE.pool}, CFG {BASELINE.cfg:g}, λ {BASELINE.weight:g}), "
                  "paired over the same seeds and captions: difference [95 % bootstrap interval] (permutation p)", '',
                  '| pool | CFG | λ | '
                  + ' | '.join(f"Δ {title}" for key, title, _ in METRICS if key in JUDGE_METRICS) + ' |',
                  '|' + '---|' * (3 + len(JUDGE_METRICS))]
        for entry in vs_baseline:
            cells = [f"{_cell(entry[key], 'difference')} (p {entry[key]['p_value']:.3g})" for key in JUDGE_METRICS]
            lines.append(f"| {entry['pool']} | {entry['cfg']:g} | {entry['lambda']:g} | " + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def results_markdown(table: str, results: tp.Dict[str, tp.Any], command: str, plot: str) -> str:
    """A results page: the table, how it was made and how long it took, beside the paper's setting."""
    timings = results['timings_s']
    bench = results['benchmark']
    return '\n'.join([
        '# Miniature Table 1: RR on the embedded synthetic benchmark', '',
        f"<!-- Written whole by `{command}`; a rerun replaces it. The reading of it is docs/results.md. -->", '',
        f"Made by `{command}` on {os.cpu_count()} CPU cores in {sum(timings.values()) / 60:.0f} min "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}; stages cached by earlier runs count as "
        "their loading time). Benchmark: seed "
        f"{bench['seed']}, {bench['num_clips']} clips, version {bench['version']}; codec sha256 "
        f"{results['codec']['sha256'][:16]}...; seeds and test captions fixed before training, none dropped.", '',
        table, '',
        f"![comparison]({plot})", '',
        "Judge metrics: count acc (the counted source heard the right number of times), count slope (events "
        "heard per event asked: the least-squares slope of the heard count on the caption's count over clips, "
        "1 for counts followed exactly, ~0 for counts ignored), source F1 (sources heard vs named), order acc "
        "('then' captions in the named order); the scale rows bound what any LM can reach through this codec "
        "(ceiling) and what ignoring the captions gives (floors).", '',
        "The paper's Table 1 reports FAD, KL and CLAP of 300M LMs on AudioCaps-scale data; those columns are not "
        "reproduced here (no such data or evaluation models offline) and their values are not transcribed: read "
        "them in Table 1 of arXiv 2309.08773. This table asks the same question (does RR make the audio follow "
        "its caption?) with judge metrics on a benchmark whose captions control counts, sources and order.", ''])


def write_page(page: Path, text: str) -> None:
    """Writes a generated page whole, in one rename: a crash leaves the old page or the new one, never half."""
    page.parent.mkdir(parents=True, exist_ok=True)
    partial = page.with_name(page.name + '.partial')
    partial.write_text(text.rstrip('\n') + '\n')
    partial.replace(page)


def combined_markdown(combined: tp.Dict[str, tp.Any]) -> str:
    """`metrics.summary.combine_results` as a table and the note saying what was pooled."""
    table = format_table(combined['rows'], combined['vs_baseline'], {})
    seeds = ', '.join(str(bench['seed']) for bench in combined['benchmarks'])
    note = (f"Benchmarks of data seeds {seeds} pooled: judge metrics over all their captions and each row's LM "
            "seeds (95 % bootstrap interval), valid ce, KL, FD: mean over seeds of the benchmarks' mean.")
    if combined['dropped_rows']:
        note += f" Rows not in every run, left out: {combined['dropped_rows']}."
    return table + '\n\n' + note
