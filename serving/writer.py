"""Group commit for the decision log: one writer thread, one fsync per batch of appends.

Each request hands its records to the writer and waits for *its* batch to be durable before answering, so an
acknowledged decision survives `kill -9`, while under load many decisions share one transaction (and one fsync)
instead of queueing one fsync each. The event loop is never blocked by the disk.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from journey.logbook import DecisionLog, DecisionRecord

log = logging.getLogger(__name__)

MAX_BATCH = 512


@dataclass
class _Decisions:
    """Decisions to append; with `watermarks`, guarded (`DecisionLog.append_guarded`) and resolved to the ids of
    the withdrawn ones, else resolved to the count."""

    records: Sequence[DecisionRecord]
    watermarks: Mapping[str, int] | None = None
    exempt: frozenset[str] = frozenset()
    done: Future[Any] = field(default_factory=Future)

    def result(self, withdrawn: frozenset[str]) -> int | frozenset[str]:
        if self.watermarks is None:
            return len(self.records)
        return frozenset(r.decision_id for r in self.records if r.decision_id in withdrawn)


@dataclass
class _Call:
    """Any other write (feedback): run alone, in order, on the writer thread."""

    call: Callable[[DecisionLog], int]
    done: Future[Any] = field(default_factory=Future)


_STOP = object()


class LogWriter:
    """The only writer of one process to the decision log; thread-safe submit, durable-on-resolve futures."""

    def __init__(self, decision_log: DecisionLog, max_batch: int = MAX_BATCH) -> None:
        self._log = decision_log
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="parcours-log-writer", daemon=True)
        self._closed = False
        self._thread.start()

    def append_decisions(self, records: Sequence[DecisionRecord]) -> Future[int]:
        """Resolves (to the count) once the records are committed and fsynced; fails if they were not."""
        return self._submit(_Decisions(records))

    def append_guarded(
        self, records: Sequence[DecisionRecord], watermarks: Mapping[str, int], exempt: Collection[str] = ()
    ) -> Future[frozenset[str]]:
        """Like `append_decisions`, but contact decisions that raced another worker's contact for the same
        customer are logged as withdrawn (no contact; never on `exempt` channels); resolves to their ids once
        everything is durable (`DecisionLog.append_guarded`)."""
        return self._submit(_Decisions(records, dict(watermarks), frozenset(exempt)))

    def append_feedback(self, decision_id: str, outcome: str, ts: pd.Timestamp, value: float | None) -> Future[int]:
        """Resolves to the feedback id once durable; fails with UnknownDecisionError for an unknown decision."""
        return self._submit(_Call(lambda db: db.append_feedback(decision_id, outcome, ts, value)))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed

    def close(self, timeout: float = 30.0) -> None:
        """Write what was submitted, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._log.close()

    def _submit(self, op: _Decisions | _Call) -> Future[Any]:
        if self._closed:
            op.done.set_exception(RuntimeError("the decision log writer is closed"))
        else:
            self._queue.put(op)
        return op.done

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(op is _STOP for op in batch)
            # A request cancelled before its write starts is dropped (it was never acknowledged); once running, a
            # future cannot be cancelled any more, so settling it below never raises.
            live = [op for op in batch if isinstance(op, _Decisions | _Call) and op.done.set_running_or_notify_cancel()]
            try:
                self._write(live)
            except BaseException as exc:  # the writer must outlive anything: fail what is pending, keep going
                log.exception("decision log writer: unexpected failure")
                for op in live:
                    if not op.done.done():
                        op.done.set_exception(exc)

    def _write(self, ops: list[_Decisions | _Call]) -> None:
        pending: list[_Decisions] = []
        for op in ops:
            if isinstance(op, _Decisions):
                pending.append(op)
                continue
            self._commit_decisions(pending)  # keep submission order: feedback may name a decision just queued
            pending = []
            _settle(op.done, functools.partial(op.call, self._log))
        self._commit_decisions(pending)

    def _commit_decisions(self, ops: list[_Decisions]) -> None:
        if not ops:
            return
        if len(ops) == 1:
            _settle(ops[0].done, functools.partial(self._append, ops[0]))
            return
        try:
            withdrawn = self._append_all(ops)
        except Exception:  # one bad record must not fail its neighbours: retry each on its own
            log.warning("group commit of %d appends failed; retrying them one by one", len(ops), exc_info=True)
            for op in ops:
                _settle(op.done, functools.partial(self._append, op))
            return
        for op in ops:
            op.done.set_result(op.result(withdrawn))

    def _append(self, op: _Decisions) -> int | frozenset[str]:
        if op.watermarks is None:
            return self._log.append_decisions(op.records)
        return op.result(self._log.append_guarded(op.records, op.watermarks, op.exempt))

    def _append_all(self, ops: list[_Decisions]) -> frozenset[str]:
        """One transaction for every op; guarded when any op is (unguarded records have no watermark)."""
        records = [r for op in ops for r in op.records]
        if all(op.watermarks is None for op in ops):
            self._log.append_decisions(records)
            return frozenset()
        marks = {k: v for op in ops for k, v in (op.watermarks or {}).items()}
        return self._log.append_guarded(records, marks, frozenset().union(*(op.exempt for op in ops)))


def _settle(done: Future[Any], write: Callable[[], Any]) -> None:
    try:
        result = write()
    except Exception as exc:  # handed to the waiting request, which answers an error (never acknowledges)
        done.set_exception(exc)
        return
    done.set_result(result)
