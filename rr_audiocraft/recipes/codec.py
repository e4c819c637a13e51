"""`make codec`: the recipe of the embedded default's EnCodec, shipped in `assets/`, checked on load.

The codec is part of the measuring instrument (every LM that is compared trains on its tokens), so
it is trained outside the demo's budget, by AudioCraft's stock compression solver on a corpus of
its own, and committed as a stock compression export::

    assets/encodec_synth_8khz/compression_state_dict.bin   what audiocraft.utils.export.export_encodec writes
    assets/encodec_synth_8khz/asset.json                   recipe, command, training time, sha256, test report

Stock `CompressionModel.get_pretrained('assets/encodec_synth_8khz')` loads it, and LM configs take it
as `compression_model_checkpoint=//pretrained/<that folder>` (AudioCraft's prefix for exported
compression models). The tiny solver configs default to it through `${rr_asset:encodec_synth_8khz}`.
Every load through this project checks the file's sha256 against `asset.json` first
(`rr_audiocraft.assets.verify_asset`): a corrupted or half-written copy is refused with the command
that fixes it. Its measurement (round trips, error per band, code usage) is `rr_audiocraft.metrics.codec`.

`python -m rr_audiocraft.recipes.codec train` (what `make codec` runs), stages each resumable:
  1. corpus    the synthetic benchmark with its own seed (`CORPUS_SEED`): the codec never hears the
               clips of any benchmark it is measured on, nor a held-out source pair
  2. excerpts  salient 1.5 s excerpts of its train / valid splits at 8 kHz (`data.excerpts`)
  3. train     two dora XPs, each resuming when interrupted: `solver=rr_compression/synth_8khz`
               (waveform L2, quantizer-free warm-up, then RVQ), then
               `solver=rr_compression/synth_8khz_spectral continue_from=//sig/<first>` (+ the stock
               multi-scale mel loss, which carries the bands above 1 kHz)
  4. export    the stock export of the second XP's best state into the asset folder, with `asset.json`
  5. report    relative MSE, error per band and code usage per codebook on the benchmark's test split
"""
from .. import configured  # noqa: F401  (first: the process set-up AudioCraft needs at import)
import argparse
import json
import os
import subprocess
import sys
import time
import typing as tp
from pathlib import Path

import audiocraft
import torch
from audiocraft.utils.export import export_encodec

from .. import REPO_ROOT
from ..assets import (CODEC_ASSET, MANIFEST_FILE, STATE_FILE, AssetError, asset_dir, sha256_of, read_manifest,
                      verify_asset, write_manifest)
from ..checkpoint import allow_audiocraft_checkpoints
from ..data.excerpts import write_excerpts
from ..data.synth import BENCHMARK_VERSION, BenchmarkError, check_benchmark, generate_dataset, load_clips
from ..grid_local import xp_finished
from ..metrics.codec import codec_report, format_bands, load_asset
from ..train import main as dora_main

ASSET_NAME = CODEC_ASSET
SOLVERS = ('rr_compression/synth_8khz', 'rr_compression/synth_8khz_spectral')  # the recipe's stages, in order
CORPUS_SEED = 1000  # never a seed the demo or the tests measure with (they use 0, 1, 2, ...)
CORPUS_CLIPS = 2000


def log(stage: str, message: str) -> None:
    print(f"[codec:{stage}] {message}", flush=True)


def corpus_dir(data_root: Path) -> Path:
    """Where the corpus of the current benchmark version lives under `data_root`: the XPs' datasource
    paths, hence their signatures, change with the benchmark, so an XP trained on an older corpus is
    never resumed on a newer one."""
    return data_root / f'benchmark-v{BENCHMARK_VERSION}'


def corpus_stage(data_dir: Path) -> None:
    stamp = data_dir / 'corpus_stamp.json'
    wanted = {'num_clips': CORPUS_CLIPS, 'seed': CORPUS_SEED, 'benchmark_version': BENCHMARK_VERSION,
              'excerpts': 2}  # bump when the excerpts change
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        log('corpus', f"{data_dir} is up to date")
        return
    log('corpus', f"synthesising {CORPUS_CLIPS} clips (seed {CORPUS_SEED}) and their salient excerpts into {data_dir}")
    generate_dataset(data_dir / 'clips', num_clips=CORPUS_CLIPS, seed=CORPUS_SEED)
    counts = write_excerpts(data_dir / 'clips', data_dir / 'excerpts', seed=CORPUS_SEED)
    log('corpus', f"excerpts: {counts}")
    stamp.write_text(json.dumps(wanted))


def stage_overrides(data_dir: Path, extra: tp.Sequence[str], previous: tp.Optional[tp.Any],
                    solver: str) -> tp.List[str]:
    """The dora overrides of one stage: its solver config, the excerpt corpus, `extra`; a later stage
    continues from the previous stage's XP."""
    egs = data_dir / 'excerpts' / 'egs'
    overrides = [f'solver={solver}', f'datasource.train={egs}/train', f'datasource.valid={egs}/valid',
                 f'datasource.evaluate={egs}/valid', f'datasource.generate={egs}/valid', *extra]
    return overrides + ([f'continue_from=//sig/{previous.sig}'] if previous is not None else [])


def train_xp(overrides: tp.List[str]) -> tp.Any:
    """Runs (or resumes) one compression XP; returns it once its history holds every epoch."""
    xp = dora_main.get_xp(overrides)
    if xp_finished(dora_main, xp):
        log('train', f"XP {xp.sig} already trained ({xp.folder})")
        return xp
    xp.folder.mkdir(parents=True, exist_ok=True)
    log('train', f"training XP {xp.sig}: dora -P rr_audiocraft run {' '.join(overrides)} "
                 f"(log: {xp.folder / 'codec.log'})")
    with open(xp.folder / 'codec.log', 'a') as out:
        proc = subprocess.run([sys.executable, '-m', 'dora', '-P', 'rr_audiocraft', 'run', *overrides],
                              cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"codec: XP {xp.sig} failed; see {xp.folder / 'codec.log'}; rerun `make codec` to resume")
    return xp


def train_stage(data_dir: Path, extra: tp.Sequence[str]) -> tp.List[tp.Any]:
    """Trains the recipe's XPs in order (`SOLVERS`); `extra` overrides go to every stage, so that
    the later ones can load the earlier ones' weights. Returns the XPs, the last one the codec."""
    xps: tp.List[tp.Any] = []
    for solver in SOLVERS:
        xps.append(train_xp(stage_overrides(data_dir, extra, xps[-1] if xps else None, solver)))
    return xps


def export_stage(xps: tp.Sequence[tp.Any], name: str = ASSET_NAME) -> Path:
    """Writes the stock export of the last XP's best state and its `asset.json` into the asset folder.

    The state file is written by `audiocraft.utils.export.export_encodec` (its `best_state` is the
    EMA model when the XP trains with EMA, as the stock solver keeps it).
    """
    allow_audiocraft_checkpoints()  # export_encodec's torch.load reads the XP config's OmegaConf objects
    folder = asset_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (STATE_FILE + '.partial')
    xp = xps[-1]
    export_encodec(xp.folder / 'checkpoint.th', partial)
    stages, train_seconds = [], 0.
    for stage_xp in xps:
        history = json.loads((stage_xp.folder / 'history.json').read_text())
        seconds = sum(stage.get('duration', 0.) for epoch in history for stage in epoch.values()
                      if isinstance(stage, dict))
        train_seconds += seconds
        solver = next(arg.split('=', 1)[1] for arg in stage_xp.argv if arg.startswith('solver='))
        stages.append({'solver_config': f'config/solver/{solver}.yaml',
                       'dora_overrides': [arg.replace(str(REPO_ROOT) + '/', '') for arg in stage_xp.argv],
                       'xp_sig': stage_xp.sig, 'epochs': len(history),
                       'updates': len(history) * int(stage_xp.cfg.optim.updates_per_epoch),
                       'training_seconds': round(seconds, 1)})
    manifest = {
        'name': name,
        'what': "EnCodec of the embedded synthetic benchmark (stock EncodecModel: SEANet + RVQ), 8 kHz, "
                "50 Hz frames, 4 codebooks x 256",
        'sha256': sha256_of(partial),
        'bytes': partial.stat().st_size,
        'command': 'make codec   (= python -m rr_audiocraft.recipes.codec train)',
        'recipe': {'stages': stages,
                   'corpus': {'generator': 'rr_audiocraft.data.synth', 'benchmark_version': BENCHMARK_VERSION,
                              'seed': CORPUS_SEED, 'num_clips': CORPUS_CLIPS,
                              'excerpts': 'rr_audiocraft.data.excerpts (train/valid splits only)'}},
        'training_seconds': round(train_seconds, 1),
        'trained_on': f"{os.cpu_count()} CPU cores, {int(xp.cfg.num_threads)} torch threads",
        'versions': _versions(),
    }
    # The state file first, the manifest last: a crash in between leaves a mismatch that
    # `verify_asset` refuses, never a manifest vouching for a half-written file.
    partial.replace(folder / STATE_FILE)
    write_manifest(folder, manifest)
    log('export', f"{folder / STATE_FILE}: {manifest['bytes'] / 1e6:.2f} MB, sha256 {manifest['sha256'][:16]}..., "
                  f"trained {train_seconds / 60:.1f} min")
    return folder


def _versions() -> tp.Dict[str, str]:
    return {'audiocraft': audiocraft.__version__, 'torch': torch.__version__}


def report_stage(model: tp.Any, benchmark: Path, num_clips: int = 600, seed: int = 0) -> tp.Dict[str, tp.Any]:
    """`codec_report` on the test split of the benchmark the demo measures with (written if missing)."""
    if not (benchmark / 'egs' / 'test' / 'data.jsonl').is_file():
        generate_dataset(benchmark, num_clips=num_clips, seed=seed)
    check_benchmark(benchmark, num_clips=num_clips, seed=seed)  # another seed or generator version: say so
    wavs, _, sample_rate = load_clips(benchmark / 'egs' / 'test')
    report = codec_report(model, wavs, sample_rate)
    log('report', f"test split of {benchmark} ({report['num_clips']} clips): "
                  f"relative MSE {report['relative_mse']:.3f}; "
                  "error per band " + format_bands(report['band_error_db']))
    log('report', f"code usage per codebook: perplexity {report['codebook_perplexity']} of {report['bins']}, "
                  f"codes used {report['codebook_usage']}")
    return report


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m rr_audiocraft.recipes.codec', description=__doc__.split('\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    train = commands.add_parser('train', help="corpus, training (resumes), export, report: what `make codec` runs")
    train.add_argument('--data', type=Path, default=REPO_ROOT / 'data' / 'codec', help="corpus folder")
    train.add_argument('overrides', nargs='*', help="extra dora overrides of the XP (change its signature)")
    commands.add_parser('verify', help="check the shipped artefact against its recorded sha256")
    report = commands.add_parser('report', help="relative MSE, error per band, code usage on a test split")
    report.add_argument('--data', type=Path, default=REPO_ROOT / 'data' / 'synth', help="benchmark root")
    args = parser.parse_args(argv)
    begin = time.time()
    try:
        if args.command == 'verify':
            log('verify', f"{verify_asset(asset_dir())}: sha256 matches {asset_dir() / MANIFEST_FILE}")
            return 0
        if args.command == 'report':
            report_stage(load_asset(), args.data.resolve())
            return 0
        data_dir = corpus_dir(args.data.resolve())
        corpus_stage(data_dir)
        xps = train_stage(data_dir, args.overrides)
        export_stage(xps)
        manifest = read_manifest(asset_dir())  # export_stage has just written it
        manifest['test_report'] = report_stage(load_asset(), REPO_ROOT / 'data' / 'synth')
        write_manifest(asset_dir(), manifest)
    except (AssetError, BenchmarkError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    log(args.command, f"done in {time.time() - begin:.0f} s")
    return 0


if __name__ == '__main__':
    sys.exit(main())
