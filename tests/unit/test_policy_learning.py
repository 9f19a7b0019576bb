"""Policy trees and the policy learner on small hand-made data: they deviate from the best constant action only
where the evidence is strong, and the effects they report make the engine's rule take their decisions."""

from __future__ import annotations

import numpy as np
import pytest

from training.policy_learning import LeafPolicy, PolicyLearner, lcb_decisions, net_rewards
from training.policy_tree import Split, bin_codes, bin_edges, fit_policy_tree
from training.uplift import ArmPredictor


def _interaction(n: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Six binary features; acting pays +1 only where x0 = x1 = 1 (a quarter of rows), −0.5 elsewhere."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 2, (n, 6)).astype(float)
    both = (X[:, 0] == 1) & (X[:, 1] == 1)
    act = np.where(both, 1.0, -0.5) + rng.normal(0, noise, n)
    return X, np.column_stack([np.zeros(n), act]), both


def test_bins_send_values_below_a_threshold_left_and_nan_last() -> None:
    X = np.array([[0.0], [1.0], [2.0], [np.nan]])
    edges = bin_edges(X)
    assert edges[0].tolist() == [0.5, 1.5]
    assert bin_codes(X, edges)[:, 0].tolist() == [0, 1, 2, 2]


def test_depth_two_tree_finds_an_interaction_a_single_split_cannot() -> None:
    X, rewards, both = _interaction(4000, noise=0.1)
    one = fit_policy_tree(X, rewards, depth=1, min_leaf=100)
    two = fit_policy_tree(X, rewards, depth=2, min_leaf=100)
    assert two.value > one.value
    assert (two.act(X) == both.astype(int)).all()
    assert {two.root.feature if two.root else -1, *(c.feature for c in two.children if c)} <= {0, 1}
    assert fit_policy_tree(X, rewards, depth=0, min_leaf=100).act(X).max() == 0  # constant: acting loses overall


def test_every_leaf_keeps_min_leaf_rows() -> None:
    X, rewards, _ = _interaction(2000, noise=1.0, seed=1)
    tree = fit_policy_tree(X, rewards, depth=2, min_leaf=300)
    counts = np.bincount(tree.leaf(X), minlength=4)
    assert all(c == 0 or c >= 300 for c in counts)


def test_lower_confidence_bound_keeps_the_reference_on_noise() -> None:
    rng = np.random.default_rng(2)
    X = rng.integers(0, 2, (3000, 8)).astype(float)
    rewards = np.column_stack([np.zeros(3000), rng.normal(0, 1, 3000)])  # acting is worth 0 on average
    greedy = fit_policy_tree(X, rewards, depth=2, min_leaf=150)
    careful = fit_policy_tree(X, rewards, depth=2, min_leaf=150, kappa=3.0, reference=0)
    assert greedy.act(X).mean() > 0.2  # the plain search collects noise in several leaves
    assert not careful.act(X).any()


def test_tree_rejects_bad_arguments() -> None:
    X, rewards, _ = _interaction(100, noise=0.1)
    with pytest.raises(ValueError, match="depth"):
        fit_policy_tree(X, rewards, depth=3, min_leaf=10)
    with pytest.raises(ValueError, match="rows"):
        fit_policy_tree(X[:50], rewards, depth=1, min_leaf=10)


def test_lcb_decisions_deviate_only_with_strong_evidence() -> None:
    leaf = np.repeat([0, 1], 500)
    rng = np.random.default_rng(3)
    gain = np.r_[0.5 + rng.normal(0, 1, 500), 0.02 + rng.normal(0, 1, 500)]  # strong in leaf 0, weak in leaf 1
    rewards = np.column_stack([np.zeros(1000), gain])
    scores = lcb_decisions(leaf, rewards, reference=0, kappa=1.645, leaves=4)
    assert scores.argmax(axis=1)[:2].tolist() == [1, 0]
    assert scores[1, 0] == 0.0 and scores[1, 1] < 0  # the reference scores 0; a weak gain's bound is negative
    everyone = lcb_decisions(np.zeros(1000, dtype=int), rewards, reference=0, kappa=1.645, leaves=1)[0]
    assert scores[2] == pytest.approx(everyone) and scores[3] == pytest.approx(everyone)  # empty leaves


def test_leaf_uplifts_make_the_engine_rule_take_the_leaf_decision() -> None:
    X, rewards, both = _interaction(2000, noise=0.1)
    tree = fit_policy_tree(X, rewards, depth=2, min_leaf=100)
    policy = LeafPolicy(tree, lcb_decisions(tree.leaf(X), rewards, 0, 1.645, 4))
    cost, value = np.array([0.3]), np.array([2.0])
    uplift = policy.uplifts(value, cost)[tree.leaf(X)]
    engine = np.where((uplift * value - cost)[:, 0] > 0, 0, -1)
    assert (engine == policy.act(X)).all() and (policy.act(X) == np.where(both, 0, -1)).all()


def _campaign(n: int, seed: int, heterogeneous: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A randomized campaign (arms 0 = control, 1, 2; propensity 1/3). Arm 1 lifts the visit rate by 0.05, and by
    0.35 where x0 = x1 = 1 when `heterogeneous`; arm 2 by 0.02."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 2, (n, 4)).astype(float)
    arm = rng.integers(0, 3, n)
    segment = (X[:, 0] == 1) & (X[:, 1] == 1) if heterogeneous else np.zeros(n, dtype=bool)
    p = 0.2 + np.where(arm == 1, np.where(segment, 0.35, 0.05), 0.0) + np.where(arm == 2, 0.02, 0.0)
    return X, arm, (rng.random(n) < p).astype(float), segment


@pytest.fixture(scope="module")
def fitted() -> tuple[PolicyLearner, np.ndarray, np.ndarray]:
    X, arm, y, segment = _campaign(9000, seed=4, heterogeneous=True)
    names = ["a", "b", "c", "d"]
    learner = PolicyLearner(seed=0, folds=3)
    learner.fit(X, arm, y, arms=[1, 2], control=0, pscore=np.full(len(X), 1 / 3), feature_names=names)
    return learner, X, segment


def test_policy_learner_contacts_only_the_segment_when_the_price_is_above_the_pooled_effect(fitted) -> None:
    learner, X, segment = fitted
    tuned = learner.tune(cost=0.15)  # pooled effect of arm 1 ≈ 0.125 < 0.15 < 0.35 in the segment
    assert tuned.choice.reference == -1 and tuned.choice.gain > 2 * tuned.choice.gain_se
    assert (tuned.act(X) == np.where(segment, 0, -1)).mean() > 0.99
    assert {s.split(": ")[1].split(" <=")[0] for s in tuned.choice.splits} == {"a", "b"}  # named splits
    assert sorted(tuned.choice.leaf_actions).count(0) == 1  # one leaf (a = b = 1) e-mails
    # behind the response model's interface, the engine's rule (largest uplift − cost, or none) agrees
    predictor = ArmPredictor(tuned, {(1, 1): 1, (1, 2): 2})
    codes = lambda c, k: np.column_stack([X, np.full(len(X), c), np.full(len(X), k)])  # noqa: E731
    control = predictor.predict(codes(0, 0))
    uplift = np.column_stack([predictor.predict(codes(1, k)) - control for k in (1, 2)])
    net = uplift - 0.15
    engine = np.where(net.max(axis=1) > 0, net.argmax(axis=1), -1)
    assert (engine == tuned.act(X)).all()


def test_policy_learner_keeps_the_best_constant_when_everyone_gains(fitted) -> None:
    learner, X, _ = fitted
    tuned = learner.tune(cost=0.0)  # arm 1 is best for everyone: no deviation is worth it
    assert tuned.choice.reference == 0
    assert (tuned.act(X) == 0).all() and tuned.choice.gain == 0.0


def test_policy_learner_never_deviates_for_the_worse_without_heterogeneity() -> None:
    """Every customer has the same true effects (arm 1 +0.05, arm 2 +0.02): a deviation from the reference is
    either a correction of a noisy reference (toward the truly best action) or noise the bound must refuse."""
    X, arm, y, _ = _campaign(6000, seed=5, heterogeneous=False)
    learner = PolicyLearner(seed=1, folds=3).fit(X, arm, y, arms=[1, 2], control=0, pscore=np.full(len(X), 1 / 3))
    for cost in (0.0, 0.04, 0.08):
        tuned = learner.tune(cost=cost)
        true_net = np.array([0.0, 0.05 - cost, 0.02 - cost])  # no contact, arm 1, arm 2
        policy = true_net[tuned.act(X) + 1].mean()
        assert policy >= true_net[tuned.choice.reference + 1] - 1e-12, (cost, tuned.choice)
        assert set(tuned.act(X)) <= {tuned.choice.reference, int(true_net.argmax()) - 1}


def test_policy_learner_rejects_bad_arguments(fitted) -> None:
    learner, X, _ = fitted
    with pytest.raises(ValueError, match="depth"):
        PolicyLearner(depth=3)
    with pytest.raises(ValueError, match="kappa must be"):
        PolicyLearner(kappa=-1.0)
    with pytest.raises(ValueError, match="max_bins"):
        PolicyLearner(max_bins=1)
    with pytest.raises(ValueError, match="value must be > 0"):
        learner.tune(cost=0.1, value=0.0)
    with pytest.raises(ValueError, match="no entry for arm"):
        learner.tune(cost={1: 0.1})
    with pytest.raises(ValueError, match="pscore"):
        PolicyLearner().fit(np.zeros((3, 1)), np.zeros(3), np.zeros(3), [1], 0, np.array([0.5, 0.0, 0.5]))
    with pytest.raises(ValueError, match="feature_names has 1 names for 4 columns"):
        PolicyLearner().fit(X[:9], np.zeros(9), np.zeros(9), [1], 0, np.full(9, 0.5), feature_names=["a"])


def test_net_rewards_put_no_contact_first() -> None:
    out = net_rewards(np.array([[0.1, 0.3]]), np.array([2.0, 1.0]), np.array([0.05, 0.1]))
    assert out[0].tolist() == pytest.approx([0.0, 0.15, 0.2])
    assert Split(0, 0.5).threshold == 0.5


def _second_arm_segment(n: int, seed: int, gain: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Arm 1 lifts everyone by 0.10 (the best constant); arm 2 by 0.10 + `gain` where x0 = x1 = 1, 0.02 elsewhere:
    with gain > 0 the optimal policy sends arm 2 to that quarter of rows, with gain = 0 it is arm 1 for all."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 2, (n, 4)).astype(float)
    arm = rng.integers(0, 3, n)
    segment = (X[:, 0] == 1) & (X[:, 1] == 1)
    p = 0.2 + np.where(arm == 1, 0.10, 0.0) + np.where(arm == 2, np.where(segment, 0.10 + gain, 0.02), 0.0)
    return X, arm, (rng.random(n) < p).astype(float), segment


def test_policy_learner_sends_the_other_arm_where_a_segment_truly_gains() -> None:
    X, arm, y, segment = _second_arm_segment(12000, seed=6, gain=0.08)
    pscore = np.full(len(X), 1 / 3)
    tuned = PolicyLearner(seed=2, folds=3).fit(X, arm, y, arms=[1, 2], control=0, pscore=pscore).tune(cost=0.0)
    assert tuned.choice.reference == 0 and tuned.choice.gain > 0
    acts = tuned.act(X)
    assert (acts[segment] == 1).mean() > 0.95 and (acts[~segment] == 0).mean() > 0.95


@pytest.mark.parametrize("gain", [-0.02, 0.0])
def test_policy_learner_keeps_the_constant_when_the_segment_gains_nothing(gain: float) -> None:
    X, arm, y, _ = _second_arm_segment(12000, seed=7, gain=gain)
    learner = PolicyLearner(seed=3, folds=3).fit(X, arm, y, arms=[1, 2], control=0, pscore=np.full(len(X), 1 / 3))
    tuned = learner.tune(cost=0.0)
    assert tuned.choice.reference == 0 and tuned.choice.deviating_share == 0.0 and tuned.choice.gain == 0.0
    assert (tuned.act(X) == 0).all()


def test_kappa_zero_follows_the_noise_a_bound_ignores() -> None:
    """The same data: kappa = 0 (deviate wherever the in-sample gain is positive) departs from the constant on
    rows where nothing truly differs; the default bound does not."""
    X, arm, y, _ = _second_arm_segment(12000, seed=7, gain=0.0)
    pscore = np.full(len(X), 1 / 3)
    greedy = PolicyLearner(seed=3, folds=3, kappa=0.0).fit(X, arm, y, arms=[1, 2], control=0, pscore=pscore)
    careful = PolicyLearner(seed=3, folds=3).fit(X, arm, y, arms=[1, 2], control=0, pscore=pscore)
    assert greedy.tune(cost=0.0).choice.deviating_share > 0
    assert careful.tune(cost=0.0).choice.deviating_share == 0.0
