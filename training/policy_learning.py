"""Policy learning: deviate from the best constant action where the training data show a deviation pays.

On a randomized campaign where one action helps almost everyone (Hillstrom: the Mens e-mail, +0.06–0.10 visits
in every segment), the value of a learned policy lies in a few large, well-supported deviations — e-mail only the
customers whose uplift clears the cost, or another e-mail where it does better — and every deviation driven by
noise loses. A DR-learner's effect regression answers a regression question (its pseudo-outcomes are so noisy
that early stopping leaves it at the pooled effect, and a freer one ranks customers by noise). This module
answers the decision question directly, at the catalog's price:

1. `fit`: cross-fitted outcome models mu_a(x) (K folds) and the doubly robust scores
   Gamma_a = mu_a + 1[A=a] (Y − mu_a) / e_a with the logged propensities e; psi_a = Gamma_a − Gamma_control
   is an unbiased per-row estimate of arm a's effect whatever the outcome models' errors;
2. `tune(cost, value)`: a depth-2 *policy tree* (`training.policy_tree`, Athey & Wager) searched on those DR
   scores net of cost, with every leaf scored by the lower confidence bound of its gain over the reference — the
   best constant policy on the training rows: a leaf departs from the reference only when its mean DR gain
   exceeds `kappa` standard errors, both in the split search and in the leaf's decision. Continuous features
   are cut at quartiles (`max_bins` = 4): a coarse policy class is harder to fit to noise.

Why this shape, measured on Hillstrom's development halvings (docs/policy-evaluation.md, "Eighth session"):
- splits searched on the DR scores find the customers who bought both lines (uplift 0.13 against 0.07), which
  splits searched on smooth T-learner effects missed: those effects vary more within a segment than between
  segments;
- choosing depth and kappa by cross-fitted value on the training half, with a z-gate, lost to the fixed rule:
  an honest (nested) cross-fit is too noisy on 32,000 rows to tell a real deviation from none, and a cheaper one
  leaks the held-out fold's outcomes into the outcome models behind the tree. kappa = 1 is the leaf-level guard.

The result (`TunedPolicy`) has the learner interface of `training.uplift` (`baseline`, `effect`, `arms`,
`control`), so `training.uplift.ArmPredictor` puts it behind the response model's interface and the
DecisionEngine decides with it unchanged: the effects it reports are each leaf's decision scores on the uplift
scale, so the engine's rule (largest value × uplift − cost, or no contact) takes exactly the leaf's decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from training.policy_tree import PolicyTree, describe, fit_policy_tree
from training.uplift import check_inputs, cross_fit_outcomes, fit_outcomes

DEPTH = 2  # depth 2 finds an interaction ("bought both lines") that no single split shows
KAPPA = 1.0  # a leaf deviates when its mean DR gain exceeds one standard error
MAX_BINS = 4  # quartile thresholds on continuous features: a coarse policy class


class PolicyChoice(BaseModel):
    """What `tune` decided and how strongly the training rows support it (DR values per row, net of cost).

    `value`, `gain` and `gain_se` are measured on the rows the tree was searched on, so they are optimistic:
    read them as the tree's in-sample support, and judge the policy on held-out rows."""

    model_config = ConfigDict(frozen=True)

    reference: int  # the best constant action on the training rows: −1 = no contact, else arm index
    depth: int
    kappa: float
    value: float  # in-sample DR value of the policy
    constant_value: float  # ... of the best constant policy
    gain: float  # value − constant value
    gain_se: float  # standard error of that paired gain
    splits: list[str]  # the tree's splits, e.g. "root: x3 <= 0.5"
    leaf_actions: list[int]  # per leaf: −1 = no contact, else arm index
    contacted_share: float  # share of training rows the policy contacts
    deviating_share: float  # share of training rows where it departs from the reference action


def _as_vector(x: float | Mapping[int, float], arms: Sequence[int]) -> np.ndarray:
    if isinstance(x, Mapping):
        missing = [a for a in arms if a not in x]
        if missing:
            raise ValueError(f"no entry for arm(s) {missing}")
        return np.array([float(x[a]) for a in arms])
    return np.full(len(arms), float(x))


def net_rewards(effects: np.ndarray, value: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """(n, 1 + A) net reward of each action relative to no contact (column 0, always 0)."""
    return np.column_stack([np.zeros(len(effects)), effects * value - cost])


def lcb_decisions(leaf: np.ndarray, rewards: np.ndarray, reference: int, kappa: float, leaves: int) -> np.ndarray:
    """(leaves, K) decision scores per row: for each leaf and action, the lower confidence bound of its mean gain
    over the `reference` action (the reference scores 0). The leaf's action is the argmax; a leaf with fewer than
    two rows takes the scores of all the rows."""
    everyone = _lcb(rewards, reference, kappa)
    scores = np.tile(everyone, (leaves, 1))
    for k in range(leaves):
        rows = leaf == k
        if rows.sum() >= 2:
            scores[k] = _lcb(rewards[rows], reference, kappa)
    return scores


def _lcb(rewards: np.ndarray, reference: int, kappa: float) -> np.ndarray:
    """Per action: mean gain over the reference − kappa standard errors (0 for the reference itself)."""
    if len(rewards) < 2:
        out = np.full(rewards.shape[1], -1.0)
        out[reference] = 0.0
        return out
    gain = rewards - rewards[:, [reference]]
    bound = gain.mean(axis=0) - kappa * gain.std(axis=0, ddof=1) / np.sqrt(len(gain))
    bound[reference] = 0.0
    return bound


@dataclass(frozen=True)
class LeafPolicy:
    """A fitted policy tree with each leaf's decision scores (per action, column 0 = no contact)."""

    tree: PolicyTree
    scores: np.ndarray  # (4, 1 + A)

    def act(self, X: np.ndarray) -> np.ndarray:
        """−1 = no contact, else the arm index."""
        return self.scores.argmax(axis=1)[self.tree.leaf(X)] - 1

    def uplifts(self, value: np.ndarray, cost: np.ndarray) -> np.ndarray:
        """(4, A) effects on the engine's scale: value × uplift − cost = the action's score minus no contact's,
        so the engine's rule reproduces the leaf's decision."""
        return (self.scores[:, 1:] - self.scores[:, :1] + cost) / value


class PolicyLearner:
    """Cross-fitted DR scores; per price, a depth-2 policy tree with kappa-bounded leaves around the best constant
    (see the module docstring). Learned attributes end in `_`."""

    name = "policy-learner"

    def __init__(
        self,
        seed: int = 0,
        folds: int = 5,
        depth: int = DEPTH,
        kappa: float = KAPPA,
        max_bins: int = MAX_BINS,
        min_leaf_share: float = 0.05,
    ) -> None:
        if folds < 2:
            raise ValueError("folds must be >= 2 (cross-fitting)")
        if depth not in (0, 1, 2):
            raise ValueError(f"depth must be 0, 1 or 2, got {depth}")
        if kappa < 0:
            raise ValueError(f"kappa must be >= 0, got {kappa}")
        if max_bins < 2:
            raise ValueError(f"max_bins must be >= 2, got {max_bins}")
        if not 0 < min_leaf_share < 0.5:
            raise ValueError(f"min_leaf_share must be in (0, 0.5), got {min_leaf_share}")
        self.seed, self.folds, self.depth, self.kappa = seed, folds, depth, float(kappa)
        self.max_bins, self.min_leaf_share = max_bins, min_leaf_share

    def fit(
        self,
        X: np.ndarray,
        arm: np.ndarray,
        y: np.ndarray,
        arms: Sequence[int],
        control: int,
        pscore: np.ndarray,
        feature_names: Sequence[str] | None = None,
    ) -> PolicyLearner:
        """`feature_names` (one per column of X) only label the splits `tune` reports."""
        check_inputs(X, arm, y, pscore)
        if feature_names is not None and len(feature_names) != X.shape[1]:
            raise ValueError(f"feature_names has {len(feature_names)} names for {X.shape[1]} columns")
        self.feature_names_in_ = list(feature_names) if feature_names is not None else None
        self.arms, self.control = list(arms), control
        X, y = np.asarray(X, dtype=np.float64), y.astype(np.float64)
        everyone = [control, *self.arms]
        fold = np.random.default_rng(self.seed).integers(0, self.folds, len(y))
        mu = cross_fit_outcomes(X, arm, y, everyone, fold, self.seed)
        gamma = mu + (arm[:, None] == np.array(everyone)[None, :]) * (y[:, None] - mu) / pscore[:, None]
        self.X_, self.psi_ = X, gamma[:, 1:] - gamma[:, :1]
        self.outcomes_ = fit_outcomes(X, arm, y, everyone, self.seed)  # for baseline() only
        return self

    def tune(self, cost: float | Mapping[int, float], value: float | Mapping[int, float] = 1.0) -> TunedPolicy:
        """The policy for one catalog price: cost (and value) per arm, in the outcome's unit."""
        c, v = _as_vector(cost, self.arms), _as_vector(value, self.arms)
        if (v <= 0).any():
            raise ValueError(f"value must be > 0 for every arm, got {v.tolist()}")
        dr = net_rewards(self.psi_, v, c)
        reference = int(dr.sum(axis=0).argmax())
        min_leaf = max(1, int(self.min_leaf_share * len(dr)))
        tree = fit_policy_tree(self.X_, dr, self.depth, min_leaf, self.max_bins, self.kappa, reference)
        policy = LeafPolicy(tree, lcb_decisions(tree.leaf(self.X_), dr, reference, self.kappa, 4))
        acts = policy.act(self.X_)
        earned = dr[np.arange(len(dr)), acts + 1]  # each row's DR net reward under the policy
        gain = earned - dr[:, reference]
        choice = PolicyChoice(
            reference=reference - 1,
            depth=self.depth,
            kappa=self.kappa,
            value=float(earned.mean()),
            constant_value=float(dr[:, reference].mean()),
            gain=float(gain.mean()),
            gain_se=float(gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else 0.0,
            splits=describe(tree, self.feature_names_in_),
            leaf_actions=[int(a) - 1 for a in policy.scores.argmax(axis=1)],
            contacted_share=float(np.mean(acts >= 0)),
            deviating_share=float(np.mean(acts != reference - 1)),
        )
        return TunedPolicy(self, choice, policy, policy.uplifts(v, c))


class TunedPolicy:
    """A tuned policy behind the uplift-learner interface (`training.uplift.ArmPredictor` wraps it)."""

    name = "policy-learner"

    def __init__(self, learner: PolicyLearner, choice: PolicyChoice, policy: LeafPolicy, uplifts: np.ndarray) -> None:
        self.learner, self.choice, self.policy, self.leaf_uplifts = learner, choice, policy, uplifts
        self.arms, self.control = learner.arms, learner.control

    def baseline(self, X: np.ndarray) -> np.ndarray:
        return self.learner.outcomes_.predict(X, self.control)

    def effect(self, X: np.ndarray) -> np.ndarray:
        """(n, len(arms)) effects whose engine decision is the policy's (see `LeafPolicy.uplifts`)."""
        return self.leaf_uplifts[self.policy.tree.leaf(np.asarray(X, dtype=np.float64))]

    def act(self, X: np.ndarray) -> np.ndarray:
        """The policy's action per row: −1 = no contact, else the arm index."""
        return self.policy.act(np.asarray(X, dtype=np.float64))
