"""The study `make demo` leaves in demo_out/study: its baseline and best-RR rows as two systems, 20 prompts as the
paper's Table 4 (a blind pairwise listening test, `rr_audiocraft.listen`)."""
import typing as tp
from pathlib import Path

from ..listen.study import StudyError, prepare_study
from ..table1 import BASELINE, BEST_RR, Row

NUM_PROMPTS = 20  # as the paper's Table 4


def prepare_demo_study(runs: tp.List[dict], truths: tp.List[dict], out: Path) -> tp.Optional[Path]:
    """Build the study from the demo's generated samples (`<reference stem>.wav`, captions from the test split).

    Args:
        runs (list of dict): `render.generate_and_judge`'s results ('row', 'seed', 'samples' folder).
        truths (list of dict): The test split's sidecars, in the order the samples were generated.
        out (Path): The study folder; a previous demo study without answers is replaced, one with answers kept.
    Returns:
        Path of the study, or None when the rows are missing or an earlier study holds answers.
    """
    first_seed: tp.Dict[Row, str] = {}
    for run in sorted(runs, key=lambda r: r['seed']):
        first_seed.setdefault(Row.from_record(run['row']), run['samples'])
    if BASELINE not in first_seed or BEST_RR not in first_seed:
        print(f"[demo:listen] no study: the demo has no {BASELINE.label} and {BEST_RR.label} rows to compare")
        return None
    systems = {f'baseline (λ={BASELINE.weight:g})': Path(first_seed[BASELINE]),
               f'RR (λ={BEST_RR.weight:g})': Path(first_seed[BEST_RR])}
    captions = {truth['name']: truth['description'] for truth in truths}
    try:
        study = prepare_study(systems, out, captions=captions, num_prompts=min(NUM_PROMPTS, len(captions)),
                              catch_trials=2, replace=True)
    except StudyError as error:  # e.g. the study already has answers: it is kept
        print(f"[demo:listen] study not rebuilt: {error}")
        return None
    print(f"[demo:listen] blind pairwise study of {BASELINE.label} vs {BEST_RR.label} in {study}: "
          f"`python -m rr_audiocraft.listen serve {study}`, "
          f"then `python -m rr_audiocraft.listen tally {study}`")
    return study
