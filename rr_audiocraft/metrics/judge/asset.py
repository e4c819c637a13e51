"""The shipped judges (`assets/judge_synth*`, `make judge`): which one a benchmark needs, loading and shipping.

A judge is shipped for the default benchmark (seed 0, 600 clips: `assets/judge_synth`) and for the
reproduce benchmark (`assets/judge_synth-seed0-2000clips`); a run uses one only when its `asset.json`
records exactly the benchmark, codec and judge settings the run asks for (`judge_wanted`), else the
run fits its own. The sha256 check is `rr_audiocraft.assets`', as for the codec.
"""
import dataclasses
import json
import platform
import shutil
import typing as tp
from pathlib import Path

from ... import REPO_ROOT
from ...assets import ASSETS_DIR, read_manifest, sha256_of, verify_file, write_manifest
from .detector import JUDGE_VERSION, Judge, JudgeConfig

# Six views per training clip: clean, round trip, one degraded clean and three degraded round trips. On the
# seed-0 benchmark and an early codec this gave ceiling count / F1 / order 0.867 / 0.918 / 0.905 against
# 0.850 / 0.907 / 0.857 with four (a clip or two each).
JUDGE_CONFIG = JudgeConfig(views=6)
JUDGE_ASSET = ASSETS_DIR / 'judge_synth'  # the shipped judge of the default benchmark
JUDGE_FILE = 'judge.pt'


def judge_wanted(stamp: tp.Dict[str, tp.Any], codec_sha: str) -> tp.Dict[str, tp.Any]:
    """What a judge must have been fitted on to score this benchmark through this codec."""
    return {'judge_version': JUDGE_VERSION, 'config': dataclasses.asdict(JUDGE_CONFIG), 'benchmark': stamp,
            'codec_sha256': codec_sha, 'seed': 0}


def judge_asset(benchmark: tp.Dict[str, tp.Any]) -> Path:
    """Where the judge of a benchmark is shipped: assets/judge_synth for the default one (seed 0, 600 clips),
    else assets/judge_synth-seed<S>-<N>clips (`make judge` ships the default and the reproduce benchmark's)."""
    if benchmark['seed'] == 0 and benchmark['num_clips'] == 600:
        return JUDGE_ASSET
    return JUDGE_ASSET.with_name(f"{JUDGE_ASSET.name}-seed{benchmark['seed']}-{benchmark['num_clips']}clips")


def json_roundtrip(value: tp.Any) -> tp.Any:
    """`value` as it reads back from JSON."""
    return json.loads(json.dumps(value))


def _shown(folder: Path) -> Path:
    return folder.relative_to(REPO_ROOT) if folder.is_relative_to(REPO_ROOT) else folder


def shipped_judge(wanted: tp.Dict[str, tp.Any], folder: tp.Optional[Path] = None) -> tp.Optional[Judge]:
    """The shipped judge when it was fitted on exactly `wanted` (checked against its sha256), else None.
    `folder` defaults to the benchmark's `judge_asset`.

    Raises:
        AssetError: the asset was fitted on `wanted` but its file is missing or corrupted.
    """
    folder = judge_asset(wanted['benchmark']) if folder is None else folder
    record = read_manifest(folder)
    # Compared as JSON holds it (tuples read back as lists).
    if record is None or record.get('fitted_on') != json_roundtrip(wanted):
        return None  # no asset, or one of another benchmark, codec or judge version: the run fits its own
    path = verify_file(folder, JUDGE_FILE, 'The shipped judge',
                       f"`git checkout {_shown(folder)}`, or rebuild it with `make judge`")
    return Judge.load(path)


def ship_judge(judge_path: Path, seconds: tp.Optional[float], command: str) -> Path:
    """Copies a fitted judge into its benchmark's asset folder (`judge_asset`) with its `asset.json`
    (sha256, what it was fitted on, the command that rebuilds it, how long the fit took)."""
    fitted_on = Judge.load(judge_path).fitted_on
    benchmark = fitted_on['benchmark']
    folder = judge_asset(benchmark)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(judge_path, folder / JUDGE_FILE)
    record = {'name': folder.name,
              'what': f"the generator-independent judge of the benchmark of data seed {benchmark['seed']}, "
                      f"{benchmark['num_clips']} clips, fitted on its training clips and their round trips through "
                      "the shipped codec",
              'sha256': sha256_of(folder / JUDGE_FILE), 'bytes': (folder / JUDGE_FILE).stat().st_size,
              'command': f"make judge   (= {command})",
              'fitted_on': fitted_on, 'fit_seconds': seconds,
              'fitted_with': f"{platform.machine()}, 1 torch thread"}
    write_manifest(folder, record)
    print(f"[demo:judge] shipped {folder / JUDGE_FILE} (sha256 {record['sha256'][:16]}...)", flush=True)
    return folder
