"""The demo's figures: the table as bars with intervals, spectrograms of a few test captions, training curves."""
import json
import math
import textwrap
import typing as tp
from pathlib import Path

import numpy as np
import soundfile as sf
from matplotlib import mlab
from matplotlib.figure import Figure  # drawn straight to files: no pyplot, no GUI backend

from ..table1 import Row
from .report import ARROWS, METRICS

PANEL_COLUMNS = 3  # the comparison plot's panels per line: nine metrics read as a 3 x 3 grid


def _label(entry: tp.Mapping[str, tp.Any]) -> str:
    return Row.from_record([entry['pool'], entry['cfg'], entry['lambda']]).label


def plot_comparison(rows: tp.List[dict], path: Path) -> None:
    """One panel per table column (`report.METRICS`), a bar per row with its 95 % interval; grey: no RR."""
    lines = math.ceil(len(METRICS) / PANEL_COLUMNS)
    width = max(3.4, 0.45 * len(rows) + 1.2)  # room for each row's label under its bar
    fig = Figure(figsize=(width * PANEL_COLUMNS, 3.0 * lines))
    axes = fig.subplots(lines, PANEL_COLUMNS, squeeze=False)
    labels = [_label(entry) for entry in rows]
    for index, ax in enumerate(axes.flat):
        if index >= len(METRICS):
            ax.set_visible(False)
            continue
        key, title, up = METRICS[index]
        means = np.array([entry[key]['mean'] for entry in rows])
        bounds = np.array([entry[key]['ci95'] for entry in rows])
        errors = np.nan_to_num(np.abs(bounds.T - means[None]))
        ax.bar(range(len(rows)), means, yerr=errors, capsize=4,
               color=['tab:gray' if entry['lambda'] == 0 else 'tab:blue' for entry in rows])
        ax.set_xticks(range(len(rows)), labels, rotation=45, ha='right', fontsize=7)
        ax.set_title(f"{title}{ARROWS[up]}", fontsize=10)
        ax.tick_params(axis='y', labelsize=8)
    fig.suptitle('RR miniature Table 1 (pool / CFG / λ), 95 % intervals; grey: no RR')
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_spectrograms(results: tp.List[dict], wavs: tp.List[tp.Any], truths: tp.List[dict], path: Path,
                      num_captions: int = 4) -> None:
    """For the first `num_captions` test captions (one line each, the caption above it): the reference and each
    row's first-seed sample, on one colour scale per line."""
    first_seed: tp.Dict[tuple, dict] = {}
    for result in sorted(results, key=lambda r: r['seed']):
        first_seed.setdefault(tuple(result['row']), result)
    columns = [('reference', None)] + [(Row.from_record(row).label, result) for row, result in first_seed.items()]
    picks = list(range(min(num_captions, len(truths))))
    fig = Figure(figsize=(2.6 * len(columns), 2.3 * len(picks)))
    axes = fig.subplots(len(picks), len(columns), squeeze=False)
    for i, index in enumerate(picks):
        cells = []
        for title, result in columns:
            wav, rate = (wavs[index], 16000) if result is None else sf.read(
                Path(result['samples']) / f"{truths[index]['name']}.wav", dtype='float32')
            power, _, _ = mlab.specgram(np.asarray(wav, dtype=np.float64) + 1e-7, NFFT=512 * rate // 16000, Fs=rate,
                                        noverlap=384 * rate // 16000)
            cells.append((title, 10 * np.log10(power + 1e-12), rate, len(wav) / rate))
        # One colour scale per line (per caption), so the reference and the samples compare directly.
        top = max(float(db.max()) for _, db, _, _ in cells)
        for j, (title, db, rate, seconds) in enumerate(cells):
            ax = axes[i][j]
            ax.imshow(db, origin='lower', aspect='auto', cmap='magma', vmin=top - 80, vmax=top,
                      extent=(0, seconds, 0, rate / 2))
            ax.set_title(title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        # The caption heads its line of panels, wrapped to the figure's width; left out of the layout, so that it
        # neither squeezes the first column nor runs into the next one.
        caption = textwrap.fill(f"“{truths[index]['description']}”", width=int(24 * len(columns)))
        note = axes[i][0].annotate(caption, xy=(0, 1), xycoords='axes fraction', xytext=(0, 13),
                                   textcoords='offset points', ha='left', va='bottom', fontsize=8, fontstyle='italic')
        note.set_in_layout(False)
    height = fig.get_figheight()
    fig.tight_layout(h_pad=3.0, rect=(0, 0, 1, 1 - 0.3 / height))  # room for the first caption
    fig.savefig(path, dpi=90)


def plot_curves(sheeps: tp.List[tp.Any], path: Path) -> None:
    """Training curves of every XP from its Dora history: train and valid ce, and valid rr / rr_corr
    (captions nulled, every λ), one colour per row, one line per seed."""
    panels = [('train', 'ce', 'train ce'), ('valid', 'ce', 'valid ce'), ('valid', 'rr', 'valid rr (L_rr)'),
              ('valid', 'rr_corr', 'valid rr_corr')]
    fig = Figure(figsize=(3.6 * len(panels), 3.2))
    axes = fig.subplots(1, len(panels))
    colours: tp.Dict[Row, tp.Any] = {}
    first_seed = min(sheep.xp.cfg.seed for sheep in sheeps)
    for sheep in sheeps:
        history = json.loads((sheep.xp.folder / 'history.json').read_text())
        row = Row.from_cfg(sheep.xp.cfg)
        colour = colours.setdefault(row, f"C{len(colours) % 10}")
        for ax, (stage, key, title) in zip(axes, panels, strict=True):
            points = [(epoch, entry[stage][key]) for epoch, entry in enumerate(history, 1)
                      if key in entry.get(stage, {})]
            if points:
                ax.plot(*zip(*points, strict=True), color=colour, alpha=0.8,
                        label=row.label if sheep.xp.cfg.seed == first_seed else None)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel('epoch')
    axes[0].legend(fontsize=6, title='pool/CFG/λ', title_fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
