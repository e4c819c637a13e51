"""The study `make demo` leaves in demo_out/study: its λ=0 and λ=3 rows as two systems, 20 prompts as Table 4."""
import typing as tp
from pathlib import Path

from ..demo import BASELINE_ROW
from .study import StudyError, prepare_study

# A row of `demo.row_of`: (pooling, CFG ratio, λ). The paper's Table 4 compares the baseline with RR at its best.
RR_ROW = ('max', 0.1, 3.0)
NUM_PROMPTS = 20  # as the paper's Table 4


def prepare_demo_study(runs: tp.List[dict], truths: tp.List[dict], out: Path) -> tp.Optional[Path]:
    """Build the study from the demo's generated samples (`<reference stem>.wav`, captions from the test split).

    Args:
        runs (list of dict): `demo.generate_and_judge`'s results ('row', 'seed', 'samples' folder).
        truths (list of dict): The test split's sidecars, in the order the samples were generated.
        out (Path): The study folder; a previous demo study without answers is replaced, one with answers kept.
    Returns:
        Path of the study, or None when the rows are missing or an earlier study holds answers.
    """
    first_seed: tp.Dict[tuple, str] = {}
    for run in sorted(runs, key=lambda r: r['seed']):
        first_seed.setdefault(tuple(run['row']), run['samples'])
    if BASELINE_ROW not in first_seed or RR_ROW not in first_seed:
        print("[demo:listen] no study: the demo has no λ=0 and λ=3 rows to compare")
        return None
    systems = {'baseline (λ=0)': Path(first_seed[BASELINE_ROW]), 'RR (λ=3)': Path(first_seed[RR_ROW])}
    captions = {truth['name']: truth['description'] for truth in truths}
    try:
        study = prepare_study(systems, out, captions=captions, num_prompts=min(NUM_PROMPTS, len(captions)),
                              catch_trials=2, replace=True)
    except StudyError as error:  # e.g. the study already has answers: it is kept
        print(f"[demo:listen] study not rebuilt: {error}")
        return None
    print(f"[demo:listen] blind pairwise study of λ=0 vs λ=3 in {study}: `python -m rr_audiocraft.listen serve {study}`, "
          f"then `python -m rr_audiocraft.listen tally {study}`")
    return study
