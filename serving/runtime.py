"""Everything a decision needs, built once at start-up and shared by the routes.

Decisions are made in micro-batches: the concurrent requests of one worker are gathered (with no added wait for a
request that is alone: the batcher only yields to the event loop while more requests keep arriving) and decided
together, since deciding 8 customers costs little more than deciding 1 (model predictions, pandas and SQLite have
a per-call cost). Per batch: one online feature read, request-time features as one block, one recent-contacts
query, vectorised contact states, one `decide_batch`, and one durable log append (group-committed by the writer
thread; each request is answered only once its batch is fsynced).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.build import DAY_US
from features.policy_state import contact_states
from features.request import _SINCE, REQUEST_FEATURE_NAMES, add_request_features
from journey.catalog import Catalog, load_catalog
from journey.decision import NO_CONTACT_SCORE, Decision, DecisionEngine
from journey.logbook import WITHDRAWN_POLICY_SUFFIX, WITHDRAWN_REASON, DecisionLog, DecisionRecord, withdrawn
from journey.policies import ContactPolicies, ContactStates, load_policies
from journey.scoring import ModelSet
from journey.settings import Settings
from journey.vocabulary import NO_CONTACT
from serving.metrics import Metrics
from serving.online import FeatureRow, OnlineFeatures
from serving.writer import LogWriter

log = logging.getLogger(__name__)

Clock = Callable[[], pd.Timestamp]
POLICY_LOOKBACK = pd.Timedelta(days=7)
BATCH_CHUNK = 64  # customers decided at once by the batch endpoint before yielding to the event loop
MICRO_BATCH = 32  # concurrent single decisions decided together, at most
GATHER_YIELDS = 4  # event-loop turns the batcher waits at most, and only while requests keep arriving


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


@dataclass(frozen=True)
class Decided:
    decision: Decision
    degraded: bool
    record: DecisionRecord
    watermark: int | None = None  # the decision log's position when the contact policies read it

    def withdraw(self) -> Decided:
        """No contact instead: another worker contacted the customer between this decision's read and its
        append (`DecisionLog.append_guarded` already logged it so). The withdrawn action leads the alternatives."""
        d = self.decision
        decision = dataclasses.replace(
            d,
            action=NO_CONTACT_SCORE,
            alternatives=[d.action, *d.alternatives],
            propensity=1.0,
            explored=False,
            policy=d.policy + WITHDRAWN_POLICY_SUFFIX,
            reasons=[*d.reasons, WITHDRAWN_REASON],
        )
        return dataclasses.replace(self, decision=decision, record=withdrawn(self.record))


@dataclass
class Runtime:
    settings: Settings
    catalog: Catalog
    policies: ContactPolicies
    features: OnlineFeatures
    decision_log: DecisionLog  # reads (recent contacts); writes go through `writer`
    writer: LogWriter
    engine: DecisionEngine
    metrics: Metrics = field(default_factory=Metrics)
    clock: Clock = utc_now
    batcher: MicroBatcher | None = field(default=None, init=False, repr=False)  # of the serving event loop
    # contacts decided but not yet durable in the log (so not yet visible to its reads): customer -> [(ts, channel)]
    in_flight: dict[str, list[tuple[pd.Timestamp, str]]] = field(default_factory=dict, init=False, repr=False)

    @property
    def models(self) -> ModelSet:
        return self.engine.models

    def swap_models(self, models: ModelSet) -> None:
        """Atomic: a request reads `self.engine` once, so it decides with one consistent set of models."""
        self.engine = dataclasses.replace(self.engine, models=models)
        self.metrics.set_models(models)

    def prepare(self, customer_id: str, explain: bool = False) -> Decided:
        """Decide for one customer (no I/O but the feature read and the recent-contacts read); the caller must log
        `record`. `explain` adds the models' top feature contributions (two `pred_contrib` calls: off by default)."""
        return self.prepare_many([customer_id], explain)[0]

    def prepare_many(self, customer_ids: Sequence[str], explain: bool = False) -> list[Decided]:
        """Decide for several customers at once, in order; the caller must log the records.

        The engine is read once, so a batch decides with one consistent set of models during a hot reload."""
        engine = self.engine
        now = self.clock()
        rows, degraded = self._read_features_many(customer_ids)
        frame = request_frames([row.values if row else None for row in rows], now)
        states, mark = self._contact_states(customer_ids, rows, frame, now)
        batch = engine.decide_batch(customer_ids, frame, states, now, top_k=None)
        decisions = engine.decisions(batch, now, cold_start=[row is None for row in rows], contact_states=states)
        if explain:
            for i, decision in enumerate(decisions):
                engine.add_explanation(decision, frame.iloc[[i]].reset_index(drop=True))
        return [
            Decided(decision, bad, _record(decision, row), mark)
            for decision, row, bad in zip(decisions, rows, degraded, strict=True)
        ]

    def append(self, decided: Sequence[Decided]) -> Future[frozenset[str]]:
        """Log `decided` durably, guarded against other workers' concurrent contacts (see `Decided.withdraw`)."""
        marks = {d.record.decision_id: d.watermark for d in decided if d.watermark is not None}
        return self.writer.append_guarded([d.record for d in decided], marks, self.policies.uncapped_channels)

    def settle(self, decided: Sequence[Decided], raced: frozenset[str]) -> list[Decided]:
        """The decisions as logged: those in `raced` withdrawn to no contact (and counted)."""
        out = []
        for one in decided:
            if one.record.decision_id in raced:
                one = one.withdraw()
                self.metrics.withdrawn.inc()
            out.append(one)
        return out

    async def decide(self, customer_id: str, explain: bool = False) -> tuple[Decision, bool]:
        """Decide and log durably; returns (decision, degraded). Raises only on a decision or logging failure.

        Concurrent calls of one event loop are decided in micro-batches (see `MicroBatcher`)."""
        if explain:  # contributions cost two model calls: decided alone
            decided = self.prepare(customer_id, explain=True)
            held = self.hold([decided])
            try:
                raced = await asyncio.wrap_future(self.append([decided]))
            finally:
                self.release(held)
            decided = self.settle([decided], raced)[0]
            self._count(decided)
        else:
            decided = await self._batcher_for_loop().submit(customer_id)
        return decided.decision, decided.degraded

    async def decide_many(self, customer_ids: Sequence[str]) -> list[tuple[Decision, bool]]:
        """Decide for several customers and log them in one durable append (all or none).

        Works in chunks and yields to the event loop between them, so a large batch never stalls the single
        decisions the same worker is serving."""
        batch: list[Decided] = []
        held: list[tuple[str, tuple[pd.Timestamp, str]]] = []
        try:
            for start in range(0, len(customer_ids), BATCH_CHUNK):
                chunk = self.prepare_many(customer_ids[start : start + BATCH_CHUNK])
                held += self.hold(chunk)
                batch.extend(chunk)
                await asyncio.sleep(0)
            raced = await asyncio.wrap_future(self.append(batch))
        finally:
            self.release(held)
        batch = self.settle(batch, raced)
        for decided in batch:
            self._count(decided)
        return [(d.decision, d.degraded) for d in batch]

    async def record_feedback(self, decision_id: str, outcome: str, ts: pd.Timestamp, value: float | None) -> int:
        """Durable feedback; raises UnknownDecisionError when the decision was never logged."""
        feedback_id = await asyncio.wrap_future(self.writer.append_feedback(decision_id, outcome, ts, value))
        self.metrics.feedback.labels(outcome).inc()
        return feedback_id

    def close(self) -> None:
        self.writer.close()
        self.decision_log.close()
        close_features = getattr(self.features, "close", None)
        if callable(close_features):
            close_features()

    def _count(self, decided: Decided) -> None:
        action = decided.decision.action
        self.metrics.decisions.labels(action.channel, action.content).inc()
        if decided.decision.cold_start and not decided.degraded:
            self.metrics.cold_starts.inc()
        if decided.degraded:
            self.metrics.degraded.inc()

    def _read_features_many(self, customer_ids: Sequence[str]) -> tuple[list[FeatureRow | None], list[bool]]:
        """Each customer's features (None = cold start) and whether its read failed (degraded: safe default)."""
        read_many = getattr(self.features, "read_many", None)
        if read_many is None:
            pairs = [self._read_features(customer_id) for customer_id in customer_ids]
            return [row for row, _ in pairs], [bad for _, bad in pairs]
        try:
            rows: list[FeatureRow | None] = read_many(customer_ids)
            return rows, [False] * len(customer_ids)
        except Exception as exc:  # the store is down: answer with the safe default, flagged
            _warn_degraded(exc)
            return [None] * len(customer_ids), [True] * len(customer_ids)

    def _read_features(self, customer_id: str) -> tuple[FeatureRow | None, bool]:
        try:
            return self.features.read(customer_id), False
        except Exception as exc:  # the store is down: answer with the safe default, flagged
            _warn_degraded(exc)
            return None, True

    def _contact_states(
        self, customer_ids: Sequence[str], rows: Sequence[FeatureRow | None], frame: pd.DataFrame, now: pd.Timestamp
    ) -> tuple[ContactStates, int]:
        """Policy state from the features plus the contacts logged since they were computed (one query), and the
        log's watermark of that read."""
        states = contact_states(frame, now)
        since: dict[str, pd.Timestamp] = {}
        for customer_id, row in zip(customer_ids, rows, strict=True):
            start = row.snapshot_ts if row is not None and row.snapshot_ts is not None else now - POLICY_LOOKBACK
            since[customer_id] = min(start, since.get(customer_id, start))
        logged, mark = self.decision_log.recent_contact_counts_at(since, now)
        counts = logged + self._in_flight_counts(customer_ids, now)
        return add_recent_contacts(states, customer_ids, counts, now), mark

    def _in_flight_counts(
        self, customer_ids: Sequence[str], now: pd.Timestamp
    ) -> list[tuple[str, str, int, int, pd.Timestamp]]:
        """The contacts of this worker's decisions still on their way to the log, in `recent_contact_counts` rows:
        without them, two requests for one customer a few milliseconds apart could both pass a frequency cap."""
        out = []
        for customer_id in dict.fromkeys(customer_ids):
            by_channel: dict[str, list[pd.Timestamp]] = {}
            for ts, channel in self.in_flight.get(customer_id, ()):
                by_channel.setdefault(channel, []).append(ts)
            for channel, times in by_channel.items():
                day = sum(ts > now - pd.Timedelta(days=1) for ts in times)
                week = sum(ts > now - pd.Timedelta(days=7) for ts in times)
                out.append((customer_id, channel, day, week, max(times)))
        return out

    def hold(self, decided: Sequence[Decided]) -> list[tuple[str, tuple[pd.Timestamp, str]]]:
        """Mark the contacts of `decided` as in flight until `release` (call both on the event loop's thread)."""
        held = []
        for one in decided:
            record = one.record
            if record.channel != NO_CONTACT:
                entry = (record.ts, record.channel)
                self.in_flight.setdefault(record.customer_id, []).append(entry)
                held.append((record.customer_id, entry))
        return held

    def release(self, held: Sequence[tuple[str, tuple[pd.Timestamp, str]]]) -> None:
        """The append is over (durable, so the log's reads see it; or failed, so it never happened)."""
        for customer_id, entry in held:
            entries = self.in_flight.get(customer_id, [])
            if entry in entries:
                entries.remove(entry)
            if not entries:
                self.in_flight.pop(customer_id, None)

    def _batcher_for_loop(self) -> MicroBatcher:
        """The batcher of the running event loop (a test calling from another loop gets a batcher of its own)."""
        loop = asyncio.get_running_loop()
        if self.batcher is None or self.batcher.loop is not loop:
            self.batcher = MicroBatcher(self, loop)
        return self.batcher


class MicroBatcher:
    """Gathers the concurrent single decisions of one event loop and decides them together.

    A request enqueues itself and, if no batch is being gathered, starts the batcher task. The batcher yields to the
    event loop once, then again only while that brought more requests (at most GATHER_YIELDS turns), so a request
    that is alone waits for nothing; under load, requests that arrived while the previous batch was computed join
    the next one. A batch is decided with `Runtime.prepare_many`, logged with one append, and each request is
    answered once that append is fsynced; the next batch is computed while the disk works.
    """

    def __init__(self, runtime: Runtime, loop: asyncio.AbstractEventLoop, max_batch: int = MICRO_BATCH) -> None:
        self.runtime = runtime
        self.loop = loop
        self.max_batch = max_batch
        self._pending: list[tuple[str, asyncio.Future[Decided]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batch_sizes: dict[int, int] = {}  # how many batches of each size (for tests and profiling)

    async def submit(self, customer_id: str) -> Decided:
        """The customer's decision, once it is durably logged."""
        answer: asyncio.Future[Decided] = self.loop.create_future()
        self._pending.append((customer_id, answer))
        if self._task is None:
            self._task = self.loop.create_task(self._drain())
        return await answer

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._gather()
                batch, self._pending = _one_per_customer(self._pending, self.max_batch)
                try:
                    self._decide(batch)
                except Exception as exc:  # a bug here must fail its requests, never leave them waiting
                    log.exception("decision batcher: unexpected failure")
                    for _, answer in batch:
                        _fail(answer, exc)
        except asyncio.CancelledError:  # the loop is shutting down: nobody will decide what is still queued
            for _, answer in self._pending:
                _fail(answer, RuntimeError("the decision batcher stopped"))
            raise
        finally:
            self._task = None

    async def _gather(self) -> None:
        seen = 0
        for _ in range(GATHER_YIELDS):
            seen = len(self._pending)
            await asyncio.sleep(0)
            if len(self._pending) == seen or len(self._pending) >= self.max_batch:
                return

    def _decide(self, batch: list[tuple[str, asyncio.Future[Decided]]]) -> None:
        if not batch:
            return
        self.batch_sizes[len(batch)] = self.batch_sizes.get(len(batch), 0) + 1
        try:
            decided = self.runtime.prepare_many([customer_id for customer_id, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            log.warning("a micro-batch of %d decisions failed; deciding them one by one", len(batch), exc_info=True)
            for one in batch:
                self._decide([one])
            return
        held = self.runtime.hold(decided)
        try:
            written = self.runtime.append(decided)
        except BaseException:
            self.runtime.release(held)
            raise
        answers = [answer for _, answer in batch]

        def settle(done: asyncio.Future[frozenset[str]]) -> None:
            self.runtime.release(held)
            self._answer(answers, decided, done)

        asyncio.wrap_future(written, loop=self.loop).add_done_callback(settle)

    def _answer(
        self, answers: list[asyncio.Future[Decided]], decided: list[Decided], written: asyncio.Future[frozenset[str]]
    ) -> None:
        """Acknowledge each request of a batch once the batch is durable (as logged: withdrawn decisions answer no
        contact); fail them all if it is not."""
        error = written.exception() if not written.cancelled() else asyncio.CancelledError()
        if error is None:
            decided = self.runtime.settle(decided, written.result())
        for answer, one in zip(answers, decided, strict=True):
            if error is None:
                self.runtime._count(one)  # logged: counted even when its client has gone
            if answer.done():  # the client went away: the decision is logged but was never acknowledged
                continue
            if error is None:
                answer.set_result(one)
            else:
                _fail(answer, error)


def _one_per_customer(
    pending: list[tuple[str, asyncio.Future[Decided]]], limit: int
) -> tuple[list[tuple[str, asyncio.Future[Decided]]], list[tuple[str, asyncio.Future[Decided]]]]:
    """(batch, rest): up to `limit` live requests, at most one per customer, in arrival order. A customer's second
    request waits for the next batch, which sees the first one's contact (in flight or logged) in its caps."""
    batch: list[tuple[str, asyncio.Future[Decided]]] = []
    rest: list[tuple[str, asyncio.Future[Decided]]] = []
    taken: set[str] = set()
    for customer_id, answer in pending:
        if answer.done():  # cancelled by its client before it was decided: never decided, never logged
            continue
        if len(batch) < limit and customer_id not in taken:
            batch.append((customer_id, answer))
            taken.add(customer_id)
        else:
            rest.append((customer_id, answer))
    return batch, rest


def _fail(answer: asyncio.Future[Decided], error: BaseException) -> None:
    if not answer.done():
        answer.set_exception(error)


def _warn_degraded(exc: Exception) -> None:
    log.warning("online feature read failed; answering in degraded mode", extra={"error": type(exc).__name__})


def open_online_features(settings: Settings) -> OnlineFeatures:
    """The packed single-query reader when available, else Feast's SDK (prepared once either way)."""
    import serving.online as online

    factory = getattr(online, "online_reader", None)
    if factory is not None:
        reader: OnlineFeatures = factory(settings)
        return reader
    return online.FeastOnlineFeatures(settings)


def build_runtime(
    settings: Settings,
    features: OnlineFeatures | None = None,
    models: ModelSet | None = None,
    metrics: Metrics | None = None,
) -> Runtime:
    """Load catalog, policies, champion models and the online store; the slow imports happen here."""
    from serving.models import load_models

    catalog = load_catalog(settings.catalog_path)
    policies = load_policies(settings.policies_path)
    models = models if models is not None else load_models(settings)
    engine = DecisionEngine(
        catalog=catalog,
        policies=policies,
        models=models,
        exploration_rate=settings.exploration_rate,
        rng=np.random.default_rng(),
    )
    metrics = metrics or Metrics()
    metrics.set_models(models)
    return Runtime(
        settings=settings,
        catalog=catalog,
        policies=policies,
        features=features if features is not None else open_online_features(settings),
        decision_log=DecisionLog(settings.decision_log_path),
        writer=LogWriter(DecisionLog(settings.decision_log_path)),
        engine=engine,
        metrics=metrics,
    )


def request_frame(values: dict[str, float], now: pd.Timestamp) -> pd.DataFrame:
    """One customer's features plus the request-time features, as a one-row float frame in one block.

    Same values as `features.request.add_request_features` (a unit test holds them equal) computed on scalars:
    the DataFrame version costs ~1 ms of pandas overhead per call, most of a decision's budget. Falls back to it
    if a request feature appears that this path does not know.
    """
    known = {*_SINCE, "hour_of_day", "day_of_week"}
    if not set(REQUEST_FEATURE_NAMES) <= known:
        return add_request_features(_one_row(values), now)
    ts = now.tz_convert("UTC") if now.tzinfo is not None else now.tz_localize("UTC")
    epoch_days = ts.value // 1000 / DAY_US
    extra = {name: epoch_days - values.get(column, np.nan) for name, column in _SINCE.items()}
    extra.update(hour_of_day=float(ts.hour), day_of_week=float(ts.dayofweek))
    row = {**values, **{name: extra[name] for name in REQUEST_FEATURE_NAMES}}
    return _one_row(row)


def request_frames(rows: Sequence[Mapping[str, float] | None], now: pd.Timestamp) -> pd.DataFrame:
    """`request_frame` for several customers at once, as one float block (None = unknown customer: NaN features).

    Columns: the rows' features in first-seen order, then the request-time features they lack (one they hold is
    overwritten in place, like `request_frame` does); same values as `features.request.add_request_features`,
    which it falls back to for a request feature this fast path does not know."""
    columns, matrix = _feature_block(rows)
    if not set(REQUEST_FEATURE_NAMES) <= {*_SINCE, "hour_of_day", "day_of_week"}:
        return add_request_features(pd.DataFrame(matrix, columns=columns), now)
    position = {name: j for j, name in enumerate(columns)}
    ts = now.tz_convert("UTC") if now.tzinfo is not None else now.tz_localize("UTC")
    epoch_days = ts.value // 1000 / DAY_US
    extra: dict[str, np.ndarray | float] = {"hour_of_day": float(ts.hour), "day_of_week": float(ts.dayofweek)}
    for name, source in _SINCE.items():
        extra[name] = epoch_days - matrix[:, position[source]] if source in position else np.nan
    added = [name for name in REQUEST_FEATURE_NAMES if name not in position]
    block = np.empty((len(rows), len(columns) + len(added)))
    block[:, : len(columns)] = matrix
    for name in REQUEST_FEATURE_NAMES:
        block[:, position[name] if name in position else len(columns) + added.index(name)] = extra[name]
    return pd.DataFrame(block, columns=[*columns, *added], copy=False)


def _feature_block(rows: Sequence[Mapping[str, float] | None]) -> tuple[list[str], np.ndarray]:
    """(column names, rows × columns float matrix); one conversion when every known row has the same layout."""
    layouts = list(dict.fromkeys(tuple(row) for row in rows if row is not None))
    columns = list(dict.fromkeys(name for layout in layouts for name in layout))
    matrix = np.full((len(rows), len(columns)), np.nan)
    if len(layouts) == 1:
        known = [i for i, row in enumerate(rows) if row is not None]
        matrix[known] = np.array([list(row.values()) for row in rows if row is not None], dtype=np.float64)
        return columns, matrix
    position = {name: j for j, name in enumerate(columns)}
    for i, row in enumerate(rows):
        for name, value in (row or {}).items():
            matrix[i, position[name]] = value
    return columns, matrix


def add_recent_contacts(
    states: ContactStates,
    customer_ids: Sequence[str],
    counts: Sequence[tuple[str, str, int, int, pd.Timestamp]],
    now: pd.Timestamp,
) -> ContactStates:
    """The snapshot's states plus the contacts logged since (`DecisionLog.recent_contact_counts`), in place.

    Same arithmetic as `features.policy_state.contact_state` with its recent contacts: +1 a day / a week for each
    contact younger than that, and hours since the last contact from the latest one when it is more recent."""
    if not counts:
        return states
    rows_of: dict[str, list[int]] = {}
    for i, customer_id in enumerate(customer_ids):
        rows_of.setdefault(customer_id, []).append(i)
    for customer_id, channel, day, week, latest in counts:
        for i in rows_of.get(customer_id, ()):
            for group, n in ((states.sent_day, day), (states.sent_week, week)):
                if channel not in group:
                    group[channel] = np.zeros(states.n, dtype=np.int64)
                group[channel][i] += n
            hours = max((now - latest).total_seconds() / 3600, 0.0)
            current = states.hours_since_last_contact[i]
            if np.isnan(current) or hours < current:
                states.hours_since_last_contact[i] = hours
    return states


def _one_row(values: dict[str, float]) -> pd.DataFrame:
    """A one-row float frame in one block (a dict of scalars would build one Series per feature: ~10× slower)."""
    return pd.DataFrame(np.array([list(values.values())], dtype=np.float64), columns=list(values), index=[0])


def _record(decision: Decision, row: FeatureRow | None) -> DecisionRecord:
    chosen = decision.action
    return DecisionRecord(
        decision_id=decision.decision_id,
        customer_id=decision.customer_id,
        ts=decision.ts,
        channel=chosen.channel,
        content=chosen.content,
        objective=chosen.objective,
        propensity=decision.propensity,
        policy=decision.policy,
        explored=decision.explored,
        phase=decision.phase,
        cold_start=decision.cold_start,
        scores={
            "score": chosen.score,
            "uplift": chosen.uplift,
            "churn_risk": decision.churn_risk if decision.churn_risk is not None else float("nan"),
            "purchase_propensity": (
                decision.purchase_propensity if decision.purchase_propensity is not None else float("nan")
            ),
            **{f"p_{phase}": p for phase, p in decision.phase_probabilities.items()},
        },
        model_versions=decision.model_versions,
        features=row.values if row else {},
    )
