"""The decision log: every decision and every feedback, appended durably before the client is answered.

SQLite in WAL mode with synchronous=FULL: a record acknowledged to a client survives a crash of the process
(or `kill -9`). The log feeds two consumers: contact policies (recent contacts since the features were
computed) and retraining (decisions in the `contacts` contract format, with their logged propensities).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from journey.durable import DurableSqlite
from journey.durable import iso_utc as _iso
from journey.errors import ParcoursError

FEEDBACK_OUTCOMES: tuple[str, ...] = ("delivered", "opened", "clicked", "converted", "ignored", "unsubscribed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    ts TEXT NOT NULL,
    channel TEXT NOT NULL,
    content TEXT NOT NULL,
    objective TEXT,
    propensity REAL NOT NULL,
    policy TEXT NOT NULL,
    explored INTEGER NOT NULL,
    phase TEXT,
    cold_start INTEGER NOT NULL,
    scores TEXT,
    model_versions TEXT,
    features TEXT
);
CREATE INDEX IF NOT EXISTS decisions_customer_ts ON decisions (customer_id, ts);
-- contacts only, covering the contact-policy reads (recent contacts per customer): they never touch the wide rows
CREATE INDEX IF NOT EXISTS decisions_contacts ON decisions (customer_id, ts, channel) WHERE channel != 'none';
CREATE TABLE IF NOT EXISTS feedback (
    feedback_id INTEGER PRIMARY KEY AUTOINCREMENT,
    decision_id TEXT NOT NULL REFERENCES decisions (decision_id),
    ts TEXT NOT NULL,
    outcome TEXT NOT NULL,
    value REAL,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_decision ON feedback (decision_id);
"""


class UnknownDecisionError(ParcoursError):
    """Feedback names a decision id that was never logged."""


@dataclass(frozen=True)
class DecisionRecord:
    decision_id: str
    customer_id: str
    ts: pd.Timestamp
    channel: str
    content: str
    objective: str | None
    propensity: float
    policy: str
    explored: bool
    phase: str | None
    cold_start: bool
    scores: Mapping[str, Any]
    model_versions: Mapping[str, str]
    features: Mapping[str, Any]


class DecisionLog(DurableSqlite):
    """Thread-safe appender/reader over one SQLite file."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)

    def append_decisions(self, records: Iterable[DecisionRecord]) -> int:
        """Append in one transaction; returns how many were written (all or none)."""
        rows = [
            (
                r.decision_id,
                r.customer_id,
                _iso(r.ts),
                r.channel,
                r.content,
                r.objective,
                r.propensity,
                r.policy,
                int(r.explored),
                r.phase,
                int(r.cold_start),
                json.dumps(r.scores, default=float),
                json.dumps(r.model_versions),
                json.dumps(r.features, default=_json_scalar),
            )
            for r in records
        ]
        with self._transaction() as conn:
            conn.executemany("INSERT INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        return len(rows)

    def append_feedback(
        self, decision_id: str, outcome: str, ts: pd.Timestamp, value: float | None = None
    ) -> int:
        """Record an outcome for a logged decision; returns the feedback id."""
        received = _iso(pd.Timestamp.now(tz="UTC"))
        with self._transaction() as conn:
            known = conn.execute("SELECT 1 FROM decisions WHERE decision_id = ?", (decision_id,)).fetchone()
            if not known:
                raise UnknownDecisionError(f"decision_id: '{decision_id}' was never logged")
            cursor = conn.execute(
                "INSERT INTO feedback (decision_id, ts, outcome, value, received_at) VALUES (?,?,?,?,?)",
                (decision_id, _iso(ts), outcome, value, received),
            )
        return int(cursor.lastrowid or 0)

    def recent_contacts(self, customer_id: str, since: pd.Timestamp) -> list[tuple[pd.Timestamp, str]]:
        """Outbound contacts decided for this customer since `since` (what the features do not know yet)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT ts, channel FROM decisions WHERE customer_id = ? AND ts >= ? AND channel != 'none'",
                (customer_id, _iso(since)),
            ).fetchall()
        return [(pd.Timestamp(ts), channel) for ts, channel in rows]

    def recent_contact_counts(
        self, since: Mapping[str, pd.Timestamp], now: pd.Timestamp
    ) -> list[tuple[str, str, int, int, pd.Timestamp]]:
        """What `recent_contacts` tells the contact policies, for many customers in one query, aggregated:
        (customer_id, channel, contacts in the day before `now`, in the 7 days before `now`, latest contact ts)
        over the contacts logged since each customer's `since` (one row per customer and contacted channel)."""
        if not since:
            return []
        asked = ",".join("(?,?)" for _ in since)
        params: list[str] = []
        formatted: dict[pd.Timestamp, str] = {}  # customers mostly share one snapshot time: format it once
        for customer_id, ts in since.items():
            if ts not in formatted:
                formatted[ts] = _iso(ts)
            params += [customer_id, formatted[ts]]
        day, week = len(params) + 1, len(params) + 2  # numbered after the VALUES placeholders
        params += [_iso(now - pd.Timedelta(days=1)), _iso(now - pd.Timedelta(days=7))]
        sql = (
            f"WITH asked(customer_id, since) AS (VALUES {asked}) "
            f"SELECT d.customer_id, d.channel, TOTAL(d.ts > ?{day}), TOTAL(d.ts > ?{week}), MAX(d.ts) "
            "FROM asked JOIN decisions AS d ON d.customer_id = asked.customer_id AND d.ts >= asked.since "
            "WHERE d.channel != 'none' GROUP BY d.customer_id, d.channel"
        )
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [(c, ch, int(n_day), int(n_week), pd.Timestamp(latest)) for c, ch, n_day, n_week, latest in rows]

    def count(self, table: str = "decisions") -> int:
        if table not in {"decisions", "feedback"}:
            raise ValueError(table)
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def contacts_frame(self) -> pd.DataFrame:
        """Logged decisions in the `contacts` data-contract format, for retraining and off-policy evaluation."""
        with self._lock:
            frame = pd.read_sql_query(
                "SELECT decision_id, customer_id, ts, channel, content, propensity, policy FROM decisions",
                self._conn,
            )
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[us, UTC]")
        return frame

    def feedback_frame(self) -> pd.DataFrame:
        with self._lock:
            frame = pd.read_sql_query("SELECT * FROM feedback", self._conn)
        for column in ("ts", "received_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
        return frame


def _json_scalar(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
