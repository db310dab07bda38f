"""The results store: one SQLite database (standard library) per benchmark,
and an artifact folder beside it.

    results.sqlite          meta (format), cells (one row per cell), models
    results.artifacts/      models/<model key>/  trained models (safetensors + card)
                            cells/<cell key>/    what a cell leaves (reversed triggers)

A cell's row is written once, in one transaction, when the cell has finished
(done or failed); a done row is never replaced, a failed one only by a retry.
An interrupted run therefore leaves only whole rows, and re-running resumes.
Artifacts are written to a temporary folder and renamed before the row that
names them is committed, so a row never points at a half-written file.

Only the driver (the `bench` process) writes. It holds an exclusive lock on the
database file for the whole run, so a second `bench` on the same database stops
with a clear error instead of racing it; the lock dies with the process.

A file that is not an SQLite database, is corrupt, or is an SQLite database of
some other program is refused with one line; it is never overwritten.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.checkpoint import atomic_output
from ..errors import BadInput

FORMAT = "backdoorguard.bench/1"
SQLITE_HEADER = b"SQLite format 3\x00"
STATUSES = ("done", "failed")

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cells (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    family TEXT NOT NULL,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    attack TEXT NOT NULL,
    defense TEXT NOT NULL,
    seed INTEGER NOT NULL,
    model_key TEXT NOT NULL,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    baseline TEXT NOT NULL,
    result TEXT NOT NULL,
    cost TEXT NOT NULL,
    timings TEXT NOT NULL,
    artifacts TEXT NOT NULL,
    versions TEXT NOT NULL,
    error TEXT,
    attempts INTEGER NOT NULL,
    finished REAL NOT NULL
);
CREATE TABLE models (
    key TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    cost TEXT NOT NULL,
    finished REAL NOT NULL
);
"""
JSON_COLUMNS = ("config", "metrics", "baseline", "result", "cost", "timings", "artifacts",
                "versions")


@dataclass
class Row:
    """One finished cell, as stored."""

    key: str
    status: str
    family: str
    labels: dict[str, str]
    seed: int
    model_key: str
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    versions: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 1
    finished: float = 0.0


def _check_file(path: Path) -> None:
    """Refuse anything that is not (yet) one of our databases, before SQLite touches it."""
    if not path.is_file():
        raise BadInput(f"results database {str(path)!r} is not a regular file")
    with open(path, "rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if len(header) == 0:
        raise BadInput(f"results database {str(path)!r} is an empty file, not a results "
                       "database; remove it or choose another path")
    if header != SQLITE_HEADER:
        raise BadInput(f"{str(path)!r} is not an SQLite database (refusing to touch it); "
                       "choose another --db path")


class Store:
    """Open (and, with `create=True`, create) a results database."""

    def __init__(self, path: str | Path, *, create: bool = False, lock: bool = False) -> None:
        self.path = Path(path)
        self.artifacts = self.path.with_suffix(".artifacts")
        self._lock_handle = None
        exists = self.path.exists()
        if exists:
            _check_file(self.path)
        elif not create:
            raise BadInput(f"results database {str(self.path)!r} does not exist")
        elif not self.path.resolve().parent.is_dir():
            raise BadInput(f"cannot create {str(self.path)!r}: its folder does not exist")
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            if lock:
                self._lock()
            if exists:
                self._check_schema()
            else:
                self._create()
        except sqlite3.DatabaseError as error:
            self.close()
            raise BadInput(f"results database {str(self.path)!r} is corrupt or unreadable "
                           f"({error})") from None

    # ------------------------------------------------------------ opening

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # no advisory locks (Windows): one driver is the user's job
            return
        self._lock_handle = open(self.path, "ab")
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_handle.close()
            self._lock_handle = None
            raise BadInput(f"results database {str(self.path)!r} is in use by another bench "
                           "run; wait for it to finish") from None

    def _check_schema(self) -> None:
        check = self.db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check: {check}")
        tables = {r[0] for r in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            raise BadInput(f"{str(self.path)!r} is an SQLite database of another program, not a "
                           "backdoorguard results database (refusing to change it)")
        row = self.db.execute("SELECT value FROM meta WHERE key='format'").fetchone()
        if row is None or row[0] != FORMAT or not {"cells", "models"} <= tables:
            found = row[0] if row else None
            raise BadInput(f"{str(self.path)!r} has format {found!r}, expected {FORMAT!r} "
                           "(refusing to change it)")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")

    def _create(self) -> None:
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        with self.transaction():
            for statement in SCHEMA.strip().split(";"):
                if statement.strip():
                    self.db.execute(statement)
            self.db.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
            self.db.execute("INSERT INTO meta VALUES ('created', ?)", (repr(time.time()),))

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
            self.db = None
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ------------------------------------------------------------ reading

    def statuses(self) -> dict[str, str]:
        """Cell key → status of every stored cell."""
        return dict(self.db.execute("SELECT key, status FROM cells"))

    def attempts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT key, attempts FROM cells"))

    def rows(self, status: str | None = None) -> list[Row]:
        """Stored cells in key order (so readers see a fixed order)."""
        query = "SELECT * FROM cells" + (" WHERE status = ?" if status else "") + " ORDER BY key"
        cursor = self.db.execute(query, (status,) if status else ())
        names = [d[0] for d in cursor.description]
        out = []
        for values in cursor:
            data = dict(zip(names, values))
            for column in JSON_COLUMNS:
                data[column] = json.loads(data[column])
            labels = {k: data.pop(k) for k in ("dataset", "model", "attack", "defense")}
            out.append(Row(labels=labels, **data))
        return out

    def model_rows(self) -> dict[str, dict[str, Any]]:
        out = {}
        for key, config, metrics, cost in self.db.execute(
                "SELECT key, config, metrics, cost FROM models ORDER BY key"):
            out[key] = {"config": json.loads(config), "metrics": json.loads(metrics),
                        "cost": json.loads(cost)}
        return out

    # ------------------------------------------------------------ writing

    def record(self, rows: Iterable[Row], model: dict[str, Any] | None = None) -> None:
        """Write finished cells (and the model they share, if given) in one transaction.
        A done cell is never overwritten."""
        with self.transaction():
            if model is not None:
                self.db.execute(
                    "INSERT OR IGNORE INTO models VALUES (?, ?, ?, ?, ?)",
                    (model["key"], _dump(model["config"]), _dump(model["metrics"]),
                     _dump(model["cost"]), time.time()))
            for row in rows:
                if row.status not in STATUSES:
                    raise ValueError(f"bad status {row.status!r}")
                values = (row.key, row.status, row.family, row.labels["dataset"],
                          row.labels["model"], row.labels["attack"], row.labels["defense"],
                          row.seed, row.model_key, *(_dump(getattr(row, c)) for c in JSON_COLUMNS),
                          row.error, row.attempts, row.finished or time.time())
                self.db.execute(
                    f"INSERT INTO cells VALUES ({', '.join('?' * len(values))}) "
                    "ON CONFLICT(key) DO UPDATE SET " + ", ".join(
                        f"{c} = excluded.{c}" for c in _COLUMNS[1:]) +
                    " WHERE cells.status = 'failed'", values)

    # ------------------------------------------------------------ artifacts

    def model_dir(self, model_key: str) -> Path:
        return self.artifacts / "models" / model_key

    def write_files(self, folder: Path, files: dict[str, bytes]) -> list[str]:
        """Write `files` into `folder` atomically (replacing a leftover of a killed
        run); returns their paths relative to the artifact folder."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(folder, overwrite=True) as tmp:
            for name, data in files.items():
                (tmp / name).write_bytes(data)
        return sorted(str((folder / name).relative_to(self.artifacts)) for name in files)

    def remove_leftovers(self) -> None:
        """Drop temporary folders a killed run left mid-write (never a finished one)."""
        for section in ("models", "cells"):
            folder = self.artifacts / section
            if folder.is_dir():
                for leftover in folder.iterdir():
                    if leftover.name.startswith(".") and leftover.name.endswith(
                            (".partial", ".old")):
                        shutil.rmtree(leftover, ignore_errors=True)


_COLUMNS = ("key", "status", "family", "dataset", "model", "attack", "defense", "seed",
            "model_key", *JSON_COLUMNS, "error", "attempts", "finished")


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=True)
