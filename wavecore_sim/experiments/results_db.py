"""The results database of ``explore``: one SQLite file that survives interruption.

Two tables:

* ``meta`` (``key``, ``value`` as JSON): the format, the definition of the exploration
  (network, batch, base machine, space, samples, seed), the objectives. A rerun must give
  the same definition, so that its points are the same points.
* ``results``: one row per point and model (``analytical`` or ``cycle``), keyed by
  ``(point_key, model)``: what defines the point (network, batch, schedule, normalization,
  the swept values and the full config with its hash), the code version, the status
  (``ok`` or ``failed`` with its one-line reason), the metrics, and the timing columns
  :data:`TIMING_COLUMNS`, the only ones that depend on the machine and the executor.

Each finished job's rows are committed in one transaction as they arrive. The file is in
WAL mode: a process killed at any moment (``kill -9``) leaves every committed row and no
partial one, and a rerun skips the points whose rows are there. A row that is already
there is never written again (``INSERT OR IGNORE``), so each point is in the file once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import WavecoreError

FORMAT = "wavecore-explore/1"
KEY_COLUMNS = ("point_key", "model")
#: Columns that say where and when a row was computed, not what: they differ between runs.
TIMING_COLUMNS = ("wall_seconds", "finished_at")


class ResultsDB:
    """An open results database (``':memory:'``: one that lives in memory only)."""

    def __init__(self, path: str | Path, columns: Sequence[str] | None = None) -> None:
        """Open (and with ``columns``, create or extend) the database at ``path``; errors
        are one line. Without ``columns`` the file must already be a results database."""
        self.path = str(path)
        memory = self.path == ":memory:"
        if not memory:
            check_db_path(self.path, must_exist=columns is None)
        try:
            self.conn = sqlite3.connect(self.path, timeout=30)
            if not memory:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")  # WAL: safe against kill -9
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as exc:
            raise WavecoreError(
                f"--db {self.path!r} is not a results database ({exc}); give another file"
            ) from None
        if tables and "meta" not in tables:
            raise WavecoreError(
                f"--db {self.path!r} is an SQLite file of something else; give another file"
            )
        if not tables and columns is None:
            raise WavecoreError(f"--db {self.path!r} holds no exploration yet")
        if columns is not None:
            self._create(columns, fresh=not tables)
        elif self.meta().get("format") != FORMAT:
            raise WavecoreError(f"--db {self.path!r} is not a {FORMAT} database")

    def _create(self, columns: Sequence[str], fresh: bool) -> None:
        with self.conn:
            if fresh:
                self.conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
                cols = ", ".join(f'"{c}"' for c in columns)
                self.conn.execute(f"CREATE TABLE results ({cols}, PRIMARY KEY (point_key, model))")
                self.conn.execute("INSERT INTO meta VALUES ('format', ?)", (json.dumps(FORMAT),))
            else:  # a database of an older version of the code: add the new columns
                have = self.columns()
                for c in columns:
                    if c not in have:
                        self.conn.execute(f'ALTER TABLE results ADD COLUMN "{c}"')

    def columns(self) -> list[str]:
        return [r[1] for r in self.conn.execute("PRAGMA table_info(results)")]

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}

    def set_meta(self, **values: Any) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [(k, json.dumps(v, sort_keys=True)) for k, v in values.items()],
            )

    def done(self, model: str) -> set[str]:
        """Keys of the points that have a row for ``model``."""
        rows = self.conn.execute("SELECT point_key FROM results WHERE model = ?", (model,))
        return {r[0] for r in rows}

    def add(self, rows: Iterable[dict[str, Any]]) -> int:
        """Commit ``rows`` in one transaction; rows already there are left as they are.
        Returns how many were new."""
        rows = list(rows)
        if not rows:
            return 0
        names = list(rows[0])
        columns = ", ".join(f'"{n}"' for n in names)
        marks = ", ".join("?" for _ in names)
        sql = f"INSERT OR IGNORE INTO results ({columns}) VALUES ({marks})"
        with self.conn:
            cur = self.conn.executemany(sql, [[_sql_value(r[n]) for n in names] for r in rows])
        return cur.rowcount

    def rows(self, model: str | None = None) -> list[dict[str, Any]]:
        """Rows (of ``model``), in point order, as dicts; JSON columns decoded."""
        where, args = ("WHERE model = ?", (model,)) if model else ("", ())
        cur = self.conn.execute(f"SELECT * FROM results {where} ORDER BY point_index, model", args)
        names = [d[0] for d in cur.description]
        out = []
        for values in cur:
            row = dict(zip(names, values, strict=True))
            for c in ("params", "config"):
                if isinstance(row.get(c), str):
                    row[c] = json.loads(row[c])
            out.append(row)
        return out

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _sql_value(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True)
    return value


def check_db_path(path: str, must_exist: bool) -> None:
    """A database file that can be opened (and written unless ``must_exist``), or one line
    saying why not. Nothing is left behind: writability is probed with a file that is
    removed at once."""
    if not path.strip() or "\0" in path:
        raise WavecoreError(f"--db {path!r} is not a file name; give one, e.g. --db runs/x.sqlite")
    p = Path(path)
    if p.is_dir():
        raise WavecoreError(
            f"--db {path!r} is a directory; give a file in it, e.g. {path}/x.sqlite"
        )
    if must_exist:
        if not p.is_file():
            raise WavecoreError(f"--db {path!r} not found; give the database of an exploration")
        return
    parent = p.parent
    if not parent.is_dir():
        raise WavecoreError(
            f"--db {path!r}: directory {str(parent)!r} does not exist; create it first"
        )
    try:
        if p.exists():
            with open(p, "r+b"):
                pass
        else:
            fd, probe = tempfile.mkstemp(prefix=".wavecore-probe-", dir=parent)
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise WavecoreError(
            f"--db {path!r} cannot be written ({exc.strerror or exc}); give a writable file"
        ) from None
