"""How far can a learned NBA policy go on the simulator? A static, one-step look at the decisions themselves.

    .venv/bin/python -m bench.sim_ceiling --out sim_ceiling.json [--customers 5000] [--seed 0] [--probe-days 14]
        [--home DIR]

`parcours evaluate` runs each policy forward and measures what happened: honest, but slow (~15 min for 3 seeds)
and noisy. This benchmark asks a narrower question, without noise: on the same decisions (the customers the
simulator brings up during the first `--probe-days` of the evaluation period, run under the rules policy), what is
the true expected net value (`true_response(...).net_value`, the oracle's own measure) of the action each decision
rule would pick among the actions consent and the contact policies allow?

Rules compared:
- `rules`, `oracle`, `nba` (the DecisionEngine with the models trained through parcours on the warm-up);
- ceilings that borrow the truth, to locate the gap: `true_uplift_within_nba_eligibility` (the engine's
  eligibility and policies, the true uplift to rank), `true_action_means` (the engine's model rescaled so that each
  action's mean predicted uplift equals its true mean: perfect calibration, the model's ranking),
  `true_segment_table` (no phase gating; per action, the true mean net value in each segment = the playbook's
  situation × the predicted phase: the best a per-segment uplift table learned from the logs could ever do).

Also reported: the correlation of predicted and true uplift over allowed (customer, action) pairs, overall and
within each action. Training runs through parcours (`training.policy_eval.train_models`) in `--home` (reused if it
already holds the trained models), ~3 min for 5,000 customers on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(PROJECT_ROOT), *(p for p in sys.path if Path(p or ".").resolve() != PROJECT_ROOT / "bench")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--days", type=int, default=120, help="Warm-up days under the randomized logging policy.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-days", type=int, default=14)
    parser.add_argument("--home", type=Path, help="Workspace for the trained models (default: a new temp dir).")
    args = parser.parse_args(argv)
    import tempfile

    home = args.home or Path(tempfile.mkdtemp(prefix="parcours-ceiling-"))
    result = run(home, args.customers, args.days, args.seed, args.probe_days)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


def run(home: Path, customers: int, days: int, seed: int, probe_days: int) -> dict[str, Any]:
    from journey.catalog import load_catalog
    from journey.policies import load_policies
    from journey.scoring import TASKS, ModelSet
    from journey.settings import Settings
    from training.policy_eval import SimEvalConfig, load_version, train_models, warm_up
    from training.sim_policies import nba_engine

    catalog, policies = load_catalog(), load_policies()
    config = SimEvalConfig(customers=customers, days=days, horizon_days=max(probe_days, 7), seeds=(seed,))
    started = time.perf_counter()
    history = warm_up(config, seed, catalog).collect()
    versions_file = home / "versions.json"
    if versions_file.exists():
        versions = json.loads(versions_file.read_text())
        settings = Settings(home=home, seed=seed)
        models = ModelSet(**{t: load_version(settings, t, v) for t, v in versions.items() if v})
    else:
        models, _ = train_models(history, catalog, home, seed, None, print)
        versions = {t: getattr(getattr(models, t), "version", None) for t in TASKS}
        versions_file.write_text(json.dumps(versions))
    trained = time.perf_counter()
    probes = probe(config, seed, catalog, policies, history, probe_days)
    engine = nba_engine(catalog, policies, models, seed)
    figures = compare(probes, engine, catalog)
    return {
        "customers": customers,
        "warm_up_days": days,
        "seed": seed,
        "probe_days": probe_days,
        "decisions": int(sum(len(p["ids"]) for p in probes)),
        "models": versions,
        "train_s": round(trained - started, 1),
        "total_s": round(time.perf_counter() - started, 1),
        **figures,
    }


def probe(config: Any, seed: int, catalog: Any, policies: Any, history: Any, days: int) -> list[dict[str, Any]]:
    """Run the rules policy from the warm-up state and keep, per decision day, what every rule needs."""
    from training.policy_eval import warm_up
    from training.sim_policies import Observer, PlaybookPolicy

    store: list[dict[str, Any]] = []

    class Probe(PlaybookPolicy):
        def decide(self, context: Any) -> Any:
            obs = self.observer.observe(context)
            consent = context.allowed()
            actions = list(self.catalog.actions)
            index = {a: j for j, a in enumerate(context.catalog.actions)}
            hour = obs.now.hour
            allowed = np.zeros((len(obs.customer_ids), len(actions)), dtype=bool)
            for i, state in enumerate(obs.states):
                for j, a in enumerate(actions):
                    free = self.policies.violation(a, state, self.catalog, hour) is None
                    allowed[i, j] = bool(consent[i, index[a]]) and free
            truths = [context.truth.response(a.channel, a.content) for a in actions]
            out = super().decide(context)
            store.append(
                {
                    "ids": [str(c) for c in obs.customer_ids],
                    "obs": obs,
                    "allowed": allowed,
                    "net": np.column_stack([t.net_value for t in truths]),
                    "uplift": np.column_stack([t.uplift for t in truths]),
                    "rules": list(zip(out.channel, out.content, strict=True)),
                }
            )
            return out

    env = warm_up(config, seed, catalog)
    policy = Probe(catalog, policies, Observer(history.customers))
    for _ in range(days):
        env.step(policy)
    return store


def compare(store: list[dict[str, Any]], engine: Any, catalog: Any) -> dict[str, Any]:
    from journey.catalog import Action
    from journey.playbook import playbook_rule
    from journey.policies import ContactStates
    from training.sim_policies import signals_from_features

    actions = list(catalog.actions)
    column = {a: j for j, a in enumerate(actions)}
    value = np.array([catalog.contents[a.content].value for a in actions])
    cost = np.array([catalog.channels[a.channel].cost for a in actions])
    totals: dict[str, list[float]] = {}
    pairs: list[pd.DataFrame] = []
    cells: dict[tuple[int, str], list[float]] = {}
    days: list[dict[str, Any]] = []

    def add(name: str, net: float, contacted: int) -> None:
        got = totals.setdefault(name, [0.0, 0.0])
        got[0] += net
        got[1] += contacted

    def pick(scores: np.ndarray, net: np.ndarray) -> tuple[float, int]:
        best, chosen = scores.max(axis=1), scores.argmax(axis=1)
        send = best > 0
        return float(net[np.arange(len(net)), chosen][send].sum()), int(send.sum())

    for day in store:
        obs, allowed, net = day["obs"], day["allowed"], day["net"]
        scores = engine.score_batch(day["ids"], obs.features, ContactStates.from_states(obs.states), obs.now)
        at = [engine.space.actions.index(a) for a in actions]
        eligible = allowed & (scores.code[:, at] == 0)
        predicted = (scores.p_treated - scores.p_control)[:, at]
        rules = [column.get(Action(str(c), str(k))) for c, k in day["rules"]]
        add("rules", sum(net[i, j] for i, j in enumerate(rules) if j is not None), sum(j is not None for j in rules))
        add("oracle", *pick(np.where(allowed, net, -np.inf), net))
        add("nba", *pick(np.where(eligible, scores.score[:, at], -np.inf), net))
        add("true_uplift_within_nba_eligibility", *pick(np.where(eligible, net, -np.inf), net))
        segment = _segments(obs.features, scores.customer.phase, playbook_rule, signals_from_features)
        days.append({"eligible": eligible, "predicted": predicted, "segment": segment, "net": net, "allowed": allowed})
        ok = eligible & np.isfinite(predicted)
        for j, a in enumerate(actions):
            pairs.append(pd.DataFrame({"action": a.key, "predicted": predicted[ok[:, j], j],
                                       "true": day["uplift"][ok[:, j], j]}))  # fmt: skip
            for g in np.unique(segment[allowed[:, j]]):
                cells.setdefault((j, str(g)), []).extend(net[allowed[:, j] & (segment == g), j].tolist())
    frame = pd.concat(pairs, ignore_index=True)
    scale = _action_scale(frame, actions)
    for day in days:
        eligible, predicted, net = day["eligible"], day["predicted"], day["net"]
        rescaled = np.where(eligible, predicted * scale * value - cost, -np.inf)
        add("true_action_means", *pick(np.nan_to_num(rescaled, nan=-np.inf), net))
        means = {g: [np.mean(cells.get((j, str(g)), [-1e9])) for j in range(len(actions))] for g in set(day["segment"])}
        table = np.array([means[g] for g in day["segment"]])
        add("true_segment_table", *pick(np.where(day["allowed"], table, -np.inf), net))
    within = frame.groupby("action")[["predicted", "true"]].apply(lambda g: g["predicted"].corr(g["true"]))
    rules_value = totals["rules"][0]
    return {
        "policies": {
            k: {"net_value": round(v[0], 1), "contacts": int(v[1]), "vs_rules": round(v[0] / rules_value, 3)}
            for k, v in totals.items()
        },
        "uplift_correlation": round(float(frame["predicted"].corr(frame["true"])), 3),
        "uplift_correlation_within_action": round(float(within.dropna().mean()), 3),
    }


def _segments(
    features: pd.DataFrame, phase: np.ndarray, rule_of: Callable[..., Any], signals: Callable[..., Any]
) -> np.ndarray:
    """Per customer, the playbook situation (its first matching rule) and the predicted phase."""
    records = features.to_dict("records")
    names = [getattr(rule_of(signals(r)), "name", "no rule") for r in records]
    return np.array([f"{n}|{p}" for n, p in zip(names, phase, strict=True)], dtype=object)


def _action_scale(frame: pd.DataFrame, actions: list[Any]) -> np.ndarray:
    """Per action, true mean uplift / mean predicted uplift over the allowed, eligible pairs (1 when unknown)."""
    means = frame.groupby("action")[["predicted", "true"]].mean()
    out = np.ones(len(actions))
    for j, a in enumerate(actions):
        if a.key in means.index and means.loc[a.key, "predicted"] > 1e-6:
            out[j] = means.loc[a.key, "true"] / means.loc[a.key, "predicted"]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
