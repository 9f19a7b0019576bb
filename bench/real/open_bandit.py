"""Validate the OPE estimators of `training.ope` on real logged bandit data: the Open Bandit Dataset sample.

Protocol (Saito et al., 2021): ZOZOTOWN ran a uniform-random and a Bernoulli-Thompson-sampling (BTS) policy side
by side for a week. From the RANDOM policy's logs we estimate the BTS policy's click rate and compare it with
the click rate BTS actually obtained (the mean click of its own logs, the ground truth).

The estimators need the BTS action distribution at each random-log round. obp re-simulates BTS from ZOZOTOWN's
prior; obp is not a dependency, so we reconstruct it from what BTS itself logged: BTS is context-free and
re-samples its posterior every few minutes, so the probability it gave to item i at position p around time t is
read off the nearest-in-time BTS row that showed i at p (its `propensity_score`), if that row is fresh (within
`freshness_hours`); items without a fresh row share the remaining mass in proportion to their last known value.
Only BTS *actions and propensities* are used, never its clicks. The choice of `freshness_hours` is checked by a
leave-one-out fit to the BTS logged propensities (`reconstruction_check`). See docs/policy-evaluation.md.

    python bench/real/open_bandit.py --out obd.json [--mlflow] [--campaigns all men women] [--data-dir DIR]

Nothing runs at import; MLflow is imported only with `--mlflow`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as `python bench/real/open_bandit.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.real._common import DEFAULT_DATA_DIR as SHARED_DATA_DIR
from bench.real._common import write_json
from training.ope import Estimate, evaluate_policy, on_policy

FOLDER = "open-bandit-dataset"
DEFAULT_DATA_DIR = SHARED_DATA_DIR / FOLDER
CAMPAIGNS: tuple[str, ...] = ("all", "men", "women")
N_POSITIONS = 3
FRESHNESS_HOURS = 0.5  # chosen by the leave-one-out check on BTS propensities (never on clicks)
Q_PRIOR_STRENGTH = 50.0  # pseudo-impressions shrinking each (item, position) click rate to its position's rate
Q_FOLDS = 5
_LOG_COLUMNS = ["timestamp", "item_id", "position", "click", "propensity_score"]


# ---------------------------------------------------------------------------------------------- data
def logs_path(data_dir: Path, policy: str, campaign: str) -> Path:
    return data_dir / policy / campaign / f"{campaign}.csv.gz"


def missing_reason(data_dir: Path, campaigns: Sequence[str]) -> str | None:
    """Why the validation cannot run (None when every needed file is there)."""
    if not data_dir.is_dir():
        return f"Open Bandit Dataset sample not found: {data_dir} (read from ../shared/data next to the project root)"
    missing = [str(logs_path(data_dir, p, c)) for c in campaigns for p in ("random", "bts")]
    missing = [m for m in missing if not Path(m).exists()]
    return f"Open Bandit Dataset sample not found: {', '.join(missing)}" if missing else None


def load_logs(data_dir: Path, policy: str, campaign: str) -> pd.DataFrame:
    """One policy's logs, sorted by time: t (hours since epoch), item, position (0-based), reward, propensity."""
    raw = pd.read_csv(logs_path(data_dir, policy, campaign), usecols=_LOG_COLUMNS)
    seconds = pd.to_datetime(raw["timestamp"], utc=True).astype("int64").to_numpy() / 1e9
    frame = pd.DataFrame(
        {
            "t": seconds / 3600.0,
            "item": raw["item_id"].to_numpy(dtype=np.int64),
            "position": raw["position"].to_numpy(dtype=np.int64) - 1,
            "reward": raw["click"].to_numpy(dtype=np.float64),
            "propensity": raw["propensity_score"].to_numpy(dtype=np.float64),
        }
    )
    return frame.sort_values("t", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- BTS action distribution
def _nearest(
    times: np.ndarray, values: np.ndarray, query: np.ndarray, own: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Value and age (hours) of the nearest row in `times` (sorted) to each query; `own[j]` is the index of the
    query's own row in `times` (left out, for leave-one-out) or -1."""
    k = np.searchsorted(times, query, side="left")
    last = len(times) - 1
    left = k - 1
    right = np.where(own >= 0, own + 1, k)
    d_left = np.where(left >= 0, query - times[np.clip(left, 0, last)], np.inf)
    d_right = np.where(right <= last, times[np.clip(right, 0, last)] - query, np.inf)
    pick = np.where(d_left <= d_right, np.clip(left, 0, last), np.clip(right, 0, last))
    age = np.minimum(d_left, d_right)
    return np.where(np.isfinite(age), values[pick], 0.0), age


def bts_action_distribution(
    bts: pd.DataFrame,
    query_t: np.ndarray,
    query_position: np.ndarray,
    n_items: int,
    freshness_hours: float = FRESHNESS_HOURS,
    leave_one_out: bool = False,
) -> np.ndarray:
    """(n_query, n_items) reconstructed BTS probabilities of each item at the query's position and time.

    With `leave_one_out`, the queries are the BTS rows themselves and each one's own row is left out.
    """
    bts = bts.reset_index(drop=True)  # leave-one-out addresses rows by position
    n = len(query_t)
    value = np.zeros((n, n_items))
    age = np.full((n, n_items), np.inf)
    for _, cell in bts.groupby(["item", "position"], sort=False):
        item, position = int(cell["item"].to_numpy()[0]), int(cell["position"].to_numpy()[0])
        rows = np.flatnonzero(query_position == position)
        own = np.full(len(rows), -1)
        if leave_one_out:
            own_index = np.full(len(bts), -1)
            own_index[cell.index.to_numpy()] = np.arange(len(cell))
            own = own_index[rows]
        v, a = _nearest(cell["t"].to_numpy(), cell["propensity"].to_numpy(), query_t[rows], own)
        value[rows, item], age[rows, item] = v, a
    return _fill_stale(value, age <= freshness_hours)


def _fill_stale(value: np.ndarray, fresh: np.ndarray) -> np.ndarray:
    """Keep fresh probabilities (renormalised only if they exceed 1); stale items share the rest of the mass."""
    fresh_value = np.where(fresh, value, 0.0)
    stale_value = np.where(fresh, 0.0, value)
    fresh_sum = fresh_value.sum(axis=1, keepdims=True)
    stale_sum = stale_value.sum(axis=1, keepdims=True)
    rest = np.clip(1.0 - fresh_sum, 0.0, None)
    proba = fresh_value / np.maximum(fresh_sum, 1.0) + stale_value * rest / np.where(stale_sum > 0, stale_sum, 1.0)
    total = proba.sum(axis=1, keepdims=True)
    return proba / np.where(total > 0, total, 1.0)


def reconstruction_check(bts: pd.DataFrame, n_items: int, freshness_hours: float = FRESHNESS_HOURS) -> dict[str, float]:
    """How well the reconstruction predicts each BTS row's logged propensity with that row left out (no clicks
    involved), against the time-averaged frequency of each (item, position) as the naive alternative."""
    items, positions = bts["item"].to_numpy(), bts["position"].to_numpy()
    logged = bts["propensity"].to_numpy()
    proba = bts_action_distribution(bts, bts["t"].to_numpy(), positions, n_items, freshness_hours, leave_one_out=True)
    predicted = proba[np.arange(len(bts)), items]
    counts = np.zeros((n_items, N_POSITIONS))
    np.add.at(counts, (items, positions), 1.0)
    static = (counts[items, positions] - 1.0) / (counts.sum(axis=0)[positions] - 1.0)
    return {
        "freshness_hours": freshness_hours,
        "loo_mae": float(np.mean(np.abs(predicted - logged))),
        "loo_median_ratio": float(np.median(predicted / logged)),
        "loo_mean_log_proba": float(np.mean(np.log(np.maximum(predicted, 1e-9)))),
        "static_frequency_mae": float(np.mean(np.abs(static - logged))),
        "static_frequency_mean_log_proba": float(np.mean(np.log(np.maximum(static, 1e-9)))),
    }


# ---------------------------------------------------------------------------------------------- reward model
def _cell_rates(train: pd.DataFrame, n_items: int, prior_strength: float) -> np.ndarray:
    """(n_items, positions) click rates shrunk towards each position's rate (clicks are rare: ~40 per 10k)."""
    clicks = np.zeros((n_items, N_POSITIONS))
    shows = np.zeros((n_items, N_POSITIONS))
    cells = (train["item"].to_numpy(), train["position"].to_numpy())
    np.add.at(clicks, cells, train["reward"].to_numpy())
    np.add.at(shows, cells, 1.0)
    position_rate = clicks.sum(axis=0) / np.maximum(shows.sum(axis=0), 1.0)
    return (clicks + prior_strength * position_rate) / (shows + prior_strength)


def cross_fitted_q_hat(
    logs: pd.DataFrame, n_items: int, folds: int = Q_FOLDS, prior_strength: float = Q_PRIOR_STRENGTH, seed: int = 0
) -> np.ndarray:
    """(n, n_items) q̂(item, row's position), each row predicted by a model fitted on the other folds, so DR's
    correction term is not fed the row's own click."""
    fold = np.random.default_rng(seed).permutation(len(logs)) % folds
    positions = logs["position"].to_numpy()
    q_hat = np.zeros((len(logs), n_items))
    for k in range(folds):
        rates = _cell_rates(logs[fold != k], n_items, prior_strength)
        rows = np.flatnonzero(fold == k)
        q_hat[rows] = rates[:, positions[rows]].T
    return q_hat


# ---------------------------------------------------------------------------------------------- validation
def _relative_error(estimate: Estimate, truth: float) -> float:
    return float(abs(estimate.value - truth) / truth) if truth else float("nan")


def _reverse_check(random: pd.DataFrame, bts: pd.DataFrame, n_items: int, n_bootstrap: int, seed: int) -> dict:
    """The other direction, with EXACT target probabilities: the uniform policy's click rate from the BTS logs."""
    truth = on_policy(random["reward"])
    estimates = evaluate_policy(bts, np.full(len(bts), 1.0 / n_items), n_bootstrap=n_bootstrap, seed=seed)
    out: dict[str, Any] = {"onpolicy_ctr": truth.as_dict()}
    for name, estimate in estimates.items():
        out[name] = estimate.as_dict()
        out[f"relative_error_{name}"] = _relative_error(estimate, truth.value)
    return out


def validate_campaign(
    data_dir: Path, campaign: str, n_bootstrap: int = 1000, seed: int = 0, freshness_hours: float = FRESHNESS_HOURS
) -> dict[str, Any]:
    """BTS click rate estimated from the random logs vs BTS's own click rate, for one campaign."""
    random = load_logs(data_dir, "random", campaign)
    bts = load_logs(data_dir, "bts", campaign)
    n_items = int(max(random["item"].max(), bts["item"].max())) + 1
    proba = bts_action_distribution(
        bts, random["t"].to_numpy(), random["position"].to_numpy(), n_items, freshness_hours
    )
    rows = np.arange(len(random))
    logged_items = random["item"].to_numpy()
    q_hat = cross_fitted_q_hat(random, n_items, seed=seed)
    estimates = evaluate_policy(
        random,
        target_proba=proba[rows, logged_items],
        q_hat_logged=q_hat[rows, logged_items],
        expected_reward_target=(proba * q_hat).sum(axis=1),
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    truth = on_policy(bts["reward"])
    naive = on_policy(random["reward"])  # what an estimator that ignores the target policy would say
    result: dict[str, Any] = {
        "n_items": n_items,
        "n_random": len(random),
        "n_bts": len(bts),
        "onpolicy_ctr": truth.as_dict(),
        "naive_random_ctr": naive.as_dict(),
        "relative_error_naive": _relative_error(naive, truth.value),
    }
    for name, estimate in estimates.items():
        result[name] = estimate.as_dict()
        result[f"relative_error_{name}"] = _relative_error(estimate, truth.value)
        result[f"covers_truth_{name}"] = bool(estimate.ci_low <= truth.value <= estimate.ci_high)
    result["target_proba_mass_check"] = float(np.mean(proba[rows, logged_items]) * n_items)  # ≈ 1 under uniform
    result["reconstruction"] = reconstruction_check(bts, n_items, freshness_hours)
    result["reverse_random_from_bts"] = _reverse_check(random, bts, n_items, n_bootstrap, seed)
    return result


def run(
    data_dir: Path = DEFAULT_DATA_DIR, campaigns: Sequence[str] = CAMPAIGNS, n_bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """All campaigns, or {"skipped": reason} when the sample is absent."""
    reason = missing_reason(data_dir, campaigns)
    if reason:
        return {"skipped": reason}
    return {
        "dataset": "Open Bandit Dataset small sample (obp 0.4.1), random -> Bernoulli TS",
        "data_dir": str(data_dir),
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "freshness_hours": FRESHNESS_HOURS,
        "q_prior_strength": Q_PRIOR_STRENGTH,
        "campaigns": {c: validate_campaign(data_dir, c, n_bootstrap, seed) for c in campaigns},
    }


# ---------------------------------------------------------------------------------------------- MLflow + CLI
def _flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for campaign, figures in result.get("campaigns", {}).items():
        for key, value in figures.items():
            if isinstance(value, dict) and "value" in value:
                for part in ("value", "ci_low", "ci_high"):
                    metrics[f"{campaign}.{key}.{part}"] = float(value[part])
            elif key.startswith("relative_error_") and value == value:
                metrics[f"{campaign}.{key}"] = float(value)
    return metrics


def log_to_mlflow(result: dict[str, Any]) -> str:
    """One MLflow run with every figure as a metric and the full JSON as an artifact; returns the run id.

    Like the other real-data benchmarks, runs go to the `<experiment>-benchmarks` experiment of the workspace
    store (PARCOURS_HOME), never mixed with training runs.
    """
    from journey.settings import Settings
    from training.tracking import configure_mlflow

    base = Settings()
    configure_mlflow(base.model_copy(update={"experiment_name": f"{base.experiment_name}-benchmarks"}))
    import mlflow

    with mlflow.start_run(run_name="ope-open-bandit") as active:
        mlflow.set_tags({"parcours.bench": "open_bandit", "parcours.kind": "ope-validation"})
        mlflow.log_params({key: result[key] for key in ("n_bootstrap", "seed", "freshness_hours", "q_prior_strength")})
        mlflow.log_metrics(_flat_metrics(result))
        mlflow.log_dict(result, "open_bandit_ope.json")
        return str(active.info.run_id)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write the figures to")
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA_DIR, help=f"default: {SHARED_DATA_DIR}")
    parser.add_argument("--campaigns", nargs="+", default=list(CAMPAIGNS), choices=CAMPAIGNS)
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mlflow", action="store_true", help="log the figures to the workspace MLflow store")
    args = parser.parse_args(argv)

    result = run(args.data_dir / FOLDER, args.campaigns, args.n_bootstrap, args.seed)
    if "skipped" in result:
        print(f"open_bandit: skipped — {result['skipped']}", file=sys.stderr)
    elif args.mlflow:
        result["mlflow_run_id"] = log_to_mlflow(result)
    write_json(args.out, result)
    print(json.dumps(_summary(result), indent=2))
    return 0


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """The headline figures for the console: truth, estimates and relative errors per campaign."""
    if "skipped" in result:
        return result
    keys = ("onpolicy_ctr", "naive_random_ctr", "ips", "snips", "dm", "dr")
    return {
        campaign: {
            **{
                k: [round(figures[k]["value"], 5), round(figures[k]["ci_low"], 5), round(figures[k]["ci_high"], 5)]
                for k in keys
                if k in figures
            },
            **{k: round(v, 3) for k, v in figures.items() if k.startswith("relative_error_")},
        }
        for campaign, figures in result["campaigns"].items()
    }


if __name__ == "__main__":
    sys.exit(main())
