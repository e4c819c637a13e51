"""The demo's inputs, each checked before anything is trained: the codec, the benchmark and its judge."""
import typing as tp
from pathlib import Path

from ..assets import STATE_FILE, compression_reference, read_manifest, verify_asset
from ..data.synth import check_benchmark, generate_dataset
from ..metrics.codec import round_trip_fn
from ..metrics.judge import Judge
from ..metrics.judge.asset import JUDGE_CONFIG, JUDGE_FILE, judge_asset, judge_wanted, shipped_judge
from ..models.loaders import load_compression_model
from .progress import log


def data_stage(data_dir: Path, num_clips: int, seed: int) -> tp.Dict[str, tp.Any]:
    """The benchmark of `seed`: generated when `data_dir` does not exist yet, else checked (a folder
    holding another seed, size or generator version stops the demo with the command that fixes it)."""
    if data_dir.exists() and any(data_dir.iterdir()):
        stamp = check_benchmark(data_dir, num_clips=num_clips, seed=seed)
        log('data', f"{data_dir} holds the benchmark ({num_clips} clips, seed {seed})")
        return stamp
    log('data', f"synthesising {num_clips} captioned clips (seed {seed}) into {data_dir}")
    generate_dataset(data_dir, num_clips=num_clips, seed=seed)
    return check_benchmark(data_dir, num_clips=num_clips, seed=seed)


def codec_stage(codec_dir: Path) -> tp.Tuple[tp.Any, str]:
    """The codec every LM trains on (the shipped one by default), checked against its sha256 and loaded
    by the name the LMs train on, as `RRAudioGen.get_pretrained` loads it back for their XPs."""
    verify_asset(codec_dir)  # any folder, asset.json required: the demo's numbers name the codec by its sha256
    sha = read_manifest(codec_dir)['sha256']
    model = load_compression_model(compression_reference(codec_dir), device='cpu').eval()
    log('codec', f"{codec_dir / STATE_FILE}: sha256 {sha[:16]}... ok; {model.sample_rate} Hz, "
                 f"{model.num_codebooks} x {model.cardinality} codes at {model.frame_rate:g} Hz")
    return model, sha


def judge_stage(data_dir: Path, stamp: tp.Dict[str, tp.Any], codec: tp.Any, codec_sha: str) -> tp.Any:
    """The judge of this benchmark, fitted on its training clips and their round trips through the
    codec: the shipped one (`judge_asset`: the default and the reproduce benchmark's) when it was fitted on
    this benchmark and codec, else fitted here and cached in `data_dir/judge.pt` (refitted when the code,
    benchmark or codec changed)."""
    wanted = judge_wanted(stamp, codec_sha)
    judge = shipped_judge(wanted)
    if judge is not None:
        log('judge', f"the shipped judge {judge_asset(stamp) / JUDGE_FILE} (sha256 checked)")
        return judge
    path = data_dir / JUDGE_FILE
    if path.exists():
        try:
            judge = Judge.load(path)
        except ValueError as exc:  # the demo's own cache, saved by other judge code: refit it
            log('judge', f"refitting: {exc}")
        else:
            if judge.fitted_on == wanted:
                log('judge', f"loaded {path}")
                return judge
            log('judge', f"refitting {path}: it was fitted on another benchmark, codec or judge version")
    log('judge', "fitting the judge on the training clips and their codec round trips")
    judge = Judge.fit(data_dir / 'egs' / 'train', seed=0, config=JUDGE_CONFIG, round_trip=round_trip_fn(codec),
                      fitted_on=wanted)
    judge.save(path)
    return judge
