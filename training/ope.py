"""Off-policy evaluation (OPE): the value of a candidate policy from decisions logged under another policy.

Conventions follow the Open Bandit Pipeline: the logging policy's probability of the logged action is `pscore`
(the decision log's `propensity`), and the candidate policy enters through `target_proba`, the probability it
gives to the *logged* action in each round, or through `expected_reward_target`, its expected reward
`sum_a pi(a|x) q_hat(x, a)` under a reward model. Estimators:

- IPS: mean of w·r with w = target_proba / pscore; unbiased, high variance when w is large.
- SNIPS: sum(w·r) / sum(w); slightly biased, far less variance, and invariant to a constant reward shift.
- DM: mean of the model's expected reward; low variance, biased by the reward model.
- DR: DM plus an IPS correction of the model's residual on the logged action; unbiased if either the
  propensities or the reward model are right.

Single-estimator functions return normal-approximation CIs (closed form, instant). `evaluate_policy` runs all
estimators on a logged frame and replaces those CIs by a seeded, vectorised percentile bootstrap.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

_BOOTSTRAP_CHUNK = 50  # resamples drawn at once: bounds memory at chunk × n × columns floats


@dataclass(frozen=True)
class Estimate:
    """A policy-value estimate with its interval.

    `n` counts the rounds used; `n_excluded` the logged rounds left out (null propensity). `se` is the
    normal-approximation standard error, always reported; `ci_method` says which interval `ci_low/ci_high` is.
    `effective_sample_size` is Kish's (sum w)^2 / sum w^2 of the importance weights (None for DM/on-policy).
    """

    name: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    effective_sample_size: float | None
    se: float = float("nan")
    ci_method: str = "normal"
    n_excluded: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready mapping (for bench outputs and MLflow)."""
        return {
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "se": self.se,
            "ci_method": self.ci_method,
            "n": self.n,
            "n_excluded": self.n_excluded,
            "effective_sample_size": self.effective_sample_size,
        }


# ---------------------------------------------------------------------------------------------- validation
def _as_vector(name: str, values: Any, n: int | None = None) -> np.ndarray:
    """1-D float64 copy; a length mismatch is a caller bug, so fail loudly."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if n is not None and len(array) != n:
        raise ValueError(f"{name} has {len(array)} rows, expected {n}")
    return array


def _check_length(name: str, values: Any, n: int) -> None:
    if len(np.asarray(values)) != n:
        raise ValueError(f"{name} has {len(np.asarray(values))} rows, expected {n}")


def _row(labels: Any, position: int) -> Any:
    """The offending row as the caller knows it: its frame index label, else its position (plain Python)."""
    label = position if labels is None else labels[position]
    return label.item() if isinstance(label, np.generic) else label


def _check_finite(name: str, values: np.ndarray, labels: Any = None) -> None:
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        row = _row(labels, int(bad[0]))
        raise ValueError(f"{name} is not finite at row {row!r} ({bad.size} row(s) in all): {float(values[bad[0]])}")


def _check_pscore(pscore: np.ndarray, labels: Any = None) -> None:
    """Propensities must lie in (0, 1]: a zero makes IPS undefined, above one is a logging bug."""
    bad = np.flatnonzero(~((pscore > 0.0) & (pscore <= 1.0)))
    if bad.size:
        row = _row(labels, int(bad[0]))
        raise ValueError(
            f"propensity must be in (0, 1]; row {row!r} has {float(pscore[bad[0]])} ({bad.size} invalid row(s) in all)"
        )


def _check_proba(name: str, proba: np.ndarray, labels: Any = None) -> None:
    bad = np.flatnonzero(~((proba >= 0.0) & (proba <= 1.0)))
    if bad.size:
        row = _row(labels, int(bad[0]))
        raise ValueError(f"{name} must be in [0, 1]; row {row!r} has {float(proba[bad[0]])}")


def _weights(reward: Any, pscore: Any, target_proba: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated (reward, w) with w = target_proba / pscore."""
    r = _as_vector("reward", reward)
    p = _as_vector("pscore", pscore, len(r))
    t = _as_vector("target_proba", target_proba, len(r))
    _check_finite("reward", r)
    _check_pscore(p)
    _check_proba("target_proba", t)
    return r, t / p


# ---------------------------------------------------------------------------------------------- intervals
def _z(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


def _ess(w: np.ndarray) -> float:
    """Kish effective sample size: how many on-policy rounds the weighted sample is worth."""
    total_sq = float(np.sum(w * w))
    return float(np.sum(w) ** 2 / total_sq) if total_sq > 0 else 0.0


def _mean_estimate(name: str, terms: np.ndarray, alpha: float, ess: float | None) -> Estimate:
    """Estimate whose value is a plain mean of per-round terms (IPS, DM, DR, on-policy)."""
    n = len(terms)
    if n == 0:
        nan = float("nan")
        return Estimate(name, nan, nan, nan, 0, ess)
    value = float(terms.mean())
    se = float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    half = _z(alpha) * se
    return Estimate(name, value, value - half, value + half, n, ess, se=se)


# ---------------------------------------------------------------------------------------------- estimators
def on_policy(reward: Any, alpha: float = 0.05) -> Estimate:
    """The logging policy's own value: the mean reward (the ground truth OPE estimates are checked against)."""
    r = _as_vector("reward", reward)
    _check_finite("reward", r)
    return _mean_estimate("on_policy", r, alpha, None)


def ips(reward: Any, action: Any, pscore: Any, target_proba: Any, alpha: float = 0.05) -> Estimate:
    """Inverse propensity scoring. `action` is accepted for obp-style signatures and only length-checked:
    `target_proba` already is the candidate's probability of the logged action."""
    r, w = _weights(reward, pscore, target_proba)
    _check_length("action", action, len(r))
    return _mean_estimate("ips", w * r, alpha, _ess(w))


def snips(reward: Any, action: Any, pscore: Any, target_proba: Any, alpha: float = 0.05) -> Estimate:
    """Self-normalised IPS; its SE is the delta-method (linearised ratio) one."""
    r, w = _weights(reward, pscore, target_proba)
    _check_length("action", action, len(r))
    n, w_mean = len(r), float(w.mean()) if len(r) else 0.0
    if n == 0 or w_mean == 0.0:
        nan = float("nan")
        return Estimate("snips", nan, nan, nan, n, _ess(w) if n else None)
    value = float(np.sum(w * r) / np.sum(w))
    influence = w * (r - value) / w_mean
    se = float(influence.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    half = _z(alpha) * se
    return Estimate("snips", value, value - half, value + half, n, _ess(w), se=se)


def direct_method(expected_reward_target: Any, alpha: float = 0.05) -> Estimate:
    """Mean over rounds of sum_a pi(a|x) q_hat(x, a). The CI reflects context sampling only, not the
    reward model's own error, so it is optimistic whenever q_hat is biased."""
    dm = _as_vector("expected_reward_target", expected_reward_target)
    _check_finite("expected_reward_target", dm)
    return _mean_estimate("dm", dm, alpha, None)


def doubly_robust(
    reward: Any, pscore: Any, target_proba: Any, q_hat_logged: Any, expected_reward_target: Any, alpha: float = 0.05
) -> Estimate:
    """DM + w·(r − q_hat(x, a_logged)): the weights only have to correct the model's residual."""
    r, w = _weights(reward, pscore, target_proba)
    q = _as_vector("q_hat_logged", q_hat_logged, len(r))
    dm = _as_vector("expected_reward_target", expected_reward_target, len(r))
    _check_finite("q_hat_logged", q)
    _check_finite("expected_reward_target", dm)
    return _mean_estimate("dr", dm + w * (r - q), alpha, _ess(w))


# ---------------------------------------------------------------------------------------------- bootstrap
def _bootstrap(
    terms: dict[str, np.ndarray], w: np.ndarray, r: np.ndarray, n_bootstrap: int, seed: int
) -> dict[str, np.ndarray]:
    """Replicates of every estimator on the same resamples (so their differences are comparable).

    Every estimator is a mean, or a ratio of means, of per-round columns, so each chunk of resampled indices is
    gathered once per column (on one core, faster than resampling counts @ values or one 3-D gather).
    """
    names = list(terms)
    columns = [*(terms[name] for name in names), w * r, w]
    n = len(w)
    rng = np.random.default_rng(seed)
    chunks: list[np.ndarray] = []
    done = 0
    while done < n_bootstrap:
        size = min(_BOOTSTRAP_CHUNK, n_bootstrap - done)
        draws = rng.integers(0, n, size=(size, n))
        chunks.append(np.column_stack([column[draws].mean(axis=1) for column in columns]))  # (size, n_columns)
        done += size
    means = np.concatenate(chunks)
    out = {name: means[:, j] for j, name in enumerate(names)}
    with np.errstate(invalid="ignore", divide="ignore"):
        out["snips"] = means[:, -2] / means[:, -1]
    return out


def _with_percentile_ci(estimate: Estimate, replicates: np.ndarray, alpha: float) -> Estimate:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return estimate
    low, high = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return replace(estimate, ci_low=float(low), ci_high=float(high), ci_method="bootstrap")


# ---------------------------------------------------------------------------------------------- entry point
def _usable_rows(logs: pd.DataFrame) -> np.ndarray:
    """Mask of rows with a propensity; null ones (legacy logs) are excluded loudly, never silently."""
    for column in ("reward", "propensity"):
        if column not in logs.columns:
            raise ValueError(f"logs lack column '{column}' (have {list(logs.columns)})")
    keep = logs["propensity"].notna().to_numpy()
    dropped = int((~keep).sum())
    if dropped:
        warnings.warn(
            f"off-policy evaluation: {dropped} of {len(logs)} logged rows have a null propensity and are excluded",
            UserWarning,
            stacklevel=3,
        )
    return keep


def evaluate_policy(
    logs: pd.DataFrame,
    target_proba: np.ndarray,
    q_hat_logged: np.ndarray | None = None,
    expected_reward_target: np.ndarray | None = None,
    alpha: float = 0.05,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Estimate]:
    """IPS and SNIPS (and DM, DR when the reward-model arrays are given) of a candidate policy on logged rounds.

    `target_proba` (and the optional arrays) are aligned with `logs` row by row, before any exclusion. Rows with
    a null propensity are excluded with a warning; every Estimate carries the count in `n_excluded`. CIs are
    seeded percentile bootstraps (`n_bootstrap` resamples shared by all estimators); `n_bootstrap=0` keeps the
    normal-approximation CIs, whose standard error is always in `se`.
    """
    n_all = len(logs)
    keep = _usable_rows(logs)
    labels = logs.index[keep]
    r = logs["reward"].to_numpy(dtype=np.float64)[keep]
    p = logs["propensity"].to_numpy(dtype=np.float64)[keep]
    t = _as_vector("target_proba", target_proba, n_all)[keep]
    _check_finite("reward", r, labels)
    _check_pscore(p, labels)
    _check_proba("target_proba", t, labels)

    estimates = {
        "ips": ips(r, np.zeros(len(r)), p, t, alpha=alpha),
        "snips": snips(r, np.zeros(len(r)), p, t, alpha=alpha),
    }
    w = t / p
    terms: dict[str, np.ndarray] = {"ips": w * r}
    if expected_reward_target is not None:
        dm = _as_vector("expected_reward_target", expected_reward_target, n_all)[keep]
        _check_finite("expected_reward_target", dm, labels)
        estimates["dm"] = direct_method(dm, alpha=alpha)
        terms["dm"] = dm
        if q_hat_logged is not None:
            q = _as_vector("q_hat_logged", q_hat_logged, n_all)[keep]
            _check_finite("q_hat_logged", q, labels)
            estimates["dr"] = doubly_robust(r, p, t, q, dm, alpha=alpha)
            terms["dr"] = dm + w * (r - q)
    elif q_hat_logged is not None:
        raise ValueError("q_hat_logged needs expected_reward_target (DR = DM + weighted residual)")

    n_excluded = n_all - len(r)
    estimates = {name: replace(e, n_excluded=n_excluded) for name, e in estimates.items()}
    if n_bootstrap > 0 and len(r) > 1:
        replicates = _bootstrap(terms, w, r, n_bootstrap, seed)
        estimates = {name: _with_percentile_ci(e, replicates[name], alpha) for name, e in estimates.items()}
    return estimates
