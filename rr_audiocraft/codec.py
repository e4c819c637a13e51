"""The embedded default's EnCodec: trained once by `make codec`, shipped in `assets/`, checked on load.

The codec is part of the measuring instrument (every LM that is compared trains on its tokens), so
it is trained outside the demo's budget, by AudioCraft's stock compression solver on a corpus of
its own, and committed as a stock compression export::

    assets/encodec_synth_8khz/compression_state_dict.bin   what audiocraft.utils.export.export_encodec writes
    assets/encodec_synth_8khz/asset.json                   recipe, command, training time, sha256, test report

Stock `CompressionModel.get_pretrained('assets/encodec_synth_8khz')` loads it, and LM configs take it
as `compression_model_checkpoint=//pretrained/<that folder>` (AudioCraft's prefix for exported
compression models). The tiny solver configs default to it through `${rr_asset:encodec_synth_8khz}`.
Every load through this project checks the file's sha256 against `asset.json` first
(`verify_asset`): a corrupted or half-written copy is refused with the command that fixes it.

`python -m rr_audiocraft.codec train` (what `make codec` runs), stages each resumable:
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
import argparse
import hashlib
import json
import os
from pathlib import Path
import subprocess
import sys
import time
import typing as tp

from . import REPO_ROOT

ASSET_NAME = 'encodec_synth_8khz'
ASSETS_DIR = REPO_ROOT / 'assets'
SOLVERS = ('rr_compression/synth_8khz', 'rr_compression/synth_8khz_spectral')  # the recipe's stages, in order
CORPUS_SEED = 1000  # never a seed the demo or the tests measure with (they use 0, 1, 2, ...)
CORPUS_CLIPS = 2000
STATE_FILE = 'compression_state_dict.bin'  # the stock export's file name (audiocraft.models.loaders)
MANIFEST_FILE = 'asset.json'
FIX_COMMAND = f"git checkout -- assets/{ASSET_NAME}  (the shipped copy), or `make codec` (retrain it, ~63 min)"


def log(stage: str, message: str) -> None:
    print(f"[codec:{stage}] {message}", flush=True)


def asset_dir(name: str = ASSET_NAME) -> Path:
    return ASSETS_DIR / name


def corpus_dir(data_root: Path) -> Path:
    """Where the corpus of the current benchmark version lives under `data_root`: the XPs' datasource
    paths, hence their signatures, change with the benchmark, so an XP trained on an older corpus is
    never resumed on a newer one."""
    from .data.synth import BENCHMARK_VERSION
    return data_root / f'benchmark-v{BENCHMARK_VERSION}'


def corpus_stage(data_dir: Path) -> None:
    from .data.excerpts import write_excerpts
    from .data.synth import BENCHMARK_VERSION, generate_dataset
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
    from .train import main
    xp = main.get_xp(overrides)
    history = xp.folder / 'history.json'
    if history.exists() and len(json.loads(history.read_text())) >= xp.cfg.optim.epochs:
        log('train', f"XP {xp.sig} already trained ({xp.folder})")
        return xp
    xp.folder.mkdir(parents=True, exist_ok=True)
    log('train', f"training XP {xp.sig}: dora -P rr_audiocraft run {' '.join(overrides)} (log: {xp.folder / 'codec.log'})")
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


# ---------------------------------------------------------------------------------------------
# The shipped artefact: checksum, loading, export.
# ---------------------------------------------------------------------------------------------

class AssetError(ValueError):
    """A shipped model artefact is missing, corrupted or does not match its `asset.json`."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as file:
        for block in iter(lambda: file.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def verify_asset(folder: tp.Union[str, Path]) -> Path:
    """Checks a shipped compression export against the sha256 its `asset.json` records.

    Args:
        folder: the asset folder (holding `compression_state_dict.bin` and `asset.json`), or the
            state file itself.
    Returns:
        Path: the verified state file.
    Raises:
        AssetError: a file is missing or the checksum differs; the message names the file and the
            command that fixes it.
    """
    folder = Path(folder)
    if folder.name == STATE_FILE:
        folder = folder.parent
    state, manifest = folder / STATE_FILE, folder / MANIFEST_FILE
    fix = (FIX_COMMAND if folder.resolve() == asset_dir().resolve()
           else f"copy {folder} again from where it came from (the shipped codec: {FIX_COMMAND})")
    for path in (manifest, state):
        if not path.is_file():
            raise AssetError(f"The codec artefact {path} is missing: {fix}.")
    try:
        expected = json.loads(manifest.read_text())['sha256']
    except (ValueError, KeyError) as exc:
        raise AssetError(f"{manifest} is not a codec asset manifest ({type(exc).__name__}: {exc}): {fix}.") from None
    actual = sha256_of(state)
    if actual != expected:
        raise AssetError(f"The codec artefact {state} is corrupted: its sha256 is {actual[:16]}..., {manifest} "
                         f"records {expected[:16]}...: {fix}.")
    return state


def compression_reference(folder: Path) -> str:
    """`compression_model_checkpoint` of the codec exported in `folder`: AudioCraft's `//pretrained/`
    prefix on its state file, as the LMs train on it (and load it back for their XPs)."""
    return f"//pretrained/{folder / STATE_FILE}"


def asset_reference(name: str = ASSET_NAME) -> str:
    """`compression_reference` of a shipped codec, by the absolute path of its folder (the
    `${rr_asset:NAME}` config resolver)."""
    return compression_reference(asset_dir(name))


def verify_compression_reference(reference: tp.Any) -> None:
    """If a `compression_model_checkpoint` names an exported file that has an `asset.json` beside
    it (a shipped artefact), check its sha256 (`verify_asset`); other references are left alone."""
    reference = str(reference or '')
    if not reference.startswith('//pretrained/'):
        return
    path = Path(reference[len('//pretrained/'):])
    folder = path if path.is_dir() else path.parent
    if (folder / MANIFEST_FILE).is_file() or folder.resolve().parent == ASSETS_DIR.resolve():
        verify_asset(folder)


def load_asset(name: str = ASSET_NAME, device: str = 'cpu') -> tp.Any:
    """The shipped codec, checked, loaded by stock `CompressionModel.get_pretrained`."""
    from audiocraft.models import CompressionModel
    state = verify_asset(asset_dir(name))
    return CompressionModel.get_pretrained(str(state), device=device).eval()


def export_stage(xps: tp.Sequence[tp.Any], name: str = ASSET_NAME) -> Path:
    """Writes the stock export of the last XP's best state and its `asset.json` into the asset folder.

    The state file is written by `audiocraft.utils.export.export_encodec` (its `best_state` is the
    EMA model when the XP trains with EMA, as the stock solver keeps it).
    """
    from audiocraft.utils.export import export_encodec
    from .checkpoint import allow_audiocraft_checkpoints
    from .data.synth import BENCHMARK_VERSION
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
        'command': 'make codec   (= python -m rr_audiocraft.codec train)',
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
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + '\n')
    log('export', f"{folder / STATE_FILE}: {manifest['bytes'] / 1e6:.2f} MB, sha256 {manifest['sha256'][:16]}..., "
                  f"trained {train_seconds / 60:.1f} min")
    return folder


def _versions() -> tp.Dict[str, str]:
    import audiocraft
    import torch
    return {'audiocraft': audiocraft.__version__, 'torch': torch.__version__}


# ---------------------------------------------------------------------------------------------
# Round trips and the report.
# ---------------------------------------------------------------------------------------------

def round_trip_fn(model: tp.Any, sample_rate: int = 16_000) -> tp.Callable[[tp.Any], tp.Any]:
    """A function taking a batch of clips [B, T] at `sample_rate` through `model` (encode to codes,
    decode) and back to `sample_rate`, [B, T]: what an LM trained on its tokens can at best return."""
    import julius
    import torch
    import torch.nn.functional as F

    @torch.no_grad()
    def round_trip(wav: torch.Tensor) -> torch.Tensor:
        length = wav.shape[-1]
        audio = julius.resample_frac(wav.float(), sample_rate, model.sample_rate)[:, None]
        codes, scale = model.encode(audio)
        decoded = model.decode(codes, scale)[:, 0]
        decoded = julius.resample_frac(decoded, model.sample_rate, sample_rate)[..., :length]
        return F.pad(decoded, (0, length - decoded.shape[-1]))
    return round_trip


# Bands of the round-trip error report (Hz): the judge's mel features span 20 Hz - 8 kHz.
BAND_EDGES = (0., 500., 1000., 2000., 4000., 8000.)


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


def format_bands(bands: tp.Mapping[str, tp.Optional[float]]) -> str:
    """`band_error_db`'s result as one line: '0-500 Hz -12.5 dB, ...' ('n/a': no reference energy)."""
    return ', '.join(f"{band} {'n/a' if db is None else f'{db:.1f} dB'}" for band, db in bands.items())


def codec_report(model: tp.Any, wavs: tp.Sequence[tp.Any], sample_rate: int) -> tp.Dict[str, tp.Any]:
    """How well the codec carries a set of clips (e.g. a benchmark's test split), at its own rate.

    Returns:
        dict: relative_mse (error energy / reference energy over all clips), band_error_db (see
        `band_error_db`), and per codebook its perplexity (exp of the entropy of its code usage; at
        most `bins`) and the fraction of its codes used.
    """
    import julius
    import numpy as np
    import torch
    with torch.no_grad():
        audio = torch.stack([torch.as_tensor(np.asarray(wav, dtype=np.float32)) for wav in wavs])
        audio = julius.resample_frac(audio, sample_rate, model.sample_rate)[:, None]  # [N, 1, T]
        codes, scale = model.encode(audio)  # [N, K, frames]
        decoded = model.decode(codes, scale)[..., :audio.shape[-1]]
    bins = int(model.cardinality)
    perplexity, used = [], []
    for k in range(codes.shape[1]):
        counts = torch.bincount(codes[:, k].flatten(), minlength=bins).double()
        p = counts / counts.sum()
        perplexity.append(float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum())))
        used.append(float((counts > 0).double().mean()))
    return {
        'num_clips': len(wavs),
        'relative_mse': float(((decoded - audio) ** 2).sum() / (audio ** 2).sum()),
        'band_error_db': band_error_db(audio[:, 0], decoded[:, 0], model.sample_rate),
        'codebook_perplexity': [round(value, 1) for value in perplexity],
        'codebook_usage': [round(value, 3) for value in used],
        'bins': bins,
    }


def report_stage(model: tp.Any, benchmark: Path, num_clips: int = 600, seed: int = 0) -> tp.Dict[str, tp.Any]:
    """`codec_report` on the test split of the benchmark the demo measures with (written if missing)."""
    from .data.synth import check_benchmark, generate_dataset, load_clips
    if not (benchmark / 'egs' / 'test' / 'data.jsonl').is_file():
        generate_dataset(benchmark, num_clips=num_clips, seed=seed)
    check_benchmark(benchmark, num_clips=num_clips, seed=seed)  # another seed or generator version: say so
    wavs, _, sample_rate = load_clips(benchmark / 'egs' / 'test')
    report = codec_report(model, wavs, sample_rate)
    log('report', f"test split of {benchmark} ({report['num_clips']} clips): relative MSE {report['relative_mse']:.3f}; "
                  "error per band " + format_bands(report['band_error_db']))
    log('report', f"code usage per codebook: perplexity {report['codebook_perplexity']} of {report['bins']}, "
                  f"codes used {report['codebook_usage']}")
    return report


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m rr_audiocraft.codec', description=__doc__.split('\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    train = commands.add_parser('train', help="corpus, training (resumes), export, report: what `make codec` runs")
    train.add_argument('--data', type=Path, default=REPO_ROOT / 'data' / 'codec', help="corpus folder")
    train.add_argument('overrides', nargs='*', help="extra dora overrides of the XP (change its signature)")
    commands.add_parser('verify', help="check the shipped artefact against its recorded sha256")
    report = commands.add_parser('report', help="relative MSE, error per band, code usage on a test split")
    report.add_argument('--data', type=Path, default=REPO_ROOT / 'data' / 'synth', help="benchmark root")
    args = parser.parse_args(argv)
    from .data.synth import BenchmarkError
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
        manifest_path = asset_dir() / MANIFEST_FILE
        manifest = json.loads(manifest_path.read_text())
        manifest['test_report'] = report_stage(load_asset(), REPO_ROOT / 'data' / 'synth')
        manifest_path.write_text(json.dumps(manifest, indent=1) + '\n')
    except (AssetError, BenchmarkError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    log(args.command, f"done in {time.time() - begin:.0f} s")
    return 0


if __name__ == '__main__':
    sys.exit(main())
