"""Two writers on one decision log (two uvicorn workers): a contact decided on a stale read is withdrawn, never
logged on top of another worker's contact."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from journey.logbook import WITHDRAWN_POLICY_SUFFIX, DecisionLog, DecisionRecord
from serving.writer import LogWriter
from tests.unit.test_serving_writer import NOW
from tests.unit.test_serving_writer import record as base_record


def record(decision_id: str, customer: str = "c1", channel: str = "email") -> DecisionRecord:
    if channel == "none":
        return dataclasses.replace(base_record(decision_id, customer), channel="none", content="none", objective=None)
    return dataclasses.replace(base_record(decision_id, customer), channel=channel)


def logged(path: Path, decision_id: str) -> tuple[str, str, float, str]:
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT channel, content, propensity, policy FROM decisions WHERE decision_id = ?", (decision_id,)
        ).fetchone()
    return tuple(row)  # type: ignore[return-value]


def test_a_contact_decided_before_another_writers_contact_is_withdrawn(tmp_path: Path) -> None:
    path = tmp_path / "decisions.db"
    first, second = DecisionLog(path), DecisionLog(path)
    mark = first.recent_contact_counts_at({"c1": NOW - pd.Timedelta(days=7)}, NOW)[1]
    second.append_decisions([record("other", "c1")])  # the other worker contacts c1 after our read
    raced = first.append_guarded([record("mine", "c1"), record("free", "c2")], {"mine": mark, "free": mark})
    assert raced == {"mine"}
    assert logged(path, "mine") == ("none", "none", 1.0, "nba" + WITHDRAWN_POLICY_SUFFIX)
    assert logged(path, "free")[0] == "email"  # another customer: untouched
    assert first.count() == 3  # the withdrawn decision is logged, as what it became
    frame = first.contacts_frame()  # but it is no training row: its "none" was forced, not drawn
    assert set(frame["decision_id"]) == {"other", "free"}


def test_no_withdrawal_for_own_contacts_none_rows_fresh_reads_or_exempt_channels(tmp_path: Path) -> None:
    path = tmp_path / "decisions.db"
    first, second = DecisionLog(path), DecisionLog(path)
    mark = first.watermark()
    first.append_decisions([record("own", "c1")])  # our own earlier contact: the caps counted it in flight
    second.append_decisions([record("quiet", "c2", channel="none"), record("theirs", "c3")])
    web = dataclasses.replace(record("web", "c3"), channel="web")
    fresh = first.watermark()  # read after their contact: the caps saw it
    raced = first.append_guarded(
        [record("again", "c1"), record("after-none", "c2"), web, record("fresh", "c3")],
        {"again": mark, "after-none": mark, "web": mark, "fresh": fresh},
        exempt={"web"},
    )
    assert raced == frozenset()


def test_an_older_log_gains_the_writer_column_and_its_rows_count_as_another_writers(tmp_path: Path) -> None:
    path = tmp_path / "decisions.db"
    with sqlite3.connect(path) as db:  # the schema before writers were named
        db.execute(
            "CREATE TABLE decisions (decision_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, ts TEXT NOT NULL, "
            "channel TEXT NOT NULL, content TEXT NOT NULL, objective TEXT, propensity REAL NOT NULL, policy TEXT "
            "NOT NULL, explored INTEGER NOT NULL, phase TEXT, cold_start INTEGER NOT NULL, scores TEXT, "
            "model_versions TEXT, features TEXT)"
        )
    log = DecisionLog(path)
    mark = log.watermark()
    with sqlite3.connect(path) as db:  # a row without a writer, appended after the read
        db.execute(
            "INSERT INTO decisions (decision_id, customer_id, ts, channel, content, propensity, policy, explored, "
            "cold_start) VALUES ('old', 'c1', '2026-01-05T09:00:00.000000Z', 'sms', 'x', 0.5, 'rules', 0, 0)"
        )
    assert log.append_guarded([record("new", "c1")], {"new": mark}) == {"new"}


def test_the_writer_resolves_guarded_appends_to_their_withdrawn_ids_in_a_group_commit(tmp_path: Path) -> None:
    path = tmp_path / "decisions.db"
    other = DecisionLog(path)
    writer = LogWriter(DecisionLog(path))
    mark = other.watermark()
    other.append_decisions([record("theirs", "c1")])
    plain = writer.append_decisions([record("plain", "c9")])
    guarded = writer.append_guarded([record("mine", "c1"), record("ok", "c2")], {"mine": mark, "ok": mark})
    assert guarded.result(timeout=10) == {"mine"} and plain.result(timeout=10) == 1
    assert logged(path, "mine")[0] == "none" and logged(path, "ok")[0] == "email"
    writer.close()


@pytest.mark.parametrize("watermark", [None, 0])
def test_decisions_without_a_watermark_are_never_guarded(tmp_path: Path, watermark: int | None) -> None:
    path = tmp_path / "decisions.db"
    log, other = DecisionLog(path), DecisionLog(path)
    other.append_decisions([record("theirs", "c1")])
    marks = {} if watermark is None else {"mine": watermark}
    assert log.append_guarded([record("mine", "c1")], marks) == (frozenset() if watermark is None else {"mine"})
