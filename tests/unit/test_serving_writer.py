"""Group commit: acknowledged means durable, batches share a transaction, one bad record fails alone."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import wait
from pathlib import Path

import pandas as pd
import pytest

from journey.logbook import DecisionLog, DecisionRecord, UnknownDecisionError
from serving.writer import LogWriter

NOW = pd.Timestamp("2026-01-05 10:00", tz="UTC")


def record(decision_id: str, customer: str = "c1") -> DecisionRecord:
    return DecisionRecord(
        decision_id=decision_id,
        customer_id=customer,
        ts=NOW,
        channel="email",
        content="welcome",
        objective="connection",
        propensity=0.9,
        policy="nba",
        explored=False,
        phase="discovery",
        cold_start=False,
        scores={"score": 1.0},
        model_versions={"phase": "p/1"},
        features={"f": 1.0},
    )


def test_every_resolved_append_is_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "decisions.db"
    writer = LogWriter(DecisionLog(path))
    futures = []

    def submit(k: int) -> None:
        for i in range(50):
            futures.append(writer.append_decisions([record(f"d{k}-{i}")]))

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done, _ = wait(futures, timeout=30)
    assert len(done) == 400 and all(f.result() == 1 for f in futures)
    with sqlite3.connect(path) as db:  # a fresh connection sees everything acknowledged
        assert db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 400
    writer.close()


def test_a_duplicate_fails_alone_and_its_neighbours_are_written(tmp_path: Path) -> None:
    path = tmp_path / "decisions.db"
    writer = LogWriter(DecisionLog(path))
    writer.append_decisions([record("dup")]).result(timeout=10)
    blocker = threading.Event()
    # queue several appends while the writer is busy, so they are committed as one group
    slow = writer._log.append_decisions

    def hold(records: object) -> int:
        blocker.wait(5)
        return slow(records)  # type: ignore[arg-type]

    writer._log.append_decisions = hold  # type: ignore[method-assign]
    first = writer.append_decisions([record("a")])
    good = writer.append_decisions([record("b")])
    bad = writer.append_decisions([record("dup")])
    also_good = writer.append_decisions([record("c")])
    blocker.set()
    assert first.result(timeout=10) == 1 and good.result(timeout=10) == 1 and also_good.result(timeout=10) == 1
    with pytest.raises(sqlite3.IntegrityError):
        bad.result(timeout=10)
    writer.close()
    with sqlite3.connect(path) as db:
        assert {r[0] for r in db.execute("SELECT decision_id FROM decisions")} == {"dup", "a", "b", "c"}


def test_feedback_follows_its_decision_and_unknown_ids_fail(tmp_path: Path) -> None:
    writer = LogWriter(DecisionLog(tmp_path / "decisions.db"))
    decided = writer.append_decisions([record("d1")])
    feedback = writer.append_feedback("d1", "clicked", NOW, None)  # queued right behind its decision
    assert decided.result(timeout=10) == 1 and feedback.result(timeout=10) >= 1
    with pytest.raises(UnknownDecisionError):
        writer.append_feedback("never", "clicked", NOW, None).result(timeout=10)
    assert writer.alive
    writer.close()
    assert not writer.alive
    with pytest.raises(RuntimeError, match="closed"):
        writer.append_decisions([record("late")]).result(timeout=1)


def test_a_cancelled_request_does_not_kill_the_writer(tmp_path: Path) -> None:
    writer = LogWriter(DecisionLog(tmp_path / "decisions.db"))
    blocker = threading.Event()
    slow = writer._log.append_decisions
    writer._log.append_decisions = lambda records: (blocker.wait(5), slow(records))[1]  # type: ignore[method-assign]
    busy = writer.append_decisions([record("x")])
    cancelled = writer.append_decisions([record("y")])
    assert cancelled.cancel()
    blocker.set()
    assert busy.result(timeout=10) == 1
    assert writer.append_decisions([record("z")]).result(timeout=10) == 1
    writer.close()
