"""Event ingestion: validate, append durably, then refresh the customers' online features as of now.

Order matters: an event is acknowledged only once it is in the ingested-event log (fsynced), so a crash after the
append loses nothing (the next offline build sees it); the feature refresh comes after and, if it fails, the
response says so instead of failing the request. Refreshes are serialised by a file lock (threads and worker
processes of one host), and each reads the log *after* its own append, so the last write to the online store
always reflects every acknowledged event of its customers.
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from features.definitions import FAMILIES, features_of
from features.feast_repo.feature_views import view_name
from features.realtime import HistoryReader, Source, features_now, read_source
from journey.errors import NotReadyError
from journey.eventlog import EventLog, EventProblem, event_log_path, validate_events
from journey.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)

_KEYS = ["customer_id", "event_timestamp"]
_CONTACT_COLUMNS = ["decision_id", "customer_id", "ts", "channel", "content", "propensity", "policy"]


class InvalidEvents(Exception):
    """Submitted events break the data contract; nothing was stored."""

    def __init__(self, problems: list[EventProblem]) -> None:
        super().__init__(f"{len(problems)} invalid event(s)")
        self.problems = problems


@dataclass(frozen=True)
class Ingested:
    accepted: int
    customers: int
    refreshed: int
    snapshot_ts: pd.Timestamp | None
    refresh_error: str | None = None


class IngestService:
    """Built lazily on the first `POST /v1/events` and cached on `app.state` (no start-up cost for decisions)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log = EventLog(event_log_path(settings))
        self._max_future = pd.Timedelta(seconds=settings.ingest_max_future_seconds)
        self._store: FeatureStore | None = None
        self._reader: HistoryReader | None = None
        self._lock = threading.Lock()
        self._lock_path = settings.feature_store_dir / "realtime.lock"

    def close(self) -> None:
        self.log.close()
        if self._reader is not None:
            self._reader.close()

    def ingest(self, raw: pd.DataFrame, now: pd.Timestamp) -> Ingested:
        """Validate (raises InvalidEvents), append durably (raises on a storage failure), refresh (never raises)."""
        events, problems = validate_events(raw, now, self._max_future)
        if problems:
            raise InvalidEvents(problems)
        self.log.append(events, received_at=now)
        ids = sorted(events["customer_id"].astype(str).unique())
        try:
            refreshed, stamp = self.refresh(ids, now)
        except NotReadyError as exc:
            return Ingested(len(events), len(ids), 0, None, str(exc))
        except Exception as exc:  # the events are safe in the log; the next refresh or build catches up
            log.exception("feature refresh failed after ingestion")
            return Ingested(len(events), len(ids), 0, None, f"feature refresh failed: {type(exc).__name__}")
        return Ingested(len(events), len(ids), refreshed, stamp)

    def refresh(self, customer_ids: Sequence[str], now: pd.Timestamp) -> tuple[int, pd.Timestamp]:
        """Recompute these customers' features from their whole history and write them online; returns
        (customers written, snapshot time)."""
        with _exclusive(self._lock_path):
            source = read_source(self.settings)
            if source is None:
                raise NotReadyError(
                    "events stored, features not refreshed: this workspace has no feature build yet "
                    "(run `parcours features build`)"
                )
            history = self._history(source).read(customer_ids)
            ingested = self.log.events_for(customer_ids)
            logged = logged_contacts(self.settings.decision_log_path, customer_ids, now)
            newest = pd.concat([history.events["ts"], ingested["ts"]]).max()
            as_of = max(now, pd.Timestamp(newest) + pd.Timedelta(microseconds=1)) if pd.notna(newest) else now
            frame = features_now(history, ingested, logged, as_of, stamp=now)
            write_online(self._feature_store(), frame)
        return len(frame), now

    def _history(self, source: Source) -> HistoryReader:
        with self._lock:
            if self._reader is None or self._reader.source.history_dir != source.history_dir:
                if self._reader is not None:
                    self._reader.close()
                self._reader = HistoryReader(source)
            return self._reader

    def _feature_store(self) -> FeatureStore:
        with self._lock:
            if self._store is None:
                from features.store import open_store

                self._store = open_store(self.settings)
            return self._store


def write_online(store: FeatureStore, frame: pd.DataFrame) -> None:
    """Feast's write path, one call per feature view (works with any online store plugin)."""
    if frame.empty:
        return
    for family in FAMILIES:
        names = [f.name for f in features_of(family)]
        store.write_to_online_store(view_name(family), frame[_KEYS + names].reset_index(drop=True))


def logged_contacts(path: Path, customer_ids: Sequence[str], before: pd.Timestamp) -> pd.DataFrame:
    """Decisions serving logged for these customers before `before`, in the `contacts` format (read-only; the
    decision log's (customer_id, ts) index makes this a few lookups)."""
    empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in _CONTACT_COLUMNS})
    ids = sorted({str(c) for c in customer_ids})
    if not path.exists() or not ids:
        return empty
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows: list[Any] = conn.execute(
            f"SELECT {', '.join(_CONTACT_COLUMNS)} FROM decisions "
            f"WHERE customer_id IN ({','.join('?' * len(ids))}) AND ts < ?",
            [*ids, pd.Timestamp(before).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")],
        ).fetchall()
    except sqlite3.OperationalError:  # no decisions table yet
        return empty
    finally:
        conn.close()
    if not rows:
        return empty
    frame = pd.DataFrame(rows, columns=_CONTACT_COLUMNS)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601").astype("datetime64[us, UTC]")
    return frame


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One refresh at a time on this host (flock: threads and processes alike)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
