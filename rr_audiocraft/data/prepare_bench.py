"""How fast `rr_audiocraft.data.prepare` reads audio, against a bare `soundfile.info` loop on the same files.

    python -m rr_audiocraft.data.prepare_bench [--clips 10000] [--rounds 3] [--name prepare_bench]

Generates `--clips` short noise clips (16 kHz mono 16-bit wav, `--duration` s) and a csv naming them, then
times, in alternating rounds over the same files (all in the page cache: they were just written):
- `bare_info`: `for path in files: soundfile.info(path)`, one process: the header only, no samples;
- `probe_<pool>_<workers>`: prepare's probe phase (`probe_all`, empty cache): one open per file, header plus
  samples until the first non-silent block, in a process or thread pool (and serially, `probe_serial`);
- `prepare_cold`: the whole command in-process, default settings (csv read, folder walk, probes, links,
  sidecars, manifest, report) into an empty folder, its probe and write phases also recorded apart;
  `prepare_rerun`: the same into the folder it wrote, the probes cached.
Reported: the median over rounds of each one's files/s, and of its speed ratio to the bare loop of the same
round, written to `bench/results/NAME.json` and printed.
Not part of `make test` (it writes ~10,000 files and takes about a minute).
"""
from .. import configured  # noqa: F401  (first: the process set-up AudioCraft needs at import)
import argparse
import contextlib
import csv
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import typing as tp
from pathlib import Path

import numpy as np
import soundfile

from rr_audiocraft.data import prepare as prep

RESULTS = Path(__file__).resolve().parents[2] / 'bench' / 'results'


def generate_clips(folder: Path, count: int, duration: float, sample_rate: int = 16000,
                   seed: int = 0) -> tp.List[str]:
    """`count` noise clips `clip_NNNNN.wav` and a `captions.csv` (`path,caption`) in `folder`."""
    audio = folder / 'audio'
    audio.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    noise = (0.1 * rng.standard_normal(int(duration * sample_rate))).astype(np.float32)
    paths = []
    with open(folder / 'captions.csv', 'w', newline='', encoding='utf-8') as file:
        writer = csv.writer(file)
        writer.writerow(['path', 'caption'])
        for index in range(count):
            name = f'clip_{index:05d}.wav'
            soundfile.write(audio / name, np.roll(noise, index), sample_rate, subtype='PCM_16')
            writer.writerow([name, f'noise clip number {index}'])
            paths.append(str(audio / name))
    return paths


def bare_info(paths: tp.List[str]) -> None:
    for path in paths:
        soundfile.info(path)


def run_prepare(folder: Path, out: Path, workers: int, pool: str) -> tp.Dict[str, tp.Any]:
    args = prep.get_parser().parse_args([
        'csv', '--captions', str(folder / 'captions.csv'), '--audio', str(folder / 'audio'), '--out', str(out),
        '--min-duration', '0', '--workers', str(workers), '--pool', pool, '--no-progress'])
    with open(os.devnull, 'w') as devnull, contextlib.redirect_stderr(devnull):
        code, report = prep.prepare(args)
    assert code == 0 and report['kept'] == len(list((folder / 'audio').iterdir())), report['problem_counts']
    return report


def main(argv: tp.Optional[tp.List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m rr_audiocraft.data.prepare_bench', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--clips', type=int, default=10000)
    parser.add_argument('--duration', type=float, default=1.0, help='seconds per clip (default 1)')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--workers', type=int, default=prep.get_parser().get_default('workers'))
    parser.add_argument('--dir', type=Path, help='work folder (default: a temporary one, removed after)')
    parser.add_argument('--name', default='prepare_bench')
    args = parser.parse_args(argv)

    work = args.dir or Path(tempfile.mkdtemp(prefix='prepare_bench_'))
    started = time.perf_counter()
    paths = generate_clips(work, args.clips, args.duration)
    print(f"{args.clips} clips generated in {time.perf_counter() - started:.1f} s under {work}", file=sys.stderr)
    paths.sort()  # the order prepare probes in
    workers = args.workers
    cases: tp.Dict[str, tp.Callable[[], None]] = {
        'bare_info': lambda: bare_info(paths),
        'probe_serial': lambda: prep.probe_all(paths, {}, 1, 'process', progress=False),
        f'probe_process_{workers}': lambda: prep.probe_all(paths, {}, workers, 'process', progress=False),
        f'probe_thread_{workers}': lambda: prep.probe_all(paths, {}, workers, 'thread', progress=False),
    }
    seconds: tp.Dict[str, tp.List[float]] = {name: [] for name in [*cases, 'prepare_cold', 'prepare_rerun']}
    names = list(cases)
    phases: tp.Dict[str, tp.List[float]] = {'probe': [], 'write': []}  # inside prepare_cold, seconds
    for round_ in range(args.rounds):
        order = names[round_ % len(names):] + names[:round_ % len(names)]  # rotate: drift hits every case alike
        for name in order:
            start = time.perf_counter()
            cases[name]()
            seconds[name].append(time.perf_counter() - start)
        out = work / f'out{round_}'
        start = time.perf_counter()
        report = run_prepare(work, out, workers, 'thread')
        seconds['prepare_cold'].append(time.perf_counter() - start)
        phases['probe'].append(report['probe']['seconds'])
        phases['write'].append(report['write_seconds'])
        start = time.perf_counter()
        run_prepare(work, out, workers, 'thread')
        seconds['prepare_rerun'].append(time.perf_counter() - start)
        shutil.rmtree(out)
        print(f"round {round_ + 1}/{args.rounds}: " + ', '.join(
            f"{name} {args.clips / times[-1]:.0f}/s" for name, times in seconds.items()), file=sys.stderr)

    files_per_s = {name: args.clips / statistics.median(times) for name, times in seconds.items()}
    # Per round, each case against the bare loop of the same round (machine load drifts between rounds).
    vs_bare = {name: statistics.median(bare / own for bare, own in zip(seconds['bare_info'], times, strict=True))
               for name, times in seconds.items()}
    result = {
        'command': 'python -m rr_audiocraft.data.prepare_bench ' + ' '.join(argv if argv is not None else sys.argv[1:]),
        'date': datetime.datetime.now().isoformat(timespec='seconds'),
        'machine': f"{platform.machine()}, {os.cpu_count()} cores visible, load {os.getloadavg()}",
        'soundfile': soundfile.__version__, 'libsndfile': soundfile.__libsndfile_version__,
        'clips': args.clips, 'duration_s': args.duration, 'sample_rate': 16000, 'rounds': args.rounds,
        'workers': workers, 'seconds': seconds, 'prepare_cold_phase_seconds': phases, 'files_per_s_median': files_per_s,
        'speed_vs_bare_same_round_median': vs_bare,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    prep._write_atomic(RESULTS / f'{args.name}.json', json.dumps(result, indent=1) + '\n')
    if args.dir is None:
        shutil.rmtree(work)
    print(f"files/s, median of {args.rounds} rounds ({args.clips} clips of {args.duration:g} s); "
          "x bare: median over rounds of the speed ratio to the same round's bare loop")
    for name, rate in files_per_s.items():
        print(f"  {name:<20} {rate:10.0f}   x{vs_bare[name]:.2f}")
    print(f"written: {RESULTS / (args.name + '.json')}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
