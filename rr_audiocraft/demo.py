"""`make demo`: a miniature Table 1 of arXiv 2309.08773, offline, on a 2-core CPU.

Stages, each cached so a rerun picks up where the last one stopped:
  1. data     synthetic captioned sounds (`rr_audiocraft.data.synth`) in data/synth
  2. encodec  a tiny EnCodec trained by AudioCraft's stock compression solver (a Dora XP)
  3. judge    the generator-independent judge, fitted on the training audio, checked on held-out clips,
              and on the same clips after the EnCodec round trip (the ceiling for any LM)
  4. train    the tiny grid `dora_grids/rr_ablation_tiny` through `grid_local` (λ=0 vs λ=3, ≥ 3 seeds;
              `--full`: the nine Table 1 rows)
  5. generate every trained LM renders the test captions with CFG (held-out source pairs)
  6. judge    judge metrics per XP, then a Table-1-style table (mean ± 95 % CI over seeds), a PNG plot,
              the generated wavs and a PNG grid of spectrograms.
"""
import argparse
import json
import math
import os
import time
import typing as tp
from pathlib import Path

from . import REPO_ROOT
from .data.synth import datasource_overrides, load_clips

DEFAULT_DATA = REPO_ROOT / 'data' / 'synth'
DEFAULT_OUT = REPO_ROOT / 'demo_out'
# Shown in the table, in this order: (history or report key, column title, higher is better).
METRICS = [('source_f1', 'source F1', True), ('count_acc', 'count acc', True), ('order_acc', 'order acc', True),
           ('kl', 'KL', False), ('fd', 'FD', False), ('valid_ce', 'valid ce', False)]


def log(stage: str, message: str) -> None:
    print(f"[demo:{stage}] {message}", flush=True)


def data_stage(data_dir: Path, num_clips: int, seed: int) -> None:
    from .data.synth import generate_dataset
    stamp = data_dir / 'demo_stamp.json'
    wanted = {'num_clips': num_clips, 'seed': seed}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        log('data', f"{data_dir} is up to date ({num_clips} clips, seed {seed})")
        return
    log('data', f"synthesising {num_clips} captioned clips (seed {seed}) into {data_dir}")
    generate_dataset(data_dir, num_clips=num_clips, seed=seed)
    stamp.write_text(json.dumps(wanted))


def run_dora(overrides: tp.List[str], stage: str) -> str:
    """`dora run` one XP (resumed if it was interrupted), its output in the XP folder; returns the sig."""
    import subprocess
    import sys
    from .train import main
    xp = main.get_xp(overrides)
    history = xp.folder / 'history.json'
    if history.exists() and len(json.loads(history.read_text())) >= xp.cfg.optim.epochs:
        log(stage, f"XP {xp.sig} already trained ({xp.folder})")
        return xp.sig
    xp.folder.mkdir(parents=True, exist_ok=True)
    log(stage, f"training XP {xp.sig} (log: {xp.folder / 'demo.log'})")
    with open(xp.folder / 'demo.log', 'w') as out:
        proc = subprocess.run([sys.executable, '-m', 'dora', '-P', 'rr_audiocraft', 'run', *overrides],
                              cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{stage}: XP {xp.sig} failed; see {xp.folder / 'demo.log'}")
    return xp.sig


def judge_stage(data_dir: Path, wavs: tp.List[tp.Any], truths: tp.List[dict]) -> tp.Any:
    from .metrics.judge import Judge
    path = data_dir / 'judge.pt'
    judge = None
    if path.exists():
        try:
            judge = Judge.load(path)
            log('judge', f"loaded {path}")
        except ValueError as exc:  # saved by another version of the judge code
            log('judge', f"refitting: {exc}")
    if judge is None:
        log('judge', "fitting the judge on the training audio")
        judge = Judge.fit(data_dir / 'egs' / 'train')
        judge.save(path)
    check = judge.self_check(wavs, truths)
    log('judge', f"self-check on {check['num_clips']} held-out reference clips: count acc "
                 f"{check['count_acc']:.3f}, source F1 {check['source_f1']:.3f}, order acc {check['order_acc']:.3f}")
    if check['count_acc'] < 0.9 or check['source_f1'] < 0.9:
        log('judge', "WARNING: the judge misses its own bar (count acc and source F1 >= 0.9): the judge "
                     "metrics below mean nothing")
    return judge, check


# Bands of the codec's round-trip error report (Hz): the judge's mel features span 20 Hz - 8 kHz.
BAND_EDGES = (0., 1000., 2000., 4000., 8000.)


def band_error_db(reference: tp.Any, decoded: tp.Any, sample_rate: int,
                  edges: tp.Sequence[float] = BAND_EDGES) -> tp.Dict[str, tp.Optional[float]]:
    """Energy of a round trip's error relative to the reference's, per frequency band, in dB.

    -20 dB: the band comes through with 1 % of its energy wrong; 0 dB: the error is as large as the
    band itself, i.e. nothing of it comes through (or all of it comes back in the wrong place).

    Args:
        reference: clips [N, T] (torch tensor or numpy array).
        decoded: the same clips after the round trip, [N, T].
        sample_rate: their sample rate; bands above its Nyquist frequency are left out.
        edges: band edges in Hz, increasing.
    Returns:
        dict 'LOW-HIGH Hz' -> dB, None for a band with no reference energy.
    """
    import numpy as np
    reference, decoded = np.asarray(reference, dtype=np.float64), np.asarray(decoded, dtype=np.float64)
    if reference.shape != decoded.shape or reference.ndim != 2:
        raise ValueError(f"band_error_db: expected two [N, T] batches of the same shape, got {reference.shape} "
                         f"and {decoded.shape}.")
    freqs = np.fft.rfftfreq(reference.shape[-1], 1 / sample_rate)
    reference_power = (np.abs(np.fft.rfft(reference)) ** 2).sum(0)
    error_power = (np.abs(np.fft.rfft(decoded - reference)) ** 2).sum(0)
    bands: tp.Dict[str, tp.Optional[float]] = {}
    for low, high in zip(edges[:-1], edges[1:]):
        if low >= sample_rate / 2:
            break
        in_band = (freqs >= low) & (freqs < high)
        energy = reference_power[in_band].sum()
        bands[f"{low:g}-{high:g} Hz"] = float(10 * np.log10(error_power[in_band].sum() / energy)) if energy > 0 else None
    return bands


def codec_ceiling(compression_sig: str, judge: tp.Any, wavs: tp.List[tp.Any], truths: tp.List[dict]) -> dict:
    """Judge the test references after a round trip through the EnCodec the LMs train on.

    No LM can beat its codec: these numbers bound what generation can reach, and when the codec does
    not reconstruct, the judge metrics of generated audio mean nothing about the LMs. Beside the
    judge's metrics it reports what goes wrong: the error per frequency band and the sources the
    judge hears that are not there (or misses).
    """
    import torch
    from audiocraft.solvers.compression import CompressionSolver
    model = CompressionSolver.model_from_checkpoint(f'//sig/{compression_sig}', device='cpu').eval()
    audio = torch.stack([torch.as_tensor(w).reshape(1, -1) for w in wavs])  # [N, 1, T]
    with torch.no_grad():
        codes, scale = model.encode(audio)
        decoded = model.decode(codes, scale)[..., :audio.shape[-1]]
    predictions = judge.predict(list(decoded[:, 0].numpy()))
    ceiling = judge.score(predictions, truths)
    ceiling['relative_mse'] = float(((decoded - audio) ** 2).mean() / (audio ** 2).mean())
    ceiling['band_error_db'] = band_error_db(audio[:, 0], decoded[:, 0], model.sample_rate)
    ceiling.update(judge.source_errors(predictions, truths))
    log('encodec', f"judge on the test references after the codec round trip (the ceiling for any LM): count acc "
                   f"{ceiling['count_acc']:.3f}, source F1 {ceiling['source_f1']:.3f}; relative MSE "
                   f"{ceiling['relative_mse']:.3f}")
    log('encodec', "round-trip error vs reference energy per band (0 dB: nothing of the band comes through): " +
        ', '.join(f"{band} {'n/a' if db is None else f'{db:.1f} dB'}" for band, db in ceiling['band_error_db'].items()))
    for key, what in (('heard_absent', 'heard but not there'), ('missed', 'missed')):
        if ceiling[key]:
            log('encodec', f"sources the judge {what} after the round trip: " +
                ', '.join(f"{source} in {n}/{ceiling['num_clips']}" for source, n in ceiling[key].items()))
    if ceiling['count_acc'] < 0.9 or ceiling['source_f1'] < 0.9:
        log('encodec', "WARNING: the tiny EnCodec loses what the judge listens for: the judge metrics of generated "
                       "audio below cannot tell the LMs apart (train it longer: --encodec optim.epochs=N; see "
                       "docs/tiny-encodec.md)")
    return ceiling


def train_stage(data_dir: Path, compression_sig: str, seeds: tp.List[int], full: bool,
                lm_overrides: tp.List[str]) -> tp.List[tp.Any]:
    from . import grid_local
    from .train import main
    os.environ['RR_TINY_DATA'] = str(data_dir)
    os.environ['RR_TINY_COMPRESSION'] = compression_sig
    os.environ['RR_TINY_SEEDS'] = ','.join(map(str, seeds))
    os.environ['RR_TINY_FULL'] = '1' if full else '0'
    os.environ['RR_TINY_OVERRIDES'] = ' '.join(lm_overrides)
    status = grid_local.run_grid_locally('rr_ablation_tiny')
    if status != 0:
        raise RuntimeError("train: some XPs of rr_ablation_tiny failed (see the table above); rerun `make demo` "
                           "to retry them")
    explorer = grid_local.load_explorer(main, 'rr_ablation_tiny')
    return [sheep for sheep in grid_local.register(main, explorer, 'rr_ablation_tiny')
            if sheep.xp.cfg.solver != 'compression']


def row_of(cfg: tp.Any) -> tp.Tuple[str, float, float]:
    """(pooling, CFG ratio, λ) as Table 1 writes it: '–' pooling when RR is off."""
    weight = float(cfg.rr.weight)
    return (cfg.rr.pooling if weight > 0 else '–', float(cfg.classifier_free_guidance.training_dropout), weight)


def generate_and_judge(sheeps: tp.List[tp.Any], judge: tp.Any, wavs: tp.List[tp.Any], truths: tp.List[dict],
                       data_dir: Path, out_dir: Path, duration: float, gen_seed: int) -> tp.List[dict]:
    import soundfile as sf
    import torch
    from .models import RRAudioGen
    captions = [truth['description'] for truth in truths]
    results = []
    for position, sheep in enumerate(sheeps, 1):
        cfg, sig = sheep.xp.cfg, sheep.xp.sig
        cache = sheep.xp.folder / f'demo_judge_seed{gen_seed}.json'
        pool, cfg_ratio, weight = row_of(cfg)
        label = f"pool={pool} cfg={cfg_ratio:g} λ={weight:g} seed={cfg.seed}"
        sample_dir = out_dir / 'samples' / f"pool-{pool}_cfg-{cfg_ratio:g}_lambda-{weight:g}" / f"seed{cfg.seed}"
        # Cached judge results count only for the judge that produced them (it is refitted when stale).
        judge_stamp = (data_dir / 'judge.pt').stat().st_mtime_ns
        cached = json.loads(cache.read_text()) if cache.exists() else {}
        if sample_dir.exists() and cached.get('judge_stamp') == judge_stamp:
            metrics = cached['metrics']
            log('generate', f"[{position}/{len(sheeps)}] {sig} ({label}): cached")
        else:
            start = time.time()
            model = RRAudioGen.get_pretrained(f'//sig/{sig}', device='cpu')
            model.set_generation_params(use_sampling=True, top_k=250, temperature=1.0, duration=duration,
                                        cfg_coef=float(cfg.classifier_free_guidance.inference_coef))
            torch.manual_seed(gen_seed)
            with torch.no_grad():
                generated = model.generate(captions)[:, 0].numpy()  # [N, T]
            sample_dir.mkdir(parents=True, exist_ok=True)
            for index, wav in enumerate(generated):
                sf.write(sample_dir / f'{index:03d}.wav', wav, model.sample_rate)
            metrics = judge.report(list(generated), truths, wavs, sample_rate=model.sample_rate)
            cache.write_text(json.dumps({'judge_stamp': judge_stamp, 'metrics': metrics}))
            log('generate', f"[{position}/{len(sheeps)}] {sig} ({label}): {len(captions)} clips in "
                            f"{time.time() - start:.0f} s, count acc {metrics['count_acc']:.3f}, "
                            f"source F1 {metrics['source_f1']:.3f}")
        history_path = sheep.xp.folder / 'history.json'
        history = json.loads(history_path.read_text())
        if history[-1].get('judge') != metrics:
            # Recorded as a stage of the last epoch, so the grid's explorer table shows the judge metrics.
            history[-1]['judge'] = metrics
            history_path.write_text(json.dumps(history))
        metrics = {**metrics, 'valid_ce': history[-1]['valid']['ce'], 'train_rr': history[-1]['train'].get('rr')}
        results.append({'sig': sig, 'row': list(row_of(cfg)), 'seed': int(cfg.seed), 'samples': str(sample_dir),
                        'metrics': metrics})
    return results


def mean_ci(values: tp.List[float]) -> tp.Tuple[float, float]:
    """Mean and half-width of the 95 % Student-t confidence interval (NaN width for one value)."""
    import numpy as np
    from scipy import stats
    values_arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(values_arr) == 0:
        return float('nan'), float('nan')
    if len(values_arr) == 1:
        return float(values_arr[0]), float('nan')
    half = stats.t.ppf(0.975, len(values_arr) - 1) * values_arr.std(ddof=1) / math.sqrt(len(values_arr))
    return float(values_arr.mean()), float(half)


def summarise(results: tp.List[dict]) -> tp.List[dict]:
    rows: tp.Dict[tuple, tp.List[dict]] = {}
    for result in results:
        rows.setdefault(tuple(result['row']), []).append(result)
    summary = []
    for row, runs in rows.items():
        entry = {'row': list(row), 'seeds': sorted(r['seed'] for r in runs)}
        for key, _, _ in METRICS:
            entry[key] = mean_ci([r['metrics'].get(key) for r in runs])
        summary.append(entry)
    return summary


def format_table(summary: tp.List[dict], judge_check: dict, ceiling: dict) -> str:
    head = '| pool | CFG | λ | seeds | ' + ' | '.join(
        f"{title} {'↑' if up else '↓'}" for _, title, up in METRICS) + ' |'
    lines = [head, '|' + '---|' * (4 + len(METRICS))]
    for entry in summary:
        pool, cfg_ratio, weight = entry['row']
        cells = []
        for key, _, _ in METRICS:
            mean, half = entry[key]
            cells.append('n/a' if math.isnan(mean) else f"{mean:.3f}" + ('' if math.isnan(half) else f" ± {half:.3f}"))
        lines.append(f"| {pool} | {cfg_ratio:g} | {weight:g} | {len(entry['seeds'])} | " + ' | '.join(cells) + ' |')
    lines.append('')
    lines.append(f"Judge on {judge_check['num_clips']} held-out reference clips: count acc "
                 f"{judge_check['count_acc']:.3f}, source F1 {judge_check['source_f1']:.3f}, order acc "
                 f"{judge_check['order_acc']:.3f}; on the same clips after the EnCodec round trip (the ceiling "
                 f"for any LM): count acc {ceiling['count_acc']:.3f}, source F1 {ceiling['source_f1']:.3f}. "
                 "Mean ± 95 % CI (Student t) over seeds.")
    return '\n'.join(lines)


def plot_comparison(summary: tp.List[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.4))
    labels = [f"{e['row'][0]}/{e['row'][1]:g}/{e['row'][2]:g}" for e in summary]
    for ax, (key, title, up) in zip(axes, METRICS):
        means = np.array([e[key][0] for e in summary])
        halves = np.nan_to_num(np.array([e[key][1] for e in summary]))
        ax.bar(range(len(summary)), means, yerr=halves, capsize=4,
               color=['tab:gray' if e['row'][2] == 0 else 'tab:blue' for e in summary])
        ax.set_xticks(range(len(summary)), labels, rotation=45, ha='right', fontsize=7)
        ax.set_title(f"{title} {'↑' if up else '↓'}")
    fig.suptitle('RR miniature Table 1 (pool / CFG / λ), mean ± 95 % CI over seeds')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_spectrograms(results: tp.List[dict], wavs: tp.List[tp.Any], truths: tp.List[dict], path: Path,
                      num_captions: int = 4) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    import soundfile as sf
    first_seed: tp.Dict[tuple, dict] = {}
    for result in sorted(results, key=lambda r: r['seed']):
        first_seed.setdefault(tuple(result['row']), result)
    columns = [('reference', None)] + [(f"pool={r[0]} cfg={r[1]:g} λ={r[2]:g}", res)
                                       for r, res in first_seed.items()]
    picks = list(range(min(num_captions, len(truths))))
    fig, axes = plt.subplots(len(picks), len(columns), figsize=(3.3 * len(columns), 2.4 * len(picks)), squeeze=False)
    for i, index in enumerate(picks):
        for j, (title, result) in enumerate(columns):
            wav = wavs[index] if result is None else sf.read(Path(result['samples']) / f'{index:03d}.wav',
                                                             dtype='float32')[0]
            axes[i][j].specgram(np.asarray(wav) + 1e-7, NFFT=512, Fs=16000, noverlap=384, cmap='magma')
            axes[i][j].set_title(f"{title}\n“{truths[index]['description']}”" if j == 0 else title, fontsize=7,
                                 loc='left')
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog='python -m rr_audiocraft.demo', description=__doc__.split('\n')[0])
    parser.add_argument('--full', action='store_true', help="all nine Table 1 rows instead of λ=0 vs λ=3")
    parser.add_argument('--data', type=Path, default=DEFAULT_DATA, help="benchmark folder (default: data/synth)")
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT, help="results folder (default: demo_out)")
    parser.add_argument('--clips', type=int, default=600, help="clips in the benchmark (train/valid/test 80/10/10)")
    parser.add_argument('--seeds', default='0,1,2', help="training seeds, comma-separated (default 0,1,2)")
    parser.add_argument('--encodec', nargs='*', default=['optim.epochs=6'],
                        help="extra overrides of the tiny EnCodec XP (solver=rr_compression/tiny)")
    parser.add_argument('--lm', nargs='*', default=['optim.epochs=3', 'optim.updates_per_epoch=50',
                                                    # 50 batches of 8 random segments per epoch (stock ends an
                                                    # epoch early when its loader runs out)
                                                    'dataset.train.num_samples=400',
                                                    # the stock last-epoch generate stage: one short sample
                                                    'dataset.generate.num_samples=1', 'dataset.generate.batch_size=1',
                                                    'generate.lm.gen_duration=1'],
                        help="extra overrides of each LM XP (solver=rr_audiogen/tiny)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(',') if s.strip()]
    if len(seeds) < 2:
        parser.error("--seeds: give at least 2 seeds for a confidence interval")
    if args.clips < 50:
        parser.error("--clips: at least 50 clips (the judge and the test split need them)")
    data_dir, out_dir = args.data.resolve(), args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: tp.Dict[str, float] = {}

    def timed(stage: str, fn: tp.Callable[[], tp.Any]) -> tp.Any:
        start = time.time()
        value = fn()
        timings[stage] = time.time() - start
        log(stage, f"done in {timings[stage]:.0f} s")
        return value

    timed('data', lambda: data_stage(data_dir, args.clips, seed=0))
    compression_sig = timed('encodec', lambda: run_dora(
        ['solver=rr_compression/tiny', *datasource_overrides(data_dir), *args.encodec], 'encodec'))
    # Reference clips and ground truth of the held-out test split (16 kHz), read once.
    test_wavs, test_truths, _ = load_clips(data_dir / 'egs' / 'test')
    judge, judge_check = timed('judge', lambda: judge_stage(data_dir, test_wavs, test_truths))
    ceiling = timed('ceiling', lambda: codec_ceiling(compression_sig, judge, test_wavs, test_truths))
    sheeps = timed('train', lambda: train_stage(data_dir, compression_sig, seeds, args.full, args.lm))
    duration = 4.0
    results = timed('generate', lambda: generate_and_judge(sheeps, judge, test_wavs, test_truths, data_dir,
                                                                 out_dir, duration, gen_seed=0))
    summary = summarise(results)
    table = format_table(summary, judge_check, ceiling)
    plot_comparison(summary, out_dir / 'comparison.png')
    plot_spectrograms(results, test_wavs, test_truths, out_dir / 'spectrograms.png')
    (out_dir / 'table.md').write_text(table + '\n')
    (out_dir / 'results.json').write_text(json.dumps({'judge_check': judge_check, 'codec_ceiling': ceiling, 'runs': results,
                                                      'summary': summary, 'timings_s': timings}, indent=1))
    print('\n' + table + '\n')
    print('Stage wall times: ' + ', '.join(f"{k} {v:.0f} s" for k, v in timings.items()) +
          f" (total {sum(timings.values()):.0f} s)")
    print(f"Plot: {out_dir / 'comparison.png'}\nSpectrograms: {out_dir / 'spectrograms.png'}\n"
          f"Generated wavs: {out_dir / 'samples'}\nTable: {out_dir / 'table.md'}, all numbers: {out_dir / 'results.json'}")


if __name__ == '__main__':
    main()
