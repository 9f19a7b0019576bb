"""The decision log: every decision and every feedback, appended durably before the client is answered.

SQLite in WAL mode with synchronous=FULL: a record acknowledged to a client survives a crash of the process
(or `kill -9`). The log feeds two consumers: contact policies (recent contacts since the features were
computed) and retraining (decisions in the `contacts` contract format, with their logged propensities).

Several processes (uvicorn workers) share the file. A worker reads a customer's recent contacts, decides, then
appends; another worker may append a contact for the same customer in between, which the first never saw.
`append_guarded` closes that gap: in the append's own write transaction (SQLite serialises those across
processes) it looks for contacts another writer logged for the customer after the read (`watermark`), and
withdraws the decision to "no contact" if there is one. Conservative by design: a race can cost a contact, never
break a cap or a minimum gap.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from journey.durable import DurableSqlite
from journey.durable import iso_utc as _iso
from journey.errors import ParcoursError
from journey.vocabulary import NO_CONTACT

FEEDBACK_OUTCOMES: tuple[str, ...] = ("delivered", "opened", "clicked", "converted", "ignored", "unsubscribed")
WITHDRAWN_POLICY_SUFFIX = ":withdrawn"
WITHDRAWN_REASON = (
    "withdrawn to no contact: another worker logged a contact for this customer while this decision was being made"
)
_COLUMNS = (
    "decision_id, customer_id, ts, channel, content, objective, propensity, policy, explored, phase, cold_start, "
    "scores, model_versions, features, writer"
)
_INSERT = f"INSERT INTO decisions ({_COLUMNS}) VALUES ({','.join('?' * len(_COLUMNS.split(',')))})"

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
    features TEXT,
    writer TEXT
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


def withdrawn(record: DecisionRecord) -> DecisionRecord:
    """The record of a contact decision withdrawn by `DecisionLog.append_guarded`: no contact, chosen for sure.

    The policy keeps its name with a suffix, so retraining and off-policy evaluation can tell (and drop) these
    rows: "no contact" was not drawn with the logged propensity, it was forced by a race."""
    return dataclasses.replace(
        record,
        channel=NO_CONTACT,
        content=NO_CONTACT,
        objective=None,
        propensity=1.0,
        policy=record.policy + WITHDRAWN_POLICY_SUFFIX,
        explored=False,
    )


class DecisionLog(DurableSqlite):
    """Thread-safe appender/reader over one SQLite file; `writer_id` names this process's appends."""

    def __init__(self, path: Path, writer_id: str | None = None) -> None:
        super().__init__(path, _SCHEMA)
        self.writer_id = writer_id or uuid.uuid4().hex
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(decisions)")}
        if "writer" not in columns:  # a log written before writers were named: add the column in place
            self._conn.execute("ALTER TABLE decisions ADD COLUMN writer TEXT")

    def append_decisions(self, records: Iterable[DecisionRecord]) -> int:
        """Append in one transaction; returns how many were written (all or none)."""
        rows = [self._row(r) for r in records]
        with self._transaction() as conn:
            conn.executemany(_INSERT, rows)
        return len(rows)

    def append_guarded(
        self,
        records: Sequence[DecisionRecord],
        watermarks: Mapping[str, int],
        exempt: Collection[str] = (),
    ) -> frozenset[str]:
        """Append in one transaction, withdrawing (to no contact, `withdrawn`) every contact decision whose
        customer got a contact from another writer after its read: a row past `watermarks[decision_id]` (the
        `watermark` taken with the contact-policy read). Decisions on `exempt` channels (the policies' uncapped
        ones: no cap or gap applies to them) are never withdrawn. Returns the ids of the withdrawn decisions."""
        with self._transaction() as conn:
            raced = {
                r.decision_id
                for r in records
                if r.channel != NO_CONTACT
                and r.channel not in exempt
                and r.decision_id in watermarks
                and conn.execute(
                    "SELECT 1 FROM decisions WHERE customer_id = ? AND rowid > ? AND channel != 'none' "
                    "AND (writer IS NULL OR writer != ?) LIMIT 1",
                    (r.customer_id, int(watermarks[r.decision_id]), self.writer_id),
                ).fetchone()
            }
            rows = [self._row(withdrawn(r) if r.decision_id in raced else r) for r in records]
            conn.executemany(_INSERT, rows)
        return frozenset(raced)

    def watermark(self) -> int:
        """The position of the latest logged decision: what a read taken now has seen (`append_guarded`)."""
        with self._lock:
            return int(self._conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM decisions").fetchone()[0])

    def _row(self, r: DecisionRecord) -> tuple[Any, ...]:
        return (
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
            self.writer_id,
        )

    def append_feedback(self, decision_id: str, outcome: str, ts: pd.Timestamp, value: float | None = None) -> int:
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
        return self.recent_contact_counts_at(since, now)[0]

    def recent_contact_counts_at(
        self, since: Mapping[str, pd.Timestamp], now: pd.Timestamp
    ) -> tuple[list[tuple[str, str, int, int, pd.Timestamp]], int]:
        """`recent_contact_counts` and the `watermark` of the same snapshot (one read transaction), so a later
        `append_guarded` knows exactly which contacts the counts could not include."""
        if not since:
            return [], self.watermark()
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
            self._conn.execute("BEGIN")  # one snapshot for both reads
            try:
                mark = int(self._conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM decisions").fetchone()[0])
                rows = self._conn.execute(sql, params).fetchall()
            finally:
                self._conn.execute("COMMIT")
        counts = [(c, ch, int(n_day), int(n_week), pd.Timestamp(latest)) for c, ch, n_day, n_week, latest in rows]
        return counts, mark

    def count(self, table: str = "decisions") -> int:
        if table not in {"decisions", "feedback"}:
            raise ValueError(table)
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def contacts_frame(self) -> pd.DataFrame:
        """Logged decisions in the `contacts` data-contract format, for retraining and off-policy evaluation.

        Withdrawn decisions (`append_guarded`) are left out: their "no contact" was forced by a race, not drawn
        with a propensity, so they are neither a treated nor a control row."""
        with self._lock:
            frame = pd.read_sql_query(
                "SELECT decision_id, customer_id, ts, channel, content, propensity, policy FROM decisions "
                "WHERE policy NOT LIKE ?",
                self._conn,
                params=(f"%{WITHDRAWN_POLICY_SUFFIX}",),
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
