"""Off-policy evaluation of candidate policies on logged decisions (IPS, SNIPS, DR from `training.ope`).

The logs are split in time: models are trained through parcours on everything before the cutoff, and every
logged decision after it (with its logged propensity and a fully observed reward window) is a round. The
candidate NBA policy is the DecisionEngine with exploration epsilon: pi(a | x) = epsilon / n_candidates +
(1 − epsilon)·[a is its best action] for the actions it may choose, 0 otherwise — stochastic, so every
candidate action the logging policy also took carries weight. Features are built as of each decision (floored
to the hour, so only the past is seen) with the same code serving uses. Reward = purchase revenue in the
response window; the contact rate (reward = 1 for a contact) is estimated the same way.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.build import build_features
from features.policy_state import contact_state
from features.request import add_request_features
from journey.catalog import Action, Catalog
from journey.decision import DecisionEngine
from journey.playbook import playbook_action
from journey.policies import ContactPolicies
from journey.vocabulary import NO_CONTACT
from training.ope import Estimate, evaluate_policy
from training.sim_policies import nba_engine, revenue_after, signals_from_features

Progress = Callable[[str], None]


def features_at_decisions(data: Any, decisions: pd.DataFrame) -> pd.DataFrame:
    """Snapshot + request features per decision row (same order), as of the decision time floored to the hour."""
    at = pd.to_datetime(decisions["ts"], utc=True).dt.floor("h")
    parts = []
    for t, rows in decisions.groupby(at, sort=True):
        ids = set(rows["customer_id"])
        built = build_features(
            data.customers.loc[data.customers["customer_id"].isin(ids)],
            data.events.loc[data.events["customer_id"].isin(ids)],
            data.contacts.loc[data.contacts["customer_id"].isin(ids)],
            [t],
        ).set_index("customer_id")
        frame = built.reindex(rows["customer_id"].to_numpy()).reset_index()
        frame.index = rows.index
        parts.append(add_request_features(frame, t))
    return pd.concat(parts).loc[decisions.index]


def _scores(
    engine: DecisionEngine, ids: list[str], features: pd.DataFrame, states: list[Any], now: pd.Timestamp
) -> np.ndarray:
    """(score matrix over engine.space.actions, column 0 = none) for one decision time."""
    import journey.policies as policies_module

    batch_states = policies_module.ContactStates.from_states(states)
    return np.asarray(engine.score_batch(ids, features, batch_states, now).score)


def nba_probabilities(
    engine: DecisionEngine, decisions: pd.DataFrame, features: pd.DataFrame, epsilon: float
) -> tuple[np.ndarray, np.ndarray, tuple[Action, ...]]:
    """(pi(logged action), pi over every action column, the columns' actions) under epsilon-greedy NBA."""
    space = engine.space
    column = {a: j for j, a in enumerate(space.actions)}
    logged = [Action(str(c), str(k)) for c, k in zip(decisions["channel"], decisions["content"], strict=True)]
    pi = np.zeros((len(decisions), len(space.actions)))
    rows: list[dict[str, Any]] = features.to_dict("records")  # type: ignore[assignment]
    at = pd.to_datetime(decisions["ts"], utc=True).dt.floor("h")
    for _, positions in pd.Series(np.arange(len(decisions))).groupby(at.to_numpy()):
        idx = positions.to_numpy()
        now = at.iloc[idx[0]]
        states = [contact_state(rows[i], [], now) for i in idx]
        ids = decisions["customer_id"].iloc[idx].astype(str).tolist()
        score = _scores(engine, ids, features.iloc[idx].reset_index(drop=True), states, now)
        candidates = np.isfinite(score)
        best = np.argmax(np.where(candidates, score, -np.inf), axis=1)  # ties: the first column (no contact)
        block = candidates * (epsilon / candidates.sum(axis=1, keepdims=True))
        block[np.arange(len(idx)), best] += 1 - epsilon
        pi[idx] = block
    pi_logged = np.array([pi[i, column[a]] if a in column else 0.0 for i, a in enumerate(logged)])
    return pi_logged, pi, tuple(space.actions)


def playbook_actions(
    decisions: pd.DataFrame, features: pd.DataFrame, catalog: Catalog, policies: ContactPolicies
) -> list[Action]:
    """What the deterministic playbook would have done at each logged decision."""
    out = []
    rows: list[dict[str, Any]] = features.to_dict("records")  # type: ignore[assignment]
    for row, ts in zip(rows, pd.to_datetime(decisions["ts"], utc=True).dt.floor("h"), strict=True):
        state = contact_state(row, [], ts)

        def allowed(action: Action, state: Any = state, hour: int = ts.hour) -> bool:
            return policies.violation(action, state, catalog, hour) is None

        out.append(playbook_action(signals_from_features(row), catalog, allowed)[0])
    return out


def _estimates(logs: pd.DataFrame, target: np.ndarray, q_logged: np.ndarray | None, q_target: np.ndarray | None,
               n_bootstrap: int, seed: int) -> dict[str, Any]:  # fmt: skip
    result = evaluate_policy(logs, target, q_hat_logged=q_logged, expected_reward_target=q_target,
                             n_bootstrap=n_bootstrap, seed=seed)  # fmt: skip
    return {name: estimate.as_dict() for name, estimate in result.items()}


def evaluate_offline(
    data: Any,
    catalog: Catalog,
    policies: ContactPolicies,
    *,
    train_share: float = 0.7,
    epsilon: float = 0.1,
    window_days: int = 7,
    seed: int = 0,
    n_bootstrap: int = 500,
    max_rows: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """IPS / SNIPS / DR value of NBA (epsilon-greedy), the playbook and no contact on the logs after a cutoff."""
    from training.policy_eval import train_models

    say = progress or (lambda message: None)
    if not 0.0 < train_share < 1.0:
        raise ValueError(f"train_share must be in (0, 1), got {train_share}")
    if not 0.0 < epsilon <= 1.0:
        raise ValueError(f"epsilon must be in (0, 1] so that the target policy is stochastic, got {epsilon}")
    contacts = data.contacts.loc[data.contacts["propensity"].notna()].reset_index(drop=True)
    if contacts.empty:
        raise ValueError("contacts: no logged decision with a propensity; nothing to evaluate")
    start, end = pd.to_datetime(data.events["ts"], utc=True).min(), pd.to_datetime(data.events["ts"], utc=True).max()
    cutoff = (start + (end - start) * train_share).floor("D")
    past = _cut(data, cutoff)
    with tempfile.TemporaryDirectory(prefix="parcours-ope-") as home:
        say(f"training on the logs before {cutoff.date()}")
        models, training = train_models(past, catalog, Path(home), seed, max_rows, progress)
    rounds = contacts.loc[
        (contacts["ts"] >= cutoff) & (contacts["ts"] + pd.Timedelta(days=window_days) <= end)
    ].reset_index(drop=True)
    say(f"building features for {len(rounds):,} logged decisions after the cutoff")
    features = features_at_decisions(data, rounds).reset_index(drop=True)
    revenue = revenue_after(rounds, data.events, window_days)
    contacted = (rounds["channel"] != NO_CONTACT).to_numpy(dtype=float)
    engine = nba_engine(catalog, policies, models, seed)
    pi_nba, pi_matrix, actions = nba_probabilities(engine, rounds, features, epsilon)
    rules = playbook_actions(rounds, features, catalog, policies)
    keys = (rounds["channel"] + ":" + rounds["content"]).to_numpy()
    # reward model for DR: mean revenue per action on the logs before the cutoff (a different sample)
    train_rounds = contacts.loc[contacts["ts"] + pd.Timedelta(days=window_days) < cutoff].reset_index(drop=True)
    train_keys = (train_rounds["channel"] + ":" + train_rounds["content"]).to_numpy()
    q_by_action = pd.Series(revenue_after(train_rounds, past.events, window_days)).groupby(train_keys).mean()
    default = float(q_by_action.mean())

    def q(key: str) -> float:
        return float(q_by_action.get(key, default))

    q_logged = np.array([q(k) for k in keys])
    q_columns = np.array([q(a.key) for a in actions])
    none_key = f"{NO_CONTACT}:{NO_CONTACT}"
    targets = {
        "nba": (pi_nba, pi_matrix @ q_columns),
        "rules": (np.array([float(a.key == k) for a, k in zip(rules, keys, strict=True)]),
                  np.array([q(a.key) for a in rules])),
        "none": ((keys == none_key).astype(float), np.full(len(keys), q(none_key))),
    }  # fmt: skip
    logs = pd.DataFrame({"reward": revenue, "action": keys, "propensity": rounds["propensity"].to_numpy(float)})
    contact_logs = logs.assign(reward=contacted)
    out: dict[str, Any] = {
        "cutoff": cutoff.isoformat(),
        "rounds": len(rounds),
        "epsilon": epsilon,
        "window_days": window_days,
        "training": training,
        "logging_policy": {"revenue": float(revenue.mean()), "contact_rate": float(contacted.mean())},
        "nba_greedy_contact_share": float(1.0 - pi_matrix[:, 0].mean()),
    }
    for name, (target, q_target) in targets.items():
        out[name] = {
            "revenue_per_decision": _estimates(logs, target, q_logged, q_target, n_bootstrap, seed),
            "contacts_per_decision": _estimates(contact_logs, target, None, None, n_bootstrap, seed),
        }
    return out


def _cut(data: Any, cutoff: pd.Timestamp) -> Any:
    from training.datasets import LoggedJourneyData

    return LoggedJourneyData(
        customers=data.customers,
        events=data.events.loc[data.events["ts"] < cutoff].reset_index(drop=True),
        contacts=data.contacts.loc[data.contacts["ts"] < cutoff].reset_index(drop=True),
    )


def estimate_table(result: dict[str, Any]) -> pd.DataFrame:
    """One row per (policy, estimator) of the revenue estimates, for printing."""
    rows = []
    for name in ("nba", "rules", "none"):
        for estimator, est in result.get(name, {}).get("revenue_per_decision", {}).items():
            rows.append({"policy": name, "estimator": estimator, **est})
    return pd.DataFrame(rows)


__all__ = ["Estimate", "estimate_table", "evaluate_offline", "features_at_decisions", "nba_probabilities"]
