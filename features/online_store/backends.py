"""Where packed vectors live: one SQLite row or one Redis string per customer, keyed by customer_id.

No feast import here: the serving reader and the bulk writer use these directly (one query / one GET per read,
bulk upserts per write); the Feast plugins (`sqlite.py`, `redis.py`) wrap them for Feast's API.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

_IN_CHUNK = 500  # SQLite host parameters per IN (...) query
_REDIS_CHUNK = 5_000  # keys per MSET/MGET/UNLINK


class OnlineStoreUnavailable(RuntimeError):
    """The online store cannot be reached or read (server down, file unreadable)."""


class VectorBackend(Protocol):
    """A key-value table of packed vectors plus a tiny metadata map."""

    location: str

    def create(self) -> None: ...
    def drop(self) -> None: ...
    def get(self, customer_id: str) -> bytes | None: ...
    def get_many(self, customer_ids: Sequence[str]) -> list[bytes | None]: ...
    def put_many(self, customer_ids: Sequence[str], blobs: Sequence[bytes]) -> None: ...
    def delete_many(self, customer_ids: Sequence[str]) -> None: ...
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ----------------------------------------------------------------------------------------------------- SQLite


class SqliteVectors:
    """Table `<project>_customer_vectors(customer_id TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID` in WAL mode.

    WITHOUT ROWID: one B-tree keyed by customer_id (no separate rowid index), so a read is one index descent.
    WAL: serving keeps reading the previous snapshot while a bulk materialization writes.
    One connection shared under a lock (sqlite3 caches the prepared statements per connection).
    """

    def __init__(self, path: Path | str, project: str) -> None:
        self.path = Path(path)
        self.location = f"sqlite:{self.path}"
        self.table = _ident(f"{project}_customer_vectors")
        self.meta = _ident(f"{project}_online_meta")
        self._sql_get = f"SELECT v FROM {self.table} WHERE customer_id = ?"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except (sqlite3.Error, OSError) as exc:
                raise OnlineStoreUnavailable(f"SQLite online store {self.path} cannot be opened: {exc}") from exc
            self._conn = conn
        return self._conn

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._connection().execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise OnlineStoreUnavailable(f"SQLite online store {self.path}: {exc}") from exc

    def create(self) -> None:
        self._run(
            f"CREATE TABLE IF NOT EXISTS {self.table} (customer_id TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"
        )
        self._run(f"CREATE TABLE IF NOT EXISTS {self.meta} (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID")

    def drop(self) -> None:
        self._run(f"DROP TABLE IF EXISTS {self.table}")
        self._run(f"DROP TABLE IF EXISTS {self.meta}")

    def get(self, customer_id: str) -> bytes | None:
        rows = self._run(self._sql_get, (customer_id,))
        return bytes(rows[0][0]) if rows else None

    def get_many(self, customer_ids: Sequence[str]) -> list[bytes | None]:
        found: dict[str, bytes] = {}
        for part in _chunks(list(customer_ids), _IN_CHUNK):
            marks = ",".join("?" * len(part))
            rows = self._run(f"SELECT customer_id, v FROM {self.table} WHERE customer_id IN ({marks})", part)
            found.update((k, bytes(v)) for k, v in rows)
        return [found.get(c) for c in customer_ids]

    def put_many(self, customer_ids: Sequence[str], blobs: Sequence[bytes]) -> None:
        """Upsert in one transaction: readers see all of it or none of it."""
        self._write(
            f"INSERT OR REPLACE INTO {self.table} (customer_id, v) VALUES (?, ?)", zip(customer_ids, blobs, strict=True)
        )

    def delete_many(self, customer_ids: Sequence[str]) -> None:
        self._write(f"DELETE FROM {self.table} WHERE customer_id = ?", ((c,) for c in customer_ids))

    def _write(self, sql: str, rows: Any) -> None:
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise OnlineStoreUnavailable(f"SQLite online store {self.path}: write failed: {exc}") from exc

    def get_meta(self, key: str) -> str | None:
        try:
            rows = self._run(f"SELECT v FROM {self.meta} WHERE k = ?", (key,))
        except OnlineStoreUnavailable:  # table not created yet
            return None
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._run(f"INSERT OR REPLACE INTO {self.meta} (k, v) VALUES (?, ?)", (key, value))

    def ping(self) -> None:
        self._run(f"SELECT 1 FROM {self.table} LIMIT 1")

    def checkpoint(self) -> None:
        """Fold the WAL into the database file (so its size is the store's size)."""
        self._run("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ------------------------------------------------------------------------------------------------------ Redis


def parse_redis_url(url: str) -> dict[str, Any]:
    """Feast's connection string `host:port[,db=N][,password=...][,ssl=true]` as redis.Redis keyword arguments."""
    parts = [p.strip() for p in url.split(",") if p.strip()]
    if not parts or "=" in parts[0] or ":" not in parts[0]:
        raise ValueError(f"redis_url must look like host:port[,db=N][,password=...], got {url!r}")
    host, _, port = parts[0].rpartition(":")
    kwargs: dict[str, Any] = {"host": host, "port": int(port)}
    for part in parts[1:]:
        key, _, raw = part.partition("=")
        try:
            kwargs[key] = json.loads(raw)
        except json.JSONDecodeError:
            kwargs[key] = raw
    return kwargs


class RedisVectors:
    """One string per customer: key `<project>:v:<customer_id>`, value the packed vector. One GET per read.

    A Redis hash per customer with one field per feature (Feast's layout) costs ~10x the memory and 109 values to
    convert per read; MGET/pipelined MSET keep bulk reads and writes to one round trip per 5,000 customers.
    """

    def __init__(self, url: str, project: str, timeout_s: float = 1.0) -> None:
        import redis

        self.location = f"redis:{url}"
        self.prefix = f"{project}:v:".encode()
        self._meta = f"{project}:meta:"
        self._url = url
        self._client = redis.Redis(**parse_redis_url(url), socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        )

    def key(self, customer_id: str) -> bytes:
        return self.prefix + customer_id.encode()

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._errors as exc:
            raise OnlineStoreUnavailable(f"Redis online store at {self._url} unreachable ({what}): {exc}") from exc

    def create(self) -> None:
        self.ping()

    def drop(self) -> None:
        """Delete every vector of the project (SCAN, bounded by the number of keys) and the metadata."""

        def run() -> None:
            batch: list[bytes] = []
            for key in self._client.scan_iter(match=self.prefix + b"*", count=_REDIS_CHUNK):
                batch.append(key)
                if len(batch) >= _REDIS_CHUNK:
                    self._client.unlink(*batch)
                    batch = []
            if batch:
                self._client.unlink(*batch)
            for key in self._client.scan_iter(match=self._meta + "*"):
                self._client.unlink(key)

        self._call("drop", run)

    def get(self, customer_id: str) -> bytes | None:
        value = self._call("GET", self._client.get, self.key(customer_id))
        return None if value is None else bytes(value)

    def get_many(self, customer_ids: Sequence[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for part in _chunks(list(customer_ids), _REDIS_CHUNK):
            out += self._call("MGET", self._client.mget, [self.key(c) for c in part])
        return out

    def put_many(self, customer_ids: Sequence[str], blobs: Sequence[bytes]) -> None:
        def run() -> None:
            pipe = self._client.pipeline(transaction=False)
            for i, (ids, values) in enumerate(
                zip(_chunks(customer_ids, _REDIS_CHUNK), _chunks(blobs, _REDIS_CHUNK), strict=True)
            ):
                pipe.mset(dict(zip((self.key(c) for c in ids), values, strict=True)))
                if i % 20 == 19:
                    pipe.execute()
            pipe.execute()

        self._call("MSET", run)

    def delete_many(self, customer_ids: Sequence[str]) -> None:
        for part in _chunks(list(customer_ids), _REDIS_CHUNK):
            if part:
                self._call("UNLINK", self._client.unlink, *[self.key(c) for c in part])

    def get_meta(self, key: str) -> str | None:
        value = self._call("GET", self._client.get, self._meta + key)
        return None if value is None else bytes(value).decode()

    def set_meta(self, key: str, value: str) -> None:
        self._call("SET", self._client.set, self._meta + key, value)

    def ping(self) -> None:
        self._call("PING", self._client.ping)

    def used_memory(self) -> int:
        return int(self._call("INFO", self._client.info, "memory")["used_memory"])

    def close(self) -> None:
        self._client.close()
