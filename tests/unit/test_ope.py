"""Off-policy estimators on a tiny synthetic bandit whose policy values are known exactly.

2 contexts × 3 actions, Bernoulli rewards with known means; the logging policy is uniform (or skewed), the target
policy deterministic. Everything is simulated in one vectorised draw per test, so the file runs in about a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from training.ope import Estimate, direct_method, doubly_robust, evaluate_policy, ips, on_policy, snips

Q = np.array([[0.10, 0.50, 0.30], [0.60, 0.20, 0.40]])  # true mean reward of (context, action)
P_CONTEXT = np.array([0.3, 0.7])
TARGET_ACTION = np.array([1, 0])  # deterministic target: the best action of each context
TRUE_VALUE = float(P_CONTEXT @ Q[np.arange(2), TARGET_ACTION])  # 0.3·0.5 + 0.7·0.6 = 0.57


@dataclass(frozen=True)
class Logs:
    context: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    target_proba: np.ndarray  # target policy's probability of the logged action

    def q_logged(self, q: np.ndarray) -> np.ndarray:
        return q[self.context, self.action]

    def expected_target(self, q: np.ndarray) -> np.ndarray:
        return q[self.context, TARGET_ACTION[self.context]]


def simulate(shape: tuple[int, ...], seed: int, logging: np.ndarray | None = None, noise: bool = True) -> Logs:
    """Rounds of shape `shape` (e.g. (seeds, n)) logged under `logging` (default uniform) probabilities."""
    rng = np.random.default_rng(seed)
    logging = np.full(3, 1 / 3) if logging is None else logging
    context = (rng.random(shape) < P_CONTEXT[1]).astype(np.int64)
    action = np.searchsorted(np.cumsum(logging), rng.random(shape), side="right").clip(0, 2)
    mean = Q[context, action]
    reward = (rng.random(shape) < mean).astype(np.float64) if noise else mean
    target = (action == TARGET_ACTION[context]).astype(np.float64)
    return Logs(context, action, reward, logging[action], target)


# ---------------------------------------------------------------------------------------------- unbiasedness
def test_ips_and_snips_are_unbiased_and_their_intervals_cover_the_true_value() -> None:
    seeds, n = 200, 1000
    logs = simulate((seeds, n), seed=1)
    w = logs.target_proba / logs.pscore
    ips_values = (w * logs.reward).mean(axis=1)
    snips_values = (w * logs.reward).sum(axis=1) / w.sum(axis=1)
    for values in (ips_values, snips_values):
        # the mean over 200 independent data sets sits within 4 of its standard errors of the truth
        assert abs(values.mean() - TRUE_VALUE) < 4 * values.std(ddof=1) / np.sqrt(seeds)

    covered = {"ips": 0, "snips": 0}
    for s in range(seeds):
        args = (logs.reward[s], logs.action[s], logs.pscore[s], logs.target_proba[s])
        for name, estimator in (("ips", ips), ("snips", snips)):
            estimate = estimator(*args)
            covered[name] += estimate.ci_low <= TRUE_VALUE <= estimate.ci_high
    for name, hits in covered.items():
        assert 0.89 <= hits / seeds <= 0.995, (name, hits)


def test_large_sample_estimates_hit_the_true_value() -> None:
    logs = simulate((20_000,), seed=2)
    args = (logs.reward, logs.action, logs.pscore, logs.target_proba)
    for estimate in (ips(*args), snips(*args)):
        assert estimate.ci_low <= TRUE_VALUE <= estimate.ci_high
        assert estimate.n == 20_000
        assert abs(estimate.value - TRUE_VALUE) < 0.02
        # a deterministic target under uniform logging over 3 actions keeps about a third of the rounds
        assert estimate.effective_sample_size == pytest.approx(20_000 / 3, rel=0.05)


def test_ips_equals_the_on_policy_mean_when_target_is_the_logging_policy() -> None:
    logs = simulate((5_000,), seed=3, logging=np.array([0.6, 0.3, 0.1]))
    args = (logs.reward, logs.action, logs.pscore, logs.pscore)
    assert ips(*args).value == pytest.approx(logs.reward.mean(), abs=1e-12)
    assert snips(*args).value == pytest.approx(logs.reward.mean(), abs=1e-12)
    assert ips(*args).effective_sample_size == pytest.approx(5_000)
    assert on_policy(logs.reward).value == pytest.approx(logs.reward.mean())


# ---------------------------------------------------------------------------------------------- DM and DR
def test_dr_is_exact_when_q_hat_is_the_true_mean_reward() -> None:
    """With rewards equal to their means, the residual term vanishes: DR = DM = the sample's target value."""
    logs = simulate((2_000,), seed=4, noise=False)
    dm = logs.expected_target(Q)
    dr = doubly_robust(logs.reward, logs.pscore, logs.target_proba, logs.q_logged(Q), dm)
    assert dr.value == pytest.approx(dm.mean(), abs=1e-12)
    assert direct_method(dm).value == pytest.approx(dm.mean(), abs=1e-12)


def test_dr_with_true_q_hat_beats_ips_on_noisy_rewards() -> None:
    logs = simulate((20_000,), seed=5)
    dr = doubly_robust(logs.reward, logs.pscore, logs.target_proba, logs.q_logged(Q), logs.expected_target(Q))
    plain = ips(logs.reward, logs.action, logs.pscore, logs.target_proba)
    assert dr.ci_low <= TRUE_VALUE <= dr.ci_high
    assert dr.se < plain.se


def test_dr_stays_unbiased_with_a_wrong_reward_model() -> None:
    """Double robustness: with exact propensities, a constant (wrong) q̂ still averages to the truth."""
    seeds, n = 200, 1000
    logs = simulate((seeds, n), seed=6)
    q_wrong = np.full_like(Q, 0.2)
    w = logs.target_proba / logs.pscore
    terms = logs.expected_target(q_wrong) + w * (logs.reward - logs.q_logged(q_wrong))
    values = terms.mean(axis=1)
    assert abs(values.mean() - TRUE_VALUE) < 4 * values.std(ddof=1) / np.sqrt(seeds)
    dm_bias = float(logs.expected_target(q_wrong).mean()) - TRUE_VALUE
    assert abs(dm_bias) > 0.3  # while DM alone is badly off


# ---------------------------------------------------------------------------------------------- guards
@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, np.nan])
def test_invalid_propensity_raises_naming_the_row(bad: float) -> None:
    logs = simulate((20,), seed=7)
    pscore = logs.pscore.copy()
    pscore[7] = bad
    with pytest.raises(ValueError, match=r"row 7\b"):
        ips(logs.reward, logs.action, pscore, logs.target_proba)
    with pytest.raises(ValueError, match=r"row 7\b"):
        snips(logs.reward, logs.action, pscore, logs.target_proba)


def test_evaluate_policy_names_the_frame_row_of_an_invalid_propensity() -> None:
    logs = simulate((20,), seed=8)
    frame = pd.DataFrame({"reward": logs.reward, "propensity": logs.pscore}, index=[f"d-{i}" for i in range(20)])
    frame.loc["d-12", "propensity"] = 0.0
    with pytest.raises(ValueError, match="'d-12'"):
        evaluate_policy(frame, logs.target_proba, n_bootstrap=0)


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="target_proba has 2 rows"):
        ips([1.0, 0.0, 1.0], [0, 1, 2], [0.5, 0.5, 0.5], [0.5, 0.5])


# ---------------------------------------------------------------------------------------------- evaluate_policy
def _frame(logs: Logs) -> pd.DataFrame:
    return pd.DataFrame({"reward": logs.reward, "propensity": logs.pscore, "action": logs.action})


def test_null_propensities_are_excluded_counted_and_warned_about() -> None:
    logs = simulate((3_000,), seed=9)
    frame = _frame(logs)
    frame.loc[[5, 50, 500], "propensity"] = np.nan
    with pytest.warns(UserWarning, match="3 of 3000 logged rows have a null propensity"):
        result = evaluate_policy(frame, logs.target_proba, n_bootstrap=200)
    keep = frame["propensity"].notna().to_numpy()
    expected = ips(logs.reward[keep], logs.action[keep], logs.pscore[keep], logs.target_proba[keep])
    for estimate in result.values():
        assert estimate.n == 2_997
        assert estimate.n_excluded == 3
    assert result["ips"].value == pytest.approx(expected.value)


def test_evaluate_policy_bootstraps_all_estimators_reproducibly() -> None:
    logs = simulate((5_000,), seed=10)
    q_hat = np.full_like(Q, 0.4)
    q_logged, expected = logs.q_logged(q_hat), logs.expected_target(q_hat)
    first = evaluate_policy(_frame(logs), logs.target_proba, q_logged, expected, n_bootstrap=400, seed=3)
    again = evaluate_policy(_frame(logs), logs.target_proba, q_logged, expected, n_bootstrap=400, seed=3)
    assert set(first) == {"ips", "snips", "dm", "dr"}
    assert first == again
    for name in ("ips", "snips", "dr"):
        estimate: Estimate = first[name]
        assert estimate.ci_method == "bootstrap"
        assert estimate.ci_low < estimate.value < estimate.ci_high
        assert estimate.ci_low <= TRUE_VALUE <= estimate.ci_high
        # the percentile bootstrap agrees with the normal approximation on a large, well-behaved sample
        assert (estimate.ci_high - estimate.ci_low) == pytest.approx(2 * 1.96 * estimate.se, rel=0.15)


def test_normal_intervals_when_bootstrap_is_off() -> None:
    logs = simulate((1_000,), seed=11)
    result = evaluate_policy(_frame(logs), logs.target_proba, n_bootstrap=0)
    assert set(result) == {"ips", "snips"}
    assert all(e.ci_method == "normal" for e in result.values())


def test_q_hat_without_expected_reward_is_rejected() -> None:
    logs = simulate((100,), seed=12)
    with pytest.raises(ValueError, match="expected_reward_target"):
        evaluate_policy(_frame(logs), logs.target_proba, q_hat_logged=logs.q_logged(Q), n_bootstrap=0)
