"""Policy learning: deviate from the best constant action where the training data show a deviation pays.

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
   takes action a instead of the reference (the best constant policy on the training rows) when a's mean DR gain
   over the reference minus kappa standard errors is positive. kappa = 0 is the expected-value rule (deviate where
   the estimated gain is positive); kappa > 0 asks for a lower confidence bound. Depth 0 is the best constant;
3. `tune(cost, value)`: every (depth, kappa) candidate is fitted on K−1 folds and valued on the held-out fold
   by the DR estimate mean(value × psi_pi − cost_pi), so depth and kappa are chosen from the training rows only
   (nested cross-fitting), not fixed. The best candidate replaces the constant when its cross-fitted gain exceeds
   z standard errors of the paired gain; z = 0 is the pure expected-value choice. The default z = 1.96 keeps the
   gate because the best of several noisy candidates is optimistic, and on Hillstrom (where the Mens e-mail's
   uplift is nearly uniform) gate-less deviations lost on development halvings at the prices with no real
   deviation (docs/policy-evaluation.md). The chosen candidate is refitted on all training rows.

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

from training.policy_tree import PolicyTree, fit_policy_tree
from training.uplift import check_inputs, cross_fit_outcomes, fit_outcomes

DEPTHS: tuple[int, ...] = (1, 2)
KAPPAS: tuple[float, ...] = (0.0, 1.0, 1.645)
Z = 1.96  # one-sided 2.5%: a tree replaces the constant only on strong cross-fitted evidence (see tune)
CONSTANT = "constant"


class PolicyChoice(BaseModel):
    """What `tune` chose and why (cross-fitted DR values on the training rows, net of cost, per row)."""

    model_config = ConfigDict(frozen=True)

    candidate: str  # "constant" or "tree-<depth>" (the full candidate name adds "/kappa=<kappa>")
    reference: int  # the best constant action on the training rows: −1 = no contact, else arm index
    value: float  # cross-fitted DR value of the chosen candidate
    constant_value: float  # ... of the best constant policy
    best_candidate: str  # the candidate with the highest cross-fitted value, before the z-rule
    gain: float  # best value − constant value
    gain_se: float  # standard error of that paired gain
    z: float
    kappa: float  # the chosen candidate's leaf kappa (0 for the constant)
    values: dict[str, float]  # cross-fitted DR value per candidate ("constant", "tree-<depth>/kappa=<kappa>")
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
    with kappa-bounded leaves, depth and kappa chosen per price by cross-fitted DR value (see the module docstring)."""

    name = "policy-learner"

    def __init__(
        self,
        seed: int = 0,
        folds: int = 5,
        depths: Sequence[int] = DEPTHS,
        kappas: Sequence[float] = KAPPAS,
        z: float | None = None,
        min_leaf_share: float = 0.05,
    ) -> None:
        if folds < 2:
            raise ValueError("folds must be >= 2 (cross-fitting)")
        if any(d not in (1, 2) for d in depths):
            raise ValueError(f"tree depths must be 1 or 2, got {list(depths)}")
        if not kappas or any(k < 0 for k in kappas):
            raise ValueError(f"kappas must be a non-empty list of values >= 0, got {list(kappas)}")
        if z is not None and z < 0:
            raise ValueError(f"z must be >= 0, got {z}")
        if not 0 < min_leaf_share < 0.5:
            raise ValueError(f"min_leaf_share must be in (0, 0.5), got {min_leaf_share}")
        self.seed, self.folds, self.depths, self.min_leaf_share = seed, folds, sorted(set(depths)), min_leaf_share
        self.kappas = sorted({float(k) for k in kappas})
        self.z = Z if z is None else z

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

    def _tree(self, rows: np.ndarray, depth: int, value: np.ndarray, cost: np.ndarray) -> PolicyTree:
        """Splits searched on the smooth T-learner net rewards of these rows (depth 0: a single leaf)."""
        smooth = net_rewards(self.t_effects[rows], value, cost)
        return fit_policy_tree(self.X[rows], smooth, depth, max(1, int(self.min_leaf_share * rows.sum())))

    def _leaves(self, rows: np.ndarray, tree: PolicyTree, dr: np.ndarray, kappa: float) -> LeafPolicy:
        """Leaf decisions by the bound (kappa standard errors) of the DR gain over these rows' best constant."""
        reference = int(dr[rows].sum(axis=0).argmax())
        return LeafPolicy(tree, lcb_decisions(tree.leaf(self.X[rows]), dr[rows], reference, kappa, 4))

    def candidates(self) -> dict[str, tuple[int, float]]:
        """Candidate name → (tree depth, leaf kappa); depth 0 is the best constant policy."""
        trees = {f"tree-{d}/kappa={k:g}": (d, k) for d in self.depths for k in self.kappas}
        return {CONSTANT: (0, 0.0)} | trees

    def cross_fitted_rewards(self, value: np.ndarray, cost: np.ndarray) -> dict[str, np.ndarray]:
        """Per candidate, each row's DR net reward under the policy fitted without the row's fold: the rows'
        mean is an honest estimate of the candidate's value, the paired differences give its standard error."""
        dr = net_rewards(self.psi, value, cost)
        picked = {name: np.empty(len(self.X), dtype=np.int64) for name in self.candidates()}
        for f in range(self.folds):
            held = self.fold == f
            if not held.any():
                continue
            trees = {d: self._tree(~held, d, value, cost) for d in {0, *self.depths}}
            for name, (depth, kappa) in self.candidates().items():
                picked[name][held] = self._leaves(~held, trees[depth], dr, kappa).act(self.X[held])
        return {name: dr[np.arange(len(dr)), acts + 1] for name, acts in picked.items()}

    def tune(
        self, cost: float | Mapping[int, float], value: float | Mapping[int, float] = 1.0, candidate: str | None = None
    ) -> TunedPolicy:
        """The policy for one catalog price: cost (and value) per arm, in the outcome's unit. `candidate` (a name
        from `candidates()`) forces a candidate instead of the cross-fitted choice."""
        c, v = _as_vector(cost, self.arms), _as_vector(value, self.arms)
        if (v <= 0).any():
            raise ValueError(f"value must be > 0 for every arm, got {v.tolist()}")
        names = self.candidates()
        if candidate is not None and candidate not in names:
            raise ValueError(f"unknown candidate {candidate!r}; expected one of {sorted(names)}")
        rewards = self.cross_fitted_rewards(v, c)
        values = {name: float(r.mean()) for name, r in rewards.items()}
        best = max(values, key=lambda name: (values[name], name == CONSTANT))  # a tie keeps the constant
        diff = rewards[best] - rewards[CONSTANT]
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        gain = values[best] - values[CONSTANT]
        chosen = candidate or (best if gain > self.z * se else CONSTANT)
        depth, kappa = names[chosen]
        everyone = np.ones(len(self.X), dtype=bool)
        dr = net_rewards(self.psi, v, c)
        policy = self._leaves(everyone, self._tree(everyone, depth, v, c), dr, kappa)
        reference = int(dr.sum(axis=0).argmax()) - 1
        acts = policy.act(self.X)
        choice = PolicyChoice(
            candidate=chosen.split("/")[0],
            reference=reference,
            value=values[chosen],
            constant_value=values[CONSTANT],
            best_candidate=best,
            gain=gain,
            gain_se=se,
            z=self.z,
            kappa=kappa,
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
