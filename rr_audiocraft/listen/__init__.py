"""A blind pairwise preference listening test (the paper's Table 4), served as a local web page.

    python -m rr_audiocraft.listen prepare --system baseline=DIR --system rr=DIR --out STUDY
    python -m rr_audiocraft.listen serve STUDY            # http://127.0.0.1:8000/
    python -m rr_audiocraft.listen tally STUDY

Modules: `study` (preparing and reading a study folder), `plan` (each rater's order and sides),
`storage` (answers in SQLite), `app` (the Flask page), `stats` and `tally` (the statistics and report).
"""
from .study import DEFAULT_QUESTION, Study, StudyError, prepare_study  # noqa: F401
