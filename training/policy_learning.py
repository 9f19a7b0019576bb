"""Policy learning: deviate from the best constant action only where the training data give strong evidence.

On a randomized campaign where one action helps almost everyone (Hillstrom: the Mens e-mail, +0.06–0.10 visits
in every segment), the value of a learned policy lies in a few large, well-supported deviations — e-mail only the
customers whose uplift clears the cost, or another e-mail where it does better — and every deviation driven by
noise loses. A DR-learner's effect regression answers a regression question (its pseudo-outcomes are so noisy
that early stopping leaves it at the pooled effect, and a freer one ranks customers by noise). This module
answers the decision question directly, at the catalog's price:

1. `fit`: cross-fitted outcome models mu_a(x) (K folds), the doubly robust scores
   Gamma_a = mu_a + 1[A=a] (Y − mu_a) / e_a with the logged propensities e, psi_a = Gamma_a − Gamma_control,
   and the cross-fitted T-learner effects mu_a − mu_control (smooth, low-variance, possibly biased);
2. a *policy tree* (`training.policy_tree`, depth ≤ 2) whose splits are searched on the smooth T-learner net
   rewards (so the search does not chase the DR scores' noise), and whose leaves decide on the DR scores: a leaf
   takes action a instead of the reference (the best constant policy on the training rows) only when the lower
   confidence bound (kappa standard errors, one-sided 95% by default) of a's summed DR gain over the reference is
   positive. Depth 0 is the best constant policy itself;
3. `tune(cost, value)`: each depth's policy is fitted on K−1 folds and valued on the held-out fold by the DR
   estimate mean(value × psi_pi − cost_pi); a deeper tree replaces the constant only when its cross-fitted gain
   exceeds z standard errors of the paired gain (z: Bonferroni's one-sided 5% over the candidates). The chosen
   depth is refitted on all training rows.

The result (`TunedPolicy`) has the learner interface of `training.uplift` (`baseline`, `effect`, `arms`,
`control`), so `training.uplift.ArmPredictor` puts it behind the response model's interface and the
DecisionEngine decides with it unchanged: the effects it reports are each leaf's decision scores on the uplift
scale, so the engine's rule (largest value × uplift − cost, or no contact) takes exactly the leaf's decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from pydantic import BaseModel, ConfigDict

from training.policy_tree import PolicyTree, fit_policy_tree
from training.uplift import check_inputs, cross_fit_outcomes, fit_outcomes

DEPTHS: tuple[int, ...] = (1, 2)
ALPHA = 0.05
CONSTANT = "constant"


class PolicyChoice(BaseModel):
    """What `tune` chose and why (cross-fitted DR values on the training rows, net of cost, per row)."""

    model_config = ConfigDict(frozen=True)

    candidate: str  # "constant" or "tree-<depth>"
    reference: int  # the best constant action on the training rows: −1 = no contact, else arm index
    value: float  # cross-fitted DR value of the chosen candidate
    constant_value: float  # ... of the best constant policy
    best_candidate: str  # the candidate with the highest cross-fitted value, before the z-rule
    gain: float  # best value − constant value
    gain_se: float  # standard error of that paired gain
    z: float
    kappa: float
    values: dict[str, float]  # cross-fitted DR value per candidate
    contacted_share: float  # share of training rows the deployed policy contacts
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
    """Cross-fitted DR scores and T-learner effects; policies from the best constant to depth-2 policy trees
    with lower-confidence-bound leaves, one chosen per price by cross-fitted DR value (see the module docstring)."""

    name = "policy-learner"

    def __init__(
        self,
        seed: int = 0,
        folds: int = 5,
        depths: Sequence[int] = DEPTHS,
        kappa: float | None = None,
        z: float | None = None,
        min_leaf_share: float = 0.05,
    ) -> None:
        if folds < 2:
            raise ValueError("folds must be >= 2 (cross-fitting)")
        if any(d not in (1, 2) for d in depths):
            raise ValueError(f"tree depths must be 1 or 2, got {list(depths)}")
        for name, x in (("kappa", kappa), ("z", z)):
            if x is not None and x < 0:
                raise ValueError(f"{name} must be >= 0, got {x}")
        if not 0 < min_leaf_share < 0.5:
            raise ValueError(f"min_leaf_share must be in (0, 0.5), got {min_leaf_share}")
        self.seed, self.folds, self.depths, self.min_leaf_share = seed, folds, sorted(set(depths)), min_leaf_share
        self.kappa = kappa if kappa is not None else NormalDist().inv_cdf(1 - ALPHA)
        # the best of several noisy candidates is optimistic: Bonferroni over the non-constant candidates
        self.z = z if z is not None else NormalDist().inv_cdf(1 - ALPHA / max(1, len(self.depths)))

    def fit(
        self,
        X: np.ndarray,
        arm: np.ndarray,
        y: np.ndarray,
        arms: Sequence[int],
        control: int,
        pscore: np.ndarray,
    ) -> PolicyLearner:
        check_inputs(X, arm, y, pscore)
        self.arms, self.control = list(arms), control
        X, y = np.asarray(X, dtype=np.float64), y.astype(np.float64)
        everyone = [control, *self.arms]
        self.fold = np.random.default_rng(self.seed).integers(0, self.folds, len(y))
        mu = cross_fit_outcomes(X, arm, y, everyone, self.fold, self.seed)
        gamma = mu + (arm[:, None] == np.array(everyone)[None, :]) * (y[:, None] - mu) / pscore[:, None]
        self.X, self.psi, self.t_effects = X, gamma[:, 1:] - gamma[:, :1], mu[:, 1:] - mu[:, :1]
        self.outcomes = fit_outcomes(X, arm, y, everyone, self.seed)  # for baseline() only
        return self

    def _fit_policy(self, rows: np.ndarray, depth: int, value: np.ndarray, cost: np.ndarray) -> LeafPolicy:
        """Splits searched on the T-learner net rewards, leaf decisions by the LCB of the DR gain over the best
        constant action of these rows."""
        X, dr = self.X[rows], net_rewards(self.psi[rows], value, cost)
        smooth = net_rewards(self.t_effects[rows], value, cost)
        tree = fit_policy_tree(X, smooth, depth, max(1, int(self.min_leaf_share * len(X))))
        reference = int(dr.sum(axis=0).argmax())
        return LeafPolicy(tree, lcb_decisions(tree.leaf(X), dr, reference, self.kappa, 4))

    def tune(
        self, cost: float | Mapping[int, float], value: float | Mapping[int, float] = 1.0, candidate: str | None = None
    ) -> TunedPolicy:
        """The policy for one catalog price: cost (and value) per arm, in the outcome's unit. `candidate`
        ("constant", "tree-1", "tree-2") forces a candidate instead of the cross-fitted choice."""
        c, v = _as_vector(cost, self.arms), _as_vector(value, self.arms)
        if (v <= 0).any():
            raise ValueError(f"value must be > 0 for every arm, got {v.tolist()}")
        names = {CONSTANT: 0} | {f"tree-{d}": d for d in self.depths}
        if candidate is not None and candidate not in names:
            raise ValueError(f"unknown candidate {candidate!r}; expected one of {sorted(names)}")
        dr = net_rewards(self.psi, v, c)
        rewards: dict[str, np.ndarray] = {}
        for name, depth in names.items():
            picked = np.empty(len(self.X), dtype=np.int64)
            for f in range(self.folds):
                held = self.fold == f
                if held.any():
                    picked[held] = self._fit_policy(~held, depth, v, c).act(self.X[held])
            rewards[name] = dr[np.arange(len(dr)), picked + 1]
        values = {name: float(r.mean()) for name, r in rewards.items()}
        best = max(values, key=lambda name: values[name])
        diff = rewards[best] - rewards[CONSTANT]
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        gain = values[best] - values[CONSTANT]
        chosen = candidate or (best if gain > self.z * se else CONSTANT)
        everyone = np.ones(len(self.X), dtype=bool)
        policy = self._fit_policy(everyone, names[chosen], v, c)
        reference = int(dr.sum(axis=0).argmax()) - 1
        acts = policy.act(self.X)
        choice = PolicyChoice(
            candidate=chosen,
            reference=reference,
            value=values[chosen],
            constant_value=values[CONSTANT],
            best_candidate=best,
            gain=gain,
            gain_se=se,
            z=self.z,
            kappa=self.kappa,
            values=values,
            contacted_share=float(np.mean(acts >= 0)),
            deviating_share=float(np.mean(acts != reference)),
        )
        return TunedPolicy(self, choice, policy, policy.uplifts(v, c))


class TunedPolicy:
    """A tuned policy behind the uplift-learner interface (`training.uplift.ArmPredictor` wraps it)."""

    name = "policy-learner"

    def __init__(self, learner: PolicyLearner, choice: PolicyChoice, policy: LeafPolicy, uplifts: np.ndarray) -> None:
        self.learner, self.choice, self.policy, self.leaf_uplifts = learner, choice, policy, uplifts
        self.arms, self.control = learner.arms, learner.control

    def baseline(self, X: np.ndarray) -> np.ndarray:
        return self.learner.outcomes.predict(X, self.control)

    def effect(self, X: np.ndarray) -> np.ndarray:
        """(n, len(arms)) effects whose engine decision is the policy's (see `LeafPolicy.uplifts`)."""
        return self.leaf_uplifts[self.policy.tree.leaf(np.asarray(X, dtype=np.float64))]

    def act(self, X: np.ndarray) -> np.ndarray:
        """The policy's action per row: −1 = no contact, else the arm index."""
        return self.policy.act(np.asarray(X, dtype=np.float64))
