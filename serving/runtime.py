"""Everything a decision needs, built once at start-up and shared by the routes.

Per request the work is: one online feature read, request-time features, contact state (features plus the
decisions logged since they were computed), the pure decision engine, and one durable log append.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.policy_state import contact_state
from features.request import add_request_features
from journey.catalog import Catalog, load_catalog
from journey.decision import Decision, DecisionEngine
from journey.logbook import DecisionLog, DecisionRecord
from journey.policies import ContactPolicies, load_policies
from journey.scoring import ModelSet
from journey.settings import Settings
from serving.online import FeastOnlineFeatures, FeatureRow, OnlineFeatures

log = logging.getLogger(__name__)

Clock = Callable[[], pd.Timestamp]
POLICY_LOOKBACK = pd.Timedelta(days=7)


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


@dataclass
class Runtime:
    settings: Settings
    catalog: Catalog
    policies: ContactPolicies
    models: ModelSet
    features: OnlineFeatures
    decision_log: DecisionLog
    engine: DecisionEngine
    clock: Clock = utc_now

    def decide(self, customer_id: str) -> tuple[Decision, bool]:
        """Decide and log durably; returns (decision, degraded). Raises only on a logging failure."""
        now = self.clock()
        row, degraded = self._read_features(customer_id)
        frame = add_request_features(pd.DataFrame([row.values if row else {}], index=[0]), now)
        since = row.snapshot_ts if row and row.snapshot_ts is not None else now - POLICY_LOOKBACK
        recent = self.decision_log.recent_contacts(customer_id, since)
        state = contact_state(row.values if row else {}, recent, now)
        decision = self.engine.decide(customer_id, frame, state, now, cold_start=row is None)
        self.decision_log.append_decisions([_record(decision, row)])
        return decision, degraded

    def _read_features(self, customer_id: str) -> tuple[FeatureRow | None, bool]:
        try:
            return self.features.read(customer_id), False
        except Exception:  # the store is down: answer with the safe default, flagged
            log.exception("online feature read failed; answering in degraded mode")
            return None, True


def build_runtime(
    settings: Settings, features: OnlineFeatures | None = None, models: ModelSet | None = None
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
    return Runtime(
        settings=settings,
        catalog=catalog,
        policies=policies,
        models=models,
        features=features if features is not None else FeastOnlineFeatures(settings),
        decision_log=DecisionLog(settings.decision_log_path),
        engine=engine,
    )


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
