"""The answers of a study: SQLite in WAL mode, in the study folder, one row per answer as it is given.

Each request opens its own connection (SQLite connections are not shared across the server's threads); WAL
lets raters write while others read, and `synchronous=FULL` makes a committed answer survive a killed
server. `UNIQUE(rater, trial)` with `INSERT OR IGNORE` keeps the first answer of a trial: a resubmission
(a double click, a replayed request) never counts twice.
"""
import contextlib
import json
import sqlite3
import time
import typing as tp
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS raters (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    plan TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    rater TEXT NOT NULL REFERENCES raters(id),
    trial TEXT NOT NULL,
    position INTEGER NOT NULL,
    kind TEXT NOT NULL,
    prompt TEXT NOT NULL,
    system_left TEXT NOT NULL,
    system_right TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie')),
    correct INTEGER,
    elapsed_s REAL,
    answered_at REAL NOT NULL,
    UNIQUE (rater, trial)
);
"""
ANSWER_FIELDS = ['rater', 'trial', 'position', 'kind', 'prompt', 'system_left', 'system_right', 'choice',
                 'correct', 'elapsed_s', 'answered_at']


class Storage:
    """Raters and answers of one study (`answers.sqlite` in its folder)."""
    def __init__(self, path: tp.Union[str, Path]):
        self.path = Path(path)
        with self.connect() as db:
            db.execute('PRAGMA journal_mode=WAL')  # persistent: stored in the file
            db.executescript(SCHEMA)

    @contextlib.contextmanager
    def connect(self) -> tp.Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # autocommit: each statement lands
        try:
            db.execute('PRAGMA synchronous=FULL')
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    def rater_plan(self, rater: str, draw: tp.Callable[[], tp.List[dict]]) -> tp.List[dict]:
        """The rater's stored plan; the first call draws and stores it (a concurrent first call keeps one)."""
        with self.connect() as db:
            row = db.execute('SELECT plan FROM raters WHERE id = ?', (rater,)).fetchone()
            if row is None:
                db.execute('INSERT OR IGNORE INTO raters (id, created, plan) VALUES (?, ?, ?)',
                           (rater, time.time(), json.dumps(draw())))
                row = db.execute('SELECT plan FROM raters WHERE id = ?', (rater,)).fetchone()
        return json.loads(row['plan'])

    def answered(self, rater: str) -> tp.Set[str]:
        with self.connect() as db:
            return {row['trial'] for row in db.execute('SELECT trial FROM answers WHERE rater = ?', (rater,))}

    def add_answer(self, answer: tp.Dict[str, tp.Any]) -> bool:
        """Store an answer; False when the rater had already answered that trial (the first answer stays)."""
        answer = {**answer, 'answered_at': answer.get('answered_at', time.time())}
        with self.connect() as db:
            cursor = db.execute(f"INSERT OR IGNORE INTO answers ({', '.join(ANSWER_FIELDS)}) "
                                f"VALUES ({', '.join('?' * len(ANSWER_FIELDS))})",
                                [answer[field] for field in ANSWER_FIELDS])
            return cursor.rowcount == 1

    def answers(self) -> tp.List[tp.Dict[str, tp.Any]]:
        with self.connect() as db:
            rows = db.execute(f"SELECT {', '.join(ANSWER_FIELDS)} FROM answers ORDER BY answered_at, rater")
            return [dict(row) for row in rows]

    def raters(self) -> tp.List[str]:
        with self.connect() as db:
            return [row['id'] for row in db.execute('SELECT id FROM raters ORDER BY created')]
