"""What the decision log and the ingested-event log share: an append-only SQLite file that survives `kill -9`.

WAL mode with synchronous=FULL: a committed transaction is on disk before the client is answered. One
connection per process, guarded by a lock; several processes (uvicorn workers) may write, SQLite's busy timeout
serialises them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

BUSY_TIMEOUT_S = 10.0


def iso_utc(ts: pd.Timestamp) -> str:
    """UTC ISO-8601 with microseconds, so lexical order is time order."""
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class DurableSqlite:
    """Base of the durable logs: opens the file with the right pragmas and applies `schema`."""

    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(schema)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock: committed (durably) on success, rolled back on any error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
