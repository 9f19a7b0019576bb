"""Everything a decision needs, built once at start-up and shared by the routes.

Per request the work is: one online feature read, request-time features, contact state (features plus the
decisions logged since they were computed), the pure decision engine, and one durable log append (group-committed
by the writer thread; the request is answered only once its batch is fsynced).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.build import DAY_US
from features.policy_state import contact_state
from features.request import _SINCE, REQUEST_FEATURE_NAMES, add_request_features
from journey.catalog import Catalog, load_catalog
from journey.decision import Decision, DecisionEngine
from journey.logbook import DecisionLog, DecisionRecord
from journey.policies import ContactPolicies, load_policies
from journey.scoring import ModelSet
from journey.settings import Settings
from serving.metrics import Metrics
from serving.online import FeatureRow, OnlineFeatures
from serving.writer import LogWriter

log = logging.getLogger(__name__)

Clock = Callable[[], pd.Timestamp]
POLICY_LOOKBACK = pd.Timedelta(days=7)
BATCH_CHUNK = 16


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


@dataclass(frozen=True)
class Decided:
    decision: Decision
    degraded: bool
    record: DecisionRecord


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

    @property
    def models(self) -> ModelSet:
        return self.engine.models

    def swap_models(self, models: ModelSet) -> None:
        """Atomic: a request reads `self.engine` once, so it decides with one consistent set of models."""
        self.engine = dataclasses.replace(self.engine, models=models)
        self.metrics.set_models(models)

    def prepare(self, customer_id: str, explain: bool = False) -> Decided:
        """Decide (no I/O but the feature read and the recent-contacts read); the caller must log `record`.

        `explain` adds the models' top feature contributions (two `pred_contrib` calls: off by default)."""
        engine = self.engine
        now = self.clock()
        row, degraded = self._read_features(customer_id)
        values = row.values if row else {}
        frame = request_frame(values, now)
        since = row.snapshot_ts if row and row.snapshot_ts is not None else now - POLICY_LOOKBACK
        recent = self.decision_log.recent_contacts(customer_id, since)
        state = contact_state(values, recent, now)
        decision = engine.decide(customer_id, frame, state, now, cold_start=row is None, explain=explain)
        return Decided(decision, degraded, _record(decision, row))

    async def decide(self, customer_id: str, explain: bool = False) -> tuple[Decision, bool]:
        """Decide and log durably; returns (decision, degraded). Raises only on a logging failure."""
        decided = self.prepare(customer_id, explain)
        await asyncio.wrap_future(self.writer.append_decisions([decided.record]))
        self._count(decided)
        return decided.decision, decided.degraded

    async def decide_many(self, customer_ids: Sequence[str]) -> list[tuple[Decision, bool]]:
        """Decide for several customers and log them in one durable append (all or none).

        Works in chunks and yields to the event loop between them, so a large batch never stalls the single
        decisions the same worker is serving."""
        batch: list[Decided] = []
        for start in range(0, len(customer_ids), BATCH_CHUNK):
            batch.extend(self.prepare(customer_id) for customer_id in customer_ids[start : start + BATCH_CHUNK])
            await asyncio.sleep(0)
        await asyncio.wrap_future(self.writer.append_decisions([d.record for d in batch]))
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

    def _read_features(self, customer_id: str) -> tuple[FeatureRow | None, bool]:
        try:
            return self.features.read(customer_id), False
        except Exception as exc:  # the store is down: answer with the safe default, flagged
            log.warning("online feature read failed; answering in degraded mode", extra={"error": type(exc).__name__})
            return None, True


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
