"""Arbitration: choose, for each customer, the action with the highest expected incremental value.

score(channel, content) = uplift × value × objective weight(phase) − channel cost, where
uplift = P(goal | action) − P(goal | no contact) from the response model. "No contact" scores 0, so it wins
whenever nothing adds value. Actions are filtered first by phase eligibility, the content's own rules and the
contact policies; every exclusion is kept as a reason. A share of decisions explores (epsilon-greedy) and
each decision records the probability with which its action was chosen, for off-policy evaluation.

One engine serves both paths: `decide_batch` works on (customers × actions) matrices — eligibility, policies,
scores — with one response-model predict over the pairs that survived; `decide` is `decide_batch` for one
customer, rendered with readable reasons and the top feature contributions of the models behind it.
Column 0 of every (customers × actions) matrix is "no contact"; column j ≥ 1 is `catalog.actions[j - 1]`.
See docs/decisioning.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from journey.catalog import NO_ACTION, Action, Catalog
from journey.policies import RULE_NAMES, ContactPolicies, ContactState, ContactStates
from journey.scoring import (
    ACTION_CHANNEL,
    ACTION_CONTENT,
    CustomerScores,
    InputPlan,
    LoadedModel,
    ModelSet,
    effect_per_response,
    pair_uplifts,
    score_customers,
)
from journey.vocabulary import NO_CONTACT, PHASES, Objective

# Without a response model nothing tells which action adds value: assume this small uplift for every
# eligible action so the playbook (phase eligibility × value × weight − cost) still ranks them.
PRIOR_UPLIFT = 0.01
TOP_CONTRIBUTIONS = 5

# Exclusion codes beyond the contact-policy codes of journey.policies (1..6); 0 = candidate.
NOT_FOR_PHASE, RULE_FAILED, NO_EVIDENCE, OVER_CAPACITY = 7, 8, 9, 10
EXCLUSION_NAMES: dict[int, str] = {
    **RULE_NAMES,
    NOT_FOR_PHASE: "not for phase",
    RULE_FAILED: "eligibility rule failed",
    NO_EVIDENCE: "no evidence",
    OVER_CAPACITY: "channel capacity",
}


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


@dataclass(frozen=True)
class FeatureContribution:
    """One feature's signed contribution to a model's raw score (log-odds; per class for the phase model)."""

    feature: str
    value: float | None
    contribution: float


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
    # "phase" (the predicted phase's class), "response" (P(goal | chosen action)) and "uplift" (treated minus
    # control row): the top features by |contribution|, online only.
    contributions: dict[str, list[FeatureContribution]] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionSpace:
    """The catalog as arrays over the decision columns (0 = no contact, j = catalog.actions[j - 1])."""

    actions: tuple[Action, ...]
    channels: tuple[str, ...]  # catalog channels, then "none"
    channel_index: np.ndarray  # (1+A,) index into `channels`
    content_index: np.ndarray  # (1+A,) index into catalog contents (-1 for no contact)
    value: np.ndarray  # (1+A,)
    cost: np.ndarray  # (1+A,)
    objectives: tuple[str, ...]  # (1+A,)
    phase_member: np.ndarray  # (K, P) bool: content k serves phase p
    weights: np.ndarray  # (P, 1+A): objective weight of each column's objective in each phase (0 for none)

    @classmethod
    def of(cls, catalog: Catalog) -> ActionSpace:
        actions = (NO_ACTION, *catalog.actions)
        channels = catalog.channel_names
        contents = list(catalog.contents)
        specs = [None, *(catalog.contents[a.content] for a in catalog.actions)]
        weights = np.zeros((len(PHASES), len(actions)))
        for j, spec in enumerate(specs):
            if spec is not None:
                weights[:, j] = [catalog.objective_weight(p, spec.objective) for p in PHASES]
        return cls(
            actions=actions,
            channels=channels,
            channel_index=np.array([channels.index(a.channel) for a in actions]),
            content_index=np.array(
                [contents.index(a.content) if spec else -1 for a, spec in zip(actions, specs, strict=True)]
            ),
            value=np.array([spec.value if spec else 0.0 for spec in specs]),
            cost=np.array(
                [catalog.channels[a.channel].cost if spec else 0.0 for a, spec in zip(actions, specs, strict=True)]
            ),
            objectives=tuple(Objective(spec.objective).value if spec else "none" for spec in specs),
            phase_member=np.array([[p in catalog.contents[k].phases for p in PHASES] for k in contents]),
            weights=weights,
        )

    @property
    def width(self) -> int:
        return len(self.actions)


@dataclass
class BatchScores:
    """Everything `decide_batch` computed before choosing, as (customers × decision columns) arrays.

    `code` is 0 for a candidate, else why the column was excluded (policy codes 1..6, NOT_FOR_PHASE, RULE_FAILED,
    NO_EVIDENCE, OVER_CAPACITY); `score` is -inf where excluded. Column 0 (no contact) is always a candidate.
    """

    customer_ids: np.ndarray
    customer: CustomerScores
    code: np.ndarray
    failed_rule: np.ndarray  # (n, K) int8: index of the first failing rule of content k, -1 if none failed
    p_treated: np.ndarray
    p_control: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.customer_ids)

    @property
    def candidates(self) -> np.ndarray:
        return self.code == 0

    @classmethod
    def concat(cls, parts: Sequence[BatchScores]) -> BatchScores:
        """Batches of the base glued back together (capacities are allocated over the whole base)."""
        out = cls.allocate(sum(len(p) for p in parts), parts[0])
        lo = 0
        for part in parts:
            out.assign(lo, part)
            lo += len(part)
        return out

    @classmethod
    def allocate(cls, n: int, like: BatchScores) -> BatchScores:
        """Room for n customers shaped like `like`, to be filled batch by batch with `assign` (no copy of the
        whole base at the end, so peak memory stays one base plus one batch)."""

        def empty(a: np.ndarray) -> np.ndarray:
            return np.empty((n, *a.shape[1:]), dtype=a.dtype)

        return cls(
            customer_ids=empty(like.customer_ids),
            customer=CustomerScores(
                phase_proba=empty(like.customer.phase_proba),
                churn_risk=empty(like.customer.churn_risk),
                purchase_propensity=empty(like.customer.purchase_propensity),
            ),
            code=empty(like.code),
            failed_rule=empty(like.failed_rule),
            p_treated=empty(like.p_treated),
            p_control=empty(like.p_control),
            score=empty(like.score),
        )

    def assign(self, lo: int, part: BatchScores) -> None:
        """Copy `part` into rows lo .. lo + len(part)."""
        rows = slice(lo, lo + len(part))
        self.customer_ids[rows] = part.customer_ids
        self.customer.phase_proba[rows] = part.customer.phase_proba
        self.customer.churn_risk[rows] = part.customer.churn_risk
        self.customer.purchase_propensity[rows] = part.customer.purchase_propensity
        for name in ("code", "failed_rule", "p_treated", "p_control", "score"):
            getattr(self, name)[rows] = getattr(part, name)


@dataclass
class BatchDecisions:
    """The decisions for n customers, as columns. `column` indexes `space.actions` (0 = no contact);
    `alternatives` holds the next best candidate columns in rank order (-1 = none left)."""

    scores: BatchScores
    space: ActionSpace
    column: np.ndarray
    propensity: np.ndarray
    explored: np.ndarray
    n_candidates: np.ndarray
    alternatives: np.ndarray
    objective_weight: np.ndarray

    def __len__(self) -> int:
        return len(self.column)

    def _pick(self, matrix: np.ndarray) -> np.ndarray:
        return matrix[np.arange(len(self.column)), self.column]

    @property
    def channel(self) -> np.ndarray:
        return np.asarray(self.space.channels, dtype=object)[self.space.channel_index[self.column]]

    @property
    def content(self) -> np.ndarray:
        names = np.asarray([a.content for a in self.space.actions], dtype=object)
        return names[self.column]

    @property
    def score(self) -> np.ndarray:
        return self._pick(self.scores.score)

    @property
    def p_response(self) -> np.ndarray:
        return self._pick(self.scores.p_treated)

    @property
    def p_baseline(self) -> np.ndarray:
        return self._pick(self.scores.p_control)

    @property
    def uplift(self) -> np.ndarray:
        return self.p_response - self.p_baseline

    def to_frame(self, top_k: int = 0) -> pd.DataFrame:
        """One row per customer: phase, scores, the chosen action and (optionally) the next `top_k` actions."""
        customer = self.scores.customer
        frame = pd.DataFrame(
            {
                "customer_id": self.scores.customer_ids,
                "phase": customer.phase,
                "churn_risk": customer.churn_risk,
                "purchase_propensity": customer.purchase_propensity,
                **{f"p_{p}": customer.phase_proba[:, i] for i, p in enumerate(PHASES)},
                "channel": self.channel,
                "content": self.content,
                "objective": np.asarray(self.space.objectives, dtype=object)[self.column],
                "score": self.score,
                "uplift": self.uplift,
                "p_response": self.p_response,
                "p_baseline": self.p_baseline,
                "objective_weight": self.objective_weight,
                "propensity": self.propensity,
                "explored": self.explored,
                "n_candidates": self.n_candidates,
            }
        )
        keys = np.asarray([a.key for a in self.space.actions] + [None], dtype=object)  # -1 → None
        for rank in range(min(top_k, self.alternatives.shape[1])):
            columns = self.alternatives[:, rank]
            frame[f"alt{rank + 1}_action"] = keys[columns]
            frame[f"alt{rank + 1}_score"] = np.where(
                columns >= 0, self.scores.score[np.arange(len(columns)), np.maximum(columns, 0)], np.nan
            )
        return frame


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
    # Threads for the models' predictions (LightGBM `num_threads`, 0 = every core); None = the predictor's own
    # choice (serving keeps small predictions on one thread). Batch scoring sets it: the base is one big predict.
    predict_threads: int | None = None

    @cached_property
    def space(self) -> ActionSpace:
        return ActionSpace.of(self.catalog)

    @property
    def _predict_kwargs(self) -> dict[str, Any]:
        return {} if self.predict_threads is None else {"num_threads": self.predict_threads}

    def _contact_cost(self) -> np.ndarray:
        """(1+A,) what a contact costs: the channel's cost, the catalog's `pressure_cost`, and the expected consent
        lost, P(opt-out | channel) (learned from the logs, in the response model's metadata) × `consent_value`.
        Cached per model set, like the input plan: it is read for every batch and every reported action."""
        cached = self.__dict__.get("_cost")
        if cached is None or cached[0] is not self.models:
            cached = (self.models, self._price_contacts())
            self.__dict__["_cost"] = cached
        return cached[1]

    def _price_contacts(self) -> np.ndarray:
        space, model, catalog = self.space, self.models.response, self.catalog
        cost = space.cost.copy()
        cost[1:] += catalog.pressure_cost
        rates = (model.metadata.get("opt_out_rate") or {}) if model is not None else {}
        if rates and catalog.consent_value > 0:
            rate = np.array([float(rates.get(space.channels[c], 0.0)) for c in space.channel_index[1:]])
            cost[1:] += rate * catalog.consent_value
        return cost

    def _inputs_plan(self) -> InputPlan:
        """Cached per model set (serving may swap `models`); the cache holds the set, so its id stays unique."""
        cached = self.__dict__.get("_plan")
        if cached is None or cached[0] is not self.models:
            cached = (self.models, InputPlan.of(self.models))
            self.__dict__["_plan"] = cached
        return cached[1]

    # --- one customer (the API's hot path) -------------------------------------------------------------

    def decide(
        self,
        customer_id: str,
        features: pd.DataFrame,
        state: ContactState,
        now: pd.Timestamp,
        cold_start: bool = False,
        decision_id: str | None = None,
        explain: bool = False,
    ) -> Decision:
        """Decide for one customer; `features` is a one-row frame with feature and request-feature columns.

        Exactly `decide_batch` with n = 1 rendered by `decisions`, plus (with `explain`) feature contributions.
        """
        batch = self.decide_batch([customer_id], features, ContactStates.from_states([state]), now, top_k=None)
        decision = self.decisions(batch, now, [cold_start], [decision_id] if decision_id else None, [state])[0]
        if explain:
            self.add_explanation(decision, features)
        return decision

    def decisions(
        self,
        batch: BatchDecisions,
        now: pd.Timestamp,
        cold_start: Sequence[bool] | None = None,
        decision_ids: Sequence[str] | None = None,
        states: Sequence[ContactState] | None = None,
        contact_states: ContactStates | None = None,
    ) -> list[Decision]:
        """One readable `Decision` per customer of `batch` (computed with `top_k=None`), in batch order.

        The policy text of an exclusion needs the customer's `ContactState`: pass `states`, or the batch's
        `contact_states` (a customer's state is then read back from its row, only when a policy excluded something).
        Serving decides many customers with one `decide_batch` and renders them here, so a decision made in a
        micro-batch is the decision `decide` makes for the same inputs.
        """
        n = len(batch)
        versions = self.models.versions()
        no_response_model = self.models.response is None
        weights = _mix(batch.scores.customer.phase_proba, batch.space.weights)
        out = []
        for i in range(n):
            state = states[i] if states is not None else None
            codes = batch.scores.code[i]
            if state is None and contact_states is not None and ((codes > 0) & (codes < NOT_FOR_PHASE)).any():
                state = self._state_of(contact_states, i)
            out.append(
                self._decision_of(
                    batch,
                    i,
                    now,
                    weights[i],
                    state or ContactState(),
                    cold_start=bool(cold_start[i]) if cold_start is not None else False,
                    decision_id=decision_ids[i] if decision_ids is not None else None,
                    versions=versions,
                    no_response_model=no_response_model,
                )
            )
        return out

    def add_explanation(self, decision: Decision, features: pd.DataFrame) -> None:
        """Top feature contributions of the models behind `decision` (`features`: its one-row frame), in place."""
        decision.contributions = self.explain(features, decision.phase, decision.action.action)
        decision.reasons = _explain(
            decision.action,
            decision.explored,
            decision.excluded,
            self.models.response is None,
            decision.contributions,
        )

    def _decision_of(
        self,
        batch: BatchDecisions,
        i: int,
        now: pd.Timestamp,
        weights: np.ndarray,
        state: ContactState,
        cold_start: bool,
        decision_id: str | None,
        versions: dict[str, str],
        no_response_model: bool,
    ) -> Decision:
        scores = batch.scores
        phase_proba = dict(zip(PHASES, scores.customer.phase_proba[i].tolist(), strict=True))
        chosen = self._action_score_of(batch, i, int(batch.column[i]), weights)
        alternatives = [self._action_score_of(batch, i, int(c), weights) for c in batch.alternatives[i] if c >= 0]
        excluded = self._exclusions_of(scores, i, state, phase_proba, now.hour)
        explored = bool(batch.explored[i])
        return Decision(
            decision_id=decision_id or uuid.uuid4().hex,
            customer_id=str(scores.customer_ids[i]),
            ts=now,
            phase=str(scores.customer.phase[i]),
            phase_probabilities=phase_proba,
            churn_risk=_finite(scores.customer.churn_risk[i]),
            purchase_propensity=_finite(scores.customer.purchase_propensity[i]),
            action=chosen,
            alternatives=alternatives,
            excluded=excluded,
            propensity=float(batch.propensity[i]),
            explored=explored,
            policy=self.policy_name,
            model_versions=dict(versions),
            cold_start=cold_start,
            reasons=_explain(chosen, explored, excluded, no_response_model),
        )

    def _action_score_of(self, batch: BatchDecisions, i: int, column: int, weights: np.ndarray) -> ActionScore:
        """Customer i's score of one decision column (`weights`: its row of objective weights)."""
        if column == 0:
            return NO_CONTACT_SCORE
        space, scores = batch.space, batch.scores
        action = space.actions[column]
        p_treated, p_control = float(scores.p_treated[i, column]), float(scores.p_control[i, column])
        return ActionScore(
            channel=action.channel,
            content=action.content,
            objective=space.objectives[column],
            p_response=p_treated,
            p_baseline=p_control,
            uplift=p_treated - p_control,
            value=float(space.value[column]),
            objective_weight=float(weights[column]),
            cost=float(self._contact_cost()[column]),
            score=float(scores.score[i, column]),
        )

    @staticmethod
    def _state_of(states: ContactStates, i: int) -> ContactState:
        """Customer i's `ContactState` read back from the columns (what the readable policy rules take)."""

        def optional(column: np.ndarray) -> float | None:
            value = float(column[i])
            return None if np.isnan(value) else value

        return ContactState(
            consents={key: bool(column[i]) for key, column in states.consents.items()},
            sent_day={key: int(column[i]) for key, column in states.sent_day.items()},
            sent_week={key: int(column[i]) for key, column in states.sent_week.items()},
            hours_since_last_contact=optional(states.hours_since_last_contact),
            days_since_opt_out=optional(states.days_since_opt_out),
            ignored_recent={key: int(column[i]) for key, column in states.ignored_recent.items()},
        )

    def _exclusions_of(
        self, scores: BatchScores, i: int, state: ContactState, phase_proba: Mapping[str, float], hour: int
    ) -> list[Exclusion]:
        """Readable reasons for customer i's excluded columns (the policy text is the scalar rule's, made once per
        channel; the phase text once per content)."""
        out = []
        phase = str(scores.customer.phase[i])
        actions, contents, content_index = self.space.actions, self.catalog.contents, self.space.content_index
        texts: dict[tuple[int, str], str] = {}  # per (code, channel or content) for this customer
        row = scores.code[i]
        columns = np.flatnonzero(row)
        for column, code in zip(columns.tolist(), row[columns].tolist(), strict=True):
            action = actions[column]
            if code == NOT_FOR_PHASE:
                reason = texts.get((code, action.content), "")
                if not reason:
                    spec = contents[action.content]
                    mass = sum(phase_proba.get(p, 0.0) for p in spec.phases)
                    reason = f"not for phase {phase}: {action.content} serves {', '.join(spec.phases)} (p={mass:.2f})"
                    texts[code, action.content] = reason
            elif code == RULE_FAILED:
                rule = contents[action.content].rules[int(scores.failed_rule[i, content_index[column]])]
                reason = f"eligibility rule failed: {rule}"
            elif code == NO_EVIDENCE:
                reason = "no evidence: the response model cannot score this action"
            else:
                reason = texts.get((code, action.channel), "")
                if not reason:
                    text = self.policies.violation(action, state, self.catalog, hour)
                    reason = texts[code, action.channel] = text or EXCLUSION_NAMES[code]
            out.append(Exclusion(action.channel, action.content, reason))
        return out

    def explain(self, features: pd.DataFrame, phase: str, action: Action) -> dict[str, list[FeatureContribution]]:
        """Top feature contributions (LightGBM pred_contrib) of the phase model for `phase` and of the response
        model for `action` (its treated row, and treated minus control = what drives the uplift).

        Best effort: a model whose predictor gives no per-feature contributions is simply not explained."""
        out: dict[str, list[FeatureContribution]] = {}
        phase_model, response = self.models.phase, self.models.response
        if phase_model is not None and phase in phase_model.classes:
            row = phase_model.matrix(features)[:1]
            width = len(phase_model.feature_names) + 1
            contrib = _contributions(phase_model, row, width * len(phase_model.classes))
            if contrib is not None:
                k = phase_model.classes.index(phase)
                out["phase"] = _top(phase_model.feature_names, row[0], contrib[0, k * width : (k + 1) * width - 1])
        if response is not None and action.channel != NO_CONTACT:
            x = response.matrix(features)[:1]
            channels, contents = response.action_codes(ACTION_CHANNEL), response.action_codes(ACTION_CONTENT)
            codes = [channels.get(action.channel, -1), contents.get(action.content, -1)]
            control = [channels.get(NO_CONTACT, -1), codes[1]]
            if min(*codes, *control) >= 0:
                rows = np.hstack([np.repeat(x, 2, axis=0), np.array([codes, control], dtype=np.float64)])
                contrib = _contributions(response, rows, rows.shape[1] + 1)
                if contrib is not None:
                    names = (*response.feature_names, ACTION_CHANNEL, ACTION_CONTENT)
                    out["response"] = _top(names, rows[0], contrib[0, :-1])
                    # response × effect: the uplift is driven by what drives the response; else treated − control
                    by = (
                        contrib[0, :-1]
                        if effect_per_response(response) is not None
                        else contrib[0, :-1] - contrib[1, :-1]
                    )
                    out["uplift"] = _top(names, rows[0], by)
        return out

    # --- many customers --------------------------------------------------------------------------------

    def decide_batch(
        self,
        customer_ids: Sequence[str] | np.ndarray,
        features: pd.DataFrame,
        states: ContactStates,
        now: pd.Timestamp,
        capacities: Mapping[str, int] | None = None,
        top_k: int | None = 3,
    ) -> BatchDecisions:
        """Decide for n customers (rows of `features`, entries of `states`, in the same order).

        `capacities` caps how many customers of this batch may get each channel (greedy by score, the others
        fall back to their next best allowed action); `top_k` next best actions are kept (None = all).
        """
        return self.choose(self.score_batch(customer_ids, features, states, now), capacities, top_k)

    def score_batch(
        self, customer_ids: Sequence[str] | np.ndarray, features: pd.DataFrame, states: ContactStates, now: pd.Timestamp
    ) -> BatchScores:
        """Eligibility, policies and scores for every (customer, action): everything but the choice."""
        n = len(features)
        if len(customer_ids) != n or states.n != n:
            raise ValueError(f"decide_batch: {len(customer_ids)} ids, {n} feature rows, {states.n} states")
        space = self.space
        plan = self._inputs_plan()
        union = plan.union_matrix(features)
        inputs = plan.split(union)
        customer = score_customers(self.models, features, inputs, self._predict_kwargs)
        code, failed_rule = self._eligibility(_RuleValues(features, customer, union, plan.position))
        policy = self.policies.violation_codes(states, space.channels, self.catalog, now.hour)[:, space.channel_index]
        code = np.where(code == 0, policy, code)
        p_treated, p_control = self._response(inputs.get("response"), code)
        code[:, 1:][(code[:, 1:] == 0) & ~(np.isfinite(p_treated[:, 1:]) & np.isfinite(p_control[:, 1:]))] = NO_EVIDENCE
        weight = _mix(customer.phase_proba, space.weights)
        score = (p_treated - p_control) * space.value * weight - self._contact_cost()
        score = np.where(code == 0, score, -np.inf)
        score[:, 0] = 0.0
        return BatchScores(
            customer_ids=np.asarray(customer_ids, dtype=object),
            customer=customer,
            code=code,
            failed_rule=failed_rule,
            p_treated=p_treated,
            p_control=p_control,
            score=score,
        )

    def _eligibility(self, values: _RuleValues) -> tuple[np.ndarray, np.ndarray]:
        """Codes NOT_FOR_PHASE / RULE_FAILED per column, and the first failing rule per content."""
        space, n = self.space, len(values.features)
        proba = values.customer.phase_proba
        top = proba.argmax(axis=1)
        mass = _mix(proba, space.phase_member.T.astype(np.float64))  # (n, K)
        serves = space.phase_member[:, top].T  # (n, K): content serves the predicted phase
        eligible = serves | (mass >= self.eligibility_mass)
        failed_rule = np.full((n, len(self.catalog.contents)), -1, dtype=np.int8)
        for k, spec in enumerate(self.catalog.contents.values()):
            for i, rule in enumerate(spec.rules):
                holds = rule.holds_for(values.get(rule.feature))
                failed_rule[:, k] = np.where((failed_rule[:, k] < 0) & ~holds, i, failed_rule[:, k])
        by_column = space.content_index[1:]
        code = np.zeros((n, space.width), dtype=np.int8)
        code[:, 1:] = np.where(
            ~eligible[:, by_column], NOT_FOR_PHASE, np.where(failed_rule[:, by_column] >= 0, RULE_FAILED, 0)
        )
        return code, failed_rule

    def _response(self, matrix: np.ndarray | None, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P(goal | action) and P(goal | no contact) for the allowed pairs only (NaN elsewhere), one predict."""
        space, n = self.space, len(code)
        p_treated = np.full((n, space.width), np.nan)
        p_control = np.full((n, space.width), np.nan)
        p_treated[:, 0] = p_control[:, 0] = 0.0
        rows, columns = np.nonzero(code[:, 1:] == 0)
        columns = columns + 1
        model = self.models.response
        if model is None:
            p_treated[rows, columns], p_control[rows, columns] = PRIOR_UPLIFT, 0.0
        elif len(rows) and matrix is not None:
            treated, control = pair_uplifts(model, matrix, rows, columns, space.actions, self._predict_kwargs)
            p_treated[rows, columns], p_control[rows, columns] = treated, control
        return p_treated, p_control

    def choose(
        self, scores: BatchScores, capacities: Mapping[str, int] | None = None, top_k: int | None = 3
    ) -> BatchDecisions:
        """Greedy (after capacities) or, with probability ε, uniform over the candidates; exact propensities."""
        space = self.space
        if capacities:
            denied = allocate_capacity(scores.score, space.channel_index, _capacity_by_channel(space, capacities))
            scores.code[denied] = OVER_CAPACITY
            scores.score[denied] = -np.inf
        candidates = np.isfinite(scores.score)
        count = candidates.sum(axis=1)
        greedy = scores.score.argmax(axis=1)  # first maximum: no contact wins ties, then catalog order
        column, propensity, explored = _epsilon_greedy(greedy, candidates, count, self.exploration_rate, self.rng)
        return BatchDecisions(
            scores=scores,
            space=space,
            column=column,
            propensity=propensity,
            explored=explored,
            n_candidates=count,
            alternatives=_ranked_alternatives(scores.score, column, top_k),
            objective_weight=_chosen_weight(scores.customer.phase_proba, space.weights, column),
        )


class _RuleValues:
    """What content eligibility rules may test, as columns: any numeric feature, the model scores, p_<phase>."""

    def __init__(
        self, features: pd.DataFrame, customer: CustomerScores, matrix: np.ndarray, position: Mapping[str, int]
    ) -> None:
        self.features, self.customer = features, customer
        self.matrix, self.position = matrix, position  # the models' inputs: already floats
        self.derived = {
            "churn_risk": customer.churn_risk,
            "purchase_propensity": customer.purchase_propensity,
            **{f"p_{p}": customer.phase_proba[:, i] for i, p in enumerate(PHASES)},
        }

    def get(self, name: str) -> np.ndarray:
        """Float column; NaN where missing or not a number (a rule on it fails)."""
        if name in self.derived:
            return np.asarray(self.derived[name], dtype=np.float64)
        if name in self.position:
            return self.matrix[:, self.position[name]]
        if name not in self.features.columns:
            return np.full(len(self.features), np.nan)
        column = self.features[name]
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            return column.to_numpy(dtype=np.float64, na_value=np.nan)
        numeric = column.map(lambda v: float(v) if isinstance(v, int | float) else np.nan)
        return numeric.to_numpy(dtype=np.float64, na_value=np.nan)


def _mix(proba: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(n, P) phase probabilities × (P, m) per-phase values, summed phase by phase in a fixed order: unlike a
    matrix product (BLAS picks kernels by size), a row's result does not depend on the batch it is in."""
    out = np.zeros((len(proba), table.shape[1]))
    for p in range(table.shape[0]):
        out += proba[:, p : p + 1] * table[p]
    return out


def _chosen_weight(proba: np.ndarray, weights: np.ndarray, column: np.ndarray) -> np.ndarray:
    """`_mix(proba, weights)[i, column[i]]` with the same arithmetic, for the chosen columns only."""
    out = np.zeros(len(proba))
    for p in range(weights.shape[0]):
        out += proba[:, p] * weights[p, column]
    return out


def _capacity_by_channel(space: ActionSpace, capacities: Mapping[str, int]) -> dict[int, int]:
    unknown = sorted(set(capacities) - set(space.channels[:-1]))
    if unknown:
        raise ValueError(f"capacities: unknown channel(s) {unknown}; catalog channels: {list(space.channels[:-1])}")
    return {space.channels.index(ch): int(cap) for ch, cap in capacities.items()}


def allocate_capacity(score: np.ndarray, channel_index: np.ndarray, capacities: Mapping[int, int]) -> np.ndarray:
    """Which (customer, column) pairs lose their channel to capacity: (n, columns) bool.

    Deferred acceptance, greedy by value: every customer proposes its best remaining column; a capped channel
    keeps the `capacity` proposals with the highest scores (ties: earlier customer) and denies the channel to
    the rest, who propose their next best in the next round. Each round denies at least one (customer, channel),
    so it ends within (#capped channels + 1) rounds per customer; a channel ends with at most `capacity` holders.
    Then, when more customers could take a capped channel than it holds, it is reserved to its holders, so no
    exploration elsewhere can overfill it and every propensity stays exact.
    """
    working = score.copy()
    if not capacities:
        return np.zeros(score.shape, dtype=bool)
    rows = np.arange(len(score))
    for _ in range(len(capacities) + 2):
        best = working.argmax(axis=1)
        proposed = channel_index[best]
        changed = False
        for channel, capacity in capacities.items():
            proposers = np.flatnonzero((proposed == channel) & np.isfinite(working[rows, best]))
            if len(proposers) <= capacity:
                continue
            order = np.argsort(-working[proposers, best[proposers]], kind="stable")
            working[np.ix_(proposers[order[capacity:]], np.flatnonzero(channel_index == channel))] = -np.inf
            changed = True
        if not changed:
            break
    holders = channel_index[working.argmax(axis=1)]
    for channel, capacity in capacities.items():
        columns = np.flatnonzero(channel_index == channel)
        could = np.isfinite(working[:, columns]).any(axis=1)
        if could.sum() > capacity:
            working[np.ix_(could & (holders != channel), columns)] = -np.inf
    return np.isfinite(score) & ~np.isfinite(working)


def _epsilon_greedy(
    greedy: np.ndarray, candidates: np.ndarray, count: np.ndarray, epsilon: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best with prob 1-ε, else uniform over the customer's candidates (the best included); exact propensity."""
    column = greedy.copy()
    if epsilon > 0:
        explore = np.flatnonzero(rng.random(len(greedy)) < epsilon)
        if len(explore):
            nth = rng.integers(0, count[explore])  # the nth candidate, in column order
            column[explore] = (np.cumsum(candidates[explore], axis=1) > nth[:, None]).argmax(axis=1)
    explored = column != greedy
    propensity = epsilon / count + (1 - epsilon) * (~explored)
    return column, propensity.astype(np.float64), explored


def _ranked_alternatives(score: np.ndarray, chosen: np.ndarray, top_k: int | None) -> np.ndarray:
    """The candidates other than the chosen one, best first (ties: column order), padded with -1."""
    masked = score.copy()
    masked[np.arange(len(score)), chosen] = -np.inf
    keep = score.shape[1] if top_k is None else min(top_k, score.shape[1])
    if keep < score.shape[1]:
        # Partition to the top `keep`, then sort just those (ties broken by column for determinism).
        part = np.sort(np.argpartition(-masked, keep - 1, axis=1)[:, :keep], axis=1)
        order = np.take_along_axis(
            part, np.argsort(-np.take_along_axis(masked, part, axis=1), axis=1, kind="stable"), 1
        )
    else:
        order = np.argsort(-masked, axis=1, kind="stable")
    return np.where(np.isfinite(np.take_along_axis(masked, order, axis=1)), order, -1)


def _top(
    names: Sequence[str], row: np.ndarray, contrib: np.ndarray, k: int = TOP_CONTRIBUTIONS
) -> list[FeatureContribution]:
    order = np.argsort(-np.abs(contrib), kind="stable")[:k]
    return [FeatureContribution(str(names[i]), _finite(row[i]), float(contrib[i])) for i in order if contrib[i] != 0]


def _contributions(model: LoadedModel, rows: np.ndarray, width: int) -> np.ndarray | None:
    """`pred_contrib` output as (rows, width), or None when the predictor does not provide it."""
    try:
        contrib = np.asarray(model.contributions(rows), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return contrib if contrib.shape == (len(rows), width) else None


def _finite(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _explain(
    chosen: ActionScore,
    explored: bool,
    excluded: list[Exclusion],
    no_response_model: bool,
    contributions: Mapping[str, list[FeatureContribution]] | None = None,
) -> list[str]:
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
    labels = {"phase": "phase driven by", "uplift": "uplift driven by"}
    for key, label in labels.items():
        top = (contributions or {}).get(key)
        if top:
            reasons.append(f"{label}: " + ", ".join(_describe(c) for c in top))
    return reasons


def _describe(c: FeatureContribution) -> str:
    value = "missing" if c.value is None else f"{c.value:.4g}"
    return f"{c.feature}={value} ({c.contribution:+.3f})"
