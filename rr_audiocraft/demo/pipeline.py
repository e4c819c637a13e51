"""The demo's stages in order: codec → data → judge → scale → train → generate → report (each cached, see the
package docstring), and `combine`, which pools finished runs on other benchmarks into one table."""
import json
import shutil
import time
import typing as tp
from pathlib import Path

from ..assets import AssetError, compression_reference
from ..data.synth import load_clips
from ..metrics.judge.asset import JUDGE_FILE, judge_asset, ship_judge, shipped_judge
from ..metrics.summary import combine_results, summarise
from .inputs import codec_stage, data_stage, judge_stage
from .plots import plot_comparison, plot_curves, plot_spectrograms
from .presets import DemoSettings
from .progress import log
from .render import generate_and_judge, unconditional_floor
from .report import combined_markdown, format_table, results_markdown, write_page
from .scale import scale_stage
from .study import prepare_demo_study
from .training import train_stage

GENERATION_SECONDS = 4.0  # every LM renders each test caption this long (the clips' length)
GENERATION_SEED = 0


def run(settings: DemoSettings) -> None:
    """Runs the demo with `settings`; writes results.json, table.md, the plots, the samples and the study into
    `settings.out`, and the results page when `settings.page` is set.

    Raises:
        SystemExit: an input is corrupted or does not match (the message says what fixes it).
    """
    data_dir, out_dir, codec_dir = settings.data.resolve(), settings.out.resolve(), settings.codec.resolve()
    timings: tp.Dict[str, float] = {}

    def timed(stage: str, fn: tp.Callable[[], tp.Any]) -> tp.Any:
        start = time.time()
        value = fn()
        timings[stage] = time.time() - start
        log(stage, f"done in {timings[stage]:.0f} s")
        return value

    # Every input is checked before anything is trained: the codec's checksum, the benchmark's stamp.
    try:
        codec, codec_sha = timed('codec', lambda: codec_stage(codec_dir))
        stamp = timed('data', lambda: data_stage(data_dir, settings.clips, seed=settings.data_seed))
    except ValueError as error:  # AssetError, BenchmarkError: the message says what fixes it
        raise SystemExit(f"error: {error}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    # Reference clips and ground truth of the held-out test split (16 kHz), read once.
    test_wavs, test_truths, test_rate = load_clips(data_dir / 'egs' / 'test')
    fitting = not (data_dir / JUDGE_FILE).exists()  # else loaded: its fitting time is not known here
    try:
        judge = timed('judge', lambda: judge_stage(data_dir, stamp, codec, codec_sha))
    except AssetError as error:  # the shipped judge is corrupted: the message says what fixes it
        raise SystemExit(f"error: {error}") from None
    if settings.ship_judge:
        if shipped_judge(judge.fitted_on) is not None:
            log('judge', f"{judge_asset(stamp)} already holds this judge")
        else:
            ship_judge(data_dir / JUDGE_FILE, timings['judge'] if fitting else None, settings.command)
    scale = timed('scale', lambda: scale_stage(judge, codec, test_wavs, test_truths, test_rate))
    results: tp.Dict[str, tp.Any] = {
        'benchmark': {**stamp, 'path': str(data_dir)},
        'codec': {'path': str(codec_dir), 'sha256': codec_sha}, 'device': settings.device,
        **scale, 'timings_s': timings}
    if settings.until == 'ceiling':
        (out_dir / 'results.json').write_text(json.dumps(results, indent=1) + '\n')
        print(f"Scale of the judge: {out_dir / 'results.json'}")
        return
    log('train', f"LMs ({settings.solver}) on {settings.device}, {settings.jobs} at a time")
    sheeps = timed('train', lambda: train_stage(
        data_dir, compression_reference(codec_dir), settings.solver, settings.seeds, settings.rows,
        settings.lm_overrides, jobs=settings.jobs, cache_epochs=settings.cache_epochs, device=settings.device))
    runs = timed('generate', lambda: generate_and_judge(
        sheeps, judge, test_wavs, test_truths, out_dir, GENERATION_SECONDS, gen_seed=GENERATION_SEED,
        device=settings.device))
    scale['unconditional'] = timed('unconditional', lambda: unconditional_floor(
        sheeps, judge, test_wavs, test_truths, out_dir, GENERATION_SECONDS, gen_seed=GENERATION_SEED,
        device=settings.device))
    results['unconditional'] = scale['unconditional']
    rows, vs_baseline = summarise(runs)
    table = format_table(rows, vs_baseline, scale)
    plot_comparison(rows, out_dir / 'comparison.png')
    plot_spectrograms(runs, test_wavs, test_truths, out_dir / 'spectrograms.png')
    plot_curves(sheeps, out_dir / 'curves.png')
    (out_dir / 'table.md').write_text(table + '\n')
    results.update({'rows': rows, 'vs_baseline': vs_baseline, 'runs': runs})
    (out_dir / 'results.json').write_text(json.dumps(results, indent=1) + '\n')
    print('\n' + table + '\n')
    print('Stage wall times: ' + ', '.join(f"{k} {v:.0f} s" for k, v in timings.items()) +
          f" (total {sum(timings.values()):.0f} s)")
    if settings.page is not None:
        plot = settings.page.with_suffix('.png')
        plot.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out_dir / 'comparison.png', plot)
        write_page(settings.page, results_markdown(table, results, settings.command, plot.name))
        print(f"Results page: {settings.page}")
    print(f"Plot: {out_dir / 'comparison.png'}\nSpectrograms: {out_dir / 'spectrograms.png'}\n"
          f"Training curves: {out_dir / 'curves.png'} (TensorBoard: tensorboard --logdir outputs/xps)\n"
          f"Generated wavs: {out_dir / 'samples'}\nTable: {out_dir / 'table.md'}, "
          f"all numbers: {out_dir / 'results.json'}")
    # The paper's human evaluation (Table 4) as a blind pairwise study of the baseline and the best RR row.
    prepare_demo_study(runs, test_truths, out_dir / 'study')


def combine(folders: tp.Sequence[Path], out_dir: Path) -> None:
    """Pools finished runs of the same rows on different benchmarks (`metrics.summary.combine_results`) and writes
    combined.json and combined.md into `out_dir`.

    Raises:
        ValueError: the runs cannot be pooled (the message says why).
    """
    combined = combine_results(folders)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = combined_markdown(combined)
    (out_dir / 'combined.json').write_text(json.dumps(combined, indent=1) + '\n')
    (out_dir / 'combined.md').write_text(page + '\n')
    print(page + f"\nWritten: {out_dir / 'combined.json'}, {out_dir / 'combined.md'}")
