"""Arbitration: choose, for one customer, the action with the highest expected incremental value.

score(channel, content) = uplift × value × objective weight(phase) − channel cost, where
uplift = P(goal | action) − P(goal | no contact) from the response model. "No contact" scores 0, so it wins
whenever nothing adds value. Actions are filtered first by phase eligibility, the content's own rules and the
contact policies; every exclusion is kept as a reason. A share of decisions explores (epsilon-greedy) and
each decision records the probability with which its action was chosen, for off-policy evaluation.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from journey.catalog import Action, Catalog
from journey.policies import ContactPolicies, ContactState
from journey.scoring import ModelSet, score_customers, uplifts
from journey.vocabulary import NO_CONTACT, PHASES, Objective

# Without a response model nothing tells which action adds value: assume this small uplift for every
# eligible action so the playbook (phase eligibility × value × weight − cost) still ranks them.
PRIOR_UPLIFT = 0.01


@dataclass(frozen=True)
class ActionScore:
    channel: str
    content: str
    objective: str
    p_response: float
    p_baseline: float
    uplift: float
    value: float
    objective_weight: float
    cost: float
    score: float

    @property
    def action(self) -> Action:
        return Action(self.channel, self.content)


NO_CONTACT_SCORE = ActionScore(NO_CONTACT, NO_CONTACT, "none", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Exclusion:
    channel: str
    content: str
    reason: str


@dataclass
class Decision:
    decision_id: str
    customer_id: str
    ts: pd.Timestamp
    phase: str
    phase_probabilities: dict[str, float]
    churn_risk: float | None
    purchase_propensity: float | None
    action: ActionScore
    alternatives: list[ActionScore]
    excluded: list[Exclusion]
    propensity: float
    explored: bool
    policy: str
    model_versions: dict[str, str]
    cold_start: bool
    reasons: list[str] = field(default_factory=list)


@dataclass
class DecisionEngine:
    """Pure decision logic: no I/O. Serving and batch scoring feed it features and contact state."""

    catalog: Catalog
    policies: ContactPolicies
    models: ModelSet
    exploration_rate: float = 0.0
    eligibility_mass: float = 0.5
    policy_name: str = "nba"
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    def decide(
        self,
        customer_id: str,
        features: pd.DataFrame,
        state: ContactState,
        now: pd.Timestamp,
        cold_start: bool = False,
        decision_id: str | None = None,
    ) -> Decision:
        """Decide for one customer; `features` is a one-row frame with feature and request-feature columns."""
        scores = score_customers(self.models, features)
        phase_proba = dict(zip(PHASES, scores.phase_proba[0].tolist(), strict=True))
        phase = str(scores.phase[0])
        churn, purchase = _finite(scores.churn_risk[0]), _finite(scores.purchase_propensity[0])
        rule_values = _rule_values(features, churn, purchase, phase_proba)

        candidates, excluded = self._candidates(phase, phase_proba, rule_values, state, now.hour)
        # "No contact" first: the sort is stable, so it wins every tie (contact only for a positive value).
        ranked = sorted(
            [NO_CONTACT_SCORE, *self._score(candidates, features, phase_proba)], key=lambda s: -s.score
        )
        chosen, propensity, explored = self._choose(ranked)
        return Decision(
            decision_id=decision_id or uuid.uuid4().hex,
            customer_id=customer_id,
            ts=now,
            phase=phase,
            phase_probabilities=phase_proba,
            churn_risk=churn,
            purchase_propensity=purchase,
            action=chosen,
            alternatives=[s for s in ranked if s is not chosen],
            excluded=excluded,
            propensity=propensity,
            explored=explored,
            policy=self.policy_name,
            model_versions=self.models.versions(),
            cold_start=cold_start,
            reasons=_explain(chosen, explored, excluded, self.models.response is None),
        )

    def _candidates(
        self,
        phase: str,
        phase_proba: Mapping[str, float],
        rule_values: Mapping[str, float | None],
        state: ContactState,
        hour: int,
    ) -> tuple[list[Action], list[Exclusion]]:
        allowed: list[Action] = []
        excluded: list[Exclusion] = []
        for action in self.catalog.actions:
            reason = self._ineligibility(action, phase, phase_proba, rule_values) or self.policies.violation(
                action, state, self.catalog, hour
            )
            if reason:
                excluded.append(Exclusion(action.channel, action.content, reason))
            else:
                allowed.append(action)
        return allowed, excluded

    def _ineligibility(
        self,
        action: Action,
        phase: str,
        phase_proba: Mapping[str, float],
        rule_values: Mapping[str, float | None],
    ) -> str | None:
        spec = self.catalog.contents[action.content]
        mass = sum(phase_proba.get(p, 0.0) for p in spec.phases)
        if phase not in spec.phases and mass < self.eligibility_mass:
            return f"not for phase {phase}: {action.content} serves {', '.join(spec.phases)} (p={mass:.2f})"
        for rule in spec.rules:
            if not rule.holds(rule_values):
                return f"eligibility rule failed: {rule}"
        return None

    def _score(
        self, actions: list[Action], features: pd.DataFrame, phase_proba: Mapping[str, float]
    ) -> list[ActionScore]:
        if not actions:
            return []
        model = self.models.response
        if model is None:
            treated = np.full(len(actions), PRIOR_UPLIFT)
            control = np.zeros(len(actions))
        else:
            treated, control = uplifts(model, model.matrix(features)[0], actions)
        scored = []
        for action, p_treated, p_control in zip(actions, treated, control, strict=True):
            if np.isnan(p_treated) or np.isnan(p_control):
                continue  # the response model has never seen this action: no evidence, no contact
            spec = self.catalog.contents[action.content]
            weight = sum(p * self.catalog.objective_weight(ph, spec.objective) for ph, p in phase_proba.items())
            cost = self.catalog.channels[action.channel].cost
            uplift = float(p_treated - p_control)
            scored.append(
                ActionScore(
                    channel=action.channel,
                    content=action.content,
                    objective=Objective(spec.objective).value,
                    p_response=float(p_treated),
                    p_baseline=float(p_control),
                    uplift=uplift,
                    value=spec.value,
                    objective_weight=weight,
                    cost=cost,
                    score=uplift * spec.value * weight - cost,
                )
            )
        return scored

    def _choose(self, ranked: list[ActionScore]) -> tuple[ActionScore, float, bool]:
        """Epsilon-greedy: best with prob 1-ε, else uniform over all candidates; returns the exact propensity."""
        n, epsilon = len(ranked), self.exploration_rate
        index = 0
        explored = False
        if epsilon > 0 and self.rng.random() < epsilon:
            index = int(self.rng.integers(n))
            explored = index != 0
        propensity = epsilon / n + (1 - epsilon) * (index == 0)
        return ranked[index], float(propensity), explored


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _rule_values(
    features: pd.DataFrame, churn: float | None, purchase: float | None, phase_proba: Mapping[str, float]
) -> dict[str, float | None]:
    """What content eligibility rules may test: any feature, the model scores, and p_<phase>."""
    row: dict[str, Any] = {str(k): v for k, v in features.iloc[0].items()} if len(features) else {}
    values: dict[str, float | None] = {k: v for k, v in row.items() if isinstance(v, int | float)}
    values.update({"churn_risk": churn, "purchase_propensity": purchase})
    values.update({f"p_{phase}": p for phase, p in phase_proba.items()})
    return values


def _explain(chosen: ActionScore, explored: bool, excluded: list[Exclusion], no_response_model: bool) -> list[str]:
    reasons = []
    if no_response_model:
        reasons.append("no response model: actions ranked by the playbook with a prior uplift")
    if explored:
        reasons.append("exploration: chosen at random to keep learning")
    if chosen.channel == NO_CONTACT:
        reasons.append("no contact: no allowed action adds value above its cost")
    else:
        reasons.append(
            f"{chosen.content} by {chosen.channel}: uplift {chosen.uplift:+.4f} × value {chosen.value:g} × "
            f"weight {chosen.objective_weight:.2f} − cost {chosen.cost:g} = {chosen.score:+.3f}"
        )
    blocked_by = {e.reason.split(":")[0] for e in excluded}
    if blocked_by:
        reasons.append("excluded actions by rule: " + ", ".join(sorted(blocked_by)))
    return reasons
