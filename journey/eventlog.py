"""The ingested-event log: events received in real time, appended durably before they are acknowledged.

SQLite in WAL mode with synchronous=FULL, like the decision log: an event acknowledged to a client survives a crash
of the process. Two consumers read it: the real-time feature refresh (the events of a few customers, by index) and
the next offline build (`parcours.pipelines.load_usable` merges every ingested event into the dataset).

Ingested events follow the `events` data contract. A customer unknown to the workspace is accepted as a new,
anonymous visitor (no sign-up, no consent) rather than refused: real-time traffic sees people before the next CRM
export does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from journey.contract import empty_frame, validate
from journey.durable import DurableSqlite
from journey.durable import iso_utc as _iso
from journey.settings import Settings
from journey.vocabulary import CONSENT_COLUMNS, CONSENT_FIELDS, EventType

EVENT_COLUMNS: tuple[str, ...] = ("customer_id", "ts", "event_type", "channel", "content", "value")
_TS: Final = "datetime64[us, UTC]"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL,
    ts TEXT NOT NULL,
    event_type TEXT NOT NULL,
    channel TEXT NOT NULL,
    content TEXT,
    value REAL,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_customer_ts ON events (customer_id, ts);
"""


def event_log_path(settings: Settings) -> Path:
    """`PARCOURS_EVENT_LOG_PATH`, default `<home>/logs/events.db`."""
    return settings.event_log_path or settings.logs_dir / "events.db"


class EventLog(DurableSqlite):
    """Thread-safe appender/reader over one SQLite file."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)

    def append(self, events: pd.DataFrame, received_at: pd.Timestamp | None = None) -> int:
        """Append normalised events (the contract's `events` columns) in one transaction: all or none."""
        received = _iso(received_at if received_at is not None else pd.Timestamp.now(tz="UTC"))
        rows = [
            (str(c), _iso(t), str(e), str(ch), _text(x), _number(v), received)
            for c, t, e, ch, x, v in zip(*(events[col] for col in EVENT_COLUMNS), strict=True)
        ]
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO events (customer_id, ts, event_type, channel, content, value, received_at) "
                "VALUES (?,?,?,?,?,?,?)",
                rows,
            )
        return len(rows)

    def events_for(self, customer_ids: Sequence[str]) -> pd.DataFrame:
        """The ingested events of these customers (index lookup), in the normalised `events` format."""
        ids = sorted({str(c) for c in customer_ids})
        if not ids:
            return _to_frame([])
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE customer_id IN ({marks}) ORDER BY seq", ids
            ).fetchall()
        return _to_frame(rows)

    def frame(self) -> pd.DataFrame:
        """Every ingested event, in arrival order."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events ORDER BY seq").fetchall()
        return _to_frame(rows)

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def read_ingested(path: Path) -> pd.DataFrame:
    """Every ingested event of the log at `path`; an empty frame when nothing was ever ingested (no file made)."""
    if not path.exists():
        return _to_frame([])
    log = EventLog(path)
    try:
        return log.frame()
    finally:
        log.close()


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT


def _text(value: object) -> str | None:
    return None if _missing(value) else str(value)


def _number(value: object) -> float | None:
    return None if _missing(value) else float(value)  # type: ignore[arg-type]


def _to_frame(rows: list[tuple[object, ...]]) -> pd.DataFrame:
    if not rows:
        return empty_frame("events")
    frame = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601").astype(_TS)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    frame["content"] = frame["content"].astype(object).where(frame["content"].notna(), None)
    return frame


# ------------------------------------------------------------------------------------------------ validation


@dataclass(frozen=True)
class EventProblem:
    """Why one submitted event was refused: its position in the batch, the field and the broken rule."""

    index: int
    field: str
    rule: str


def validate_events(
    raw: pd.DataFrame, now: pd.Timestamp, max_future: pd.Timedelta
) -> tuple[pd.DataFrame, list[EventProblem]]:
    """Check submitted events against the `events` contract (vocabulary, types, ranges, duplicates in the batch).

    Customers are not checked against a customers table: an unknown one is a new visitor. Timestamps may be at most
    `max_future` ahead of `now` (clock skew), stricter than the file contract's one day, because real-time
    features are computed as of now. Returns the normalised events, in input order, and the problems (empty = ok).
    """
    ids = raw["customer_id"] if "customer_id" in raw.columns else pd.Series([], dtype=object)
    visitors = pd.DataFrame({"customer_id": ids.dropna().unique(), "signup_ts": None})
    checked = validate(visitors, raw, None, now=now)
    rows = checked.quarantine[checked.quarantine["table"] == "events"]
    problems = [
        EventProblem(int(r), _field(str(reason)), str(reason))
        for r, reason in zip(rows["row"], rows["reason"], strict=True)
    ]
    events = checked.events
    limit = now + max_future
    late = np.flatnonzero((events["ts"] > limit).to_numpy(dtype=bool))
    valid_rows = np.setdiff1d(np.arange(len(raw)), rows["row"].to_numpy(dtype="int64"))
    problems += [
        EventProblem(int(valid_rows[i]), "ts", f"ts: {events['ts'].iloc[i]} is more than {max_future} in the future")
        for i in late
    ]
    return events, sorted(problems, key=lambda p: (p.index, p.field))


def _field(reason: str) -> str:
    head = reason.split(":", 1)[0].strip()
    return head if head in EVENT_COLUMNS else "event"


# ------------------------------------------------------------------------------------------------ merging


def merge_ingested(
    customers: pd.DataFrame, events: pd.DataFrame, ingested: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The dataset's customers and events with the ingested events added; pure, idempotent.

    - an ingested event identical to one already there (same customer, time, type, channel, content, value: the
      contract's duplicate rule) is dropped, so a retried request or a later export that contains it counts once;
    - a customer unknown to `customers` is added as an anonymous visitor without consent;
    - a customer with no sign-up time gets the time of their first ingested `signup` event;
    - an ingested `unsubscribe` withdraws today's consent on its channel (parcours never contacts without proof).
    """
    if ingested.empty:
        return customers, events
    fresh = _new_only(events, ingested.loc[:, list(EVENT_COLUMNS)])
    merged = pd.concat([events, fresh], ignore_index=True) if len(fresh) else events
    return _with_people(customers, ingested), merged


def _new_only(events: pd.DataFrame, ingested: pd.DataFrame) -> pd.DataFrame:
    ids = ingested["customer_id"].unique()
    known = events.loc[events["customer_id"].isin(ids), list(EVENT_COLUMNS)]  # only these customers can collide
    both = pd.concat([known.assign(_new=False), ingested.assign(_new=True)], ignore_index=True)
    both["ts"] = pd.to_datetime(both["ts"], utc=True).astype(_TS)
    both["content"] = both["content"].astype(object).where(both["content"].notna(), None)
    repeated = both.duplicated(subset=list(EVENT_COLUMNS), keep="first")
    fresh = both.loc[both["_new"] & ~repeated, list(EVENT_COLUMNS)].reset_index(drop=True)
    fresh["ts"] = fresh["ts"].astype(events["ts"].dtype if len(events) else _TS)
    return fresh


def _with_people(customers: pd.DataFrame, ingested: pd.DataFrame) -> pd.DataFrame:
    out = customers
    new = pd.Index(ingested["customer_id"].unique()).difference(pd.Index(customers["customer_id"]))
    if len(new):
        visitors = pd.DataFrame({"customer_id": np.asarray(new, dtype=object)})
        visitors["signup_ts"] = pd.Series(pd.NaT, index=visitors.index, dtype=_TS)
        for column in CONSENT_FIELDS:
            visitors[column] = False
        out = pd.concat([customers, visitors], ignore_index=True)
    signups = ingested[ingested["event_type"] == EventType.SIGNUP.value].groupby("customer_id")["ts"].min()
    unsubscribes = ingested[ingested["event_type"] == EventType.UNSUBSCRIBE.value]
    if signups.empty and unsubscribes.empty:
        return out
    out = out.copy()
    if not signups.empty:
        first = out["customer_id"].map(signups)
        fill = out["signup_ts"].isna() & first.notna()
        out.loc[fill, "signup_ts"] = pd.to_datetime(first[fill], utc=True).astype(out["signup_ts"].dtype)
    for channel, column in CONSENT_COLUMNS.items():
        gone = unsubscribes.loc[unsubscribes["channel"] == str(channel), "customer_id"]
        if len(gone) and column in out.columns:
            out.loc[out["customer_id"].isin(gone), column] = False
    return out
