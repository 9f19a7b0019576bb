"""Multi-arm uplift learners for randomized (or logged, with known propensities) treatment data.

The response model parcours registers is an S-learner: one LightGBM over features + action codes. With small
effects (a few points of a 10–20% base rate) its trees may barely split on the action, and the difference of
two predictions then ranks customers by noise. Two alternatives here, both with LightGBM:

- `TLearner`: one outcome model per arm; uplift = mu_a(x) − mu_0(x).
- `DRLearner` (Kennedy's DR-learner): cross-fitted outcome models give, for every row, the doubly robust
  pseudo-outcome psi_a = mu_a − mu_0 + 1[A=a](Y − mu_a)/e_a − 1[A=0](Y − mu_0)/e_0 (e = the logged
  propensity); tau_a(x) is a regression of psi_a on x. Out-of-fold nuisances keep a row's own outcome out of
  the model that corrects it (honest cross-fitting).

`ArmPredictor` exposes either learner through the S-learner interface (`predict` on features + action codes),
so `journey.scoring`, the DecisionEngine and serving use it unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

OUTCOME_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbosity": -1,
}
EFFECT_PARAMS: dict[str, Any] = {
    **OUTCOME_PARAMS,
    "objective": "regression",
    "num_leaves": 7,
    "min_data_in_leaf": 400,
    "learning_rate": 0.03,
}


def _boost(
    X: np.ndarray, y: np.ndarray, params: Mapping[str, Any], seed: int, rounds: int = 400, stop: int = 30
) -> Any:
    """LightGBM with early stopping on a seeded 20% hold-out of the rows it is given."""
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    valid = rng.random(len(y)) < 0.2
    if valid.all() or not valid.any():
        valid = np.zeros(len(y), dtype=bool)
    train = lgb.Dataset(X[~valid], y[~valid])
    sets = [lgb.Dataset(X[valid], y[valid], reference=train)] if valid.any() else []
    callbacks: list[Any] = [lgb.early_stopping(stop, verbose=False)] if sets else []
    booster = lgb.train({**params, "seed": seed}, train, num_boost_round=rounds, valid_sets=sets, callbacks=callbacks)
    return booster


@dataclass
class _Outcomes:
    """mu_a(x) = P(Y=1 | x, arm a), one booster per arm (a constant where an arm has a single label)."""

    models: dict[int, Any] = field(default_factory=dict)
    constants: dict[int, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, X: np.ndarray, arm: np.ndarray, y: np.ndarray, arms: Sequence[int], seed: int) -> _Outcomes:
        out = cls()
        for a in arms:
            rows = arm == a
            labels = y[rows]
            if rows.sum() < 50 or labels.min() == labels.max():
                out.constants[a] = float(labels.mean()) if rows.any() else float(y.mean())
            else:
                out.models[a] = _boost(X[rows], labels, OUTCOME_PARAMS, seed + 17 * (a + 1))
        return out

    def predict(self, X: np.ndarray, a: int) -> np.ndarray:
        if a in self.models:
            return np.asarray(self.models[a].predict(X), dtype=np.float64)
        return np.full(len(X), self.constants.get(a, np.nan))


def fit_outcomes(X: np.ndarray, arm: np.ndarray, y: np.ndarray, arms: Sequence[int], seed: int) -> _Outcomes:
    """mu_a(x) per arm on the rows given (a constant where an arm has too few rows or a single label)."""
    return _Outcomes.fit(X, arm, y, arms, seed)


def cross_fit_outcomes(
    X: np.ndarray, arm: np.ndarray, y: np.ndarray, arms: Sequence[int], fold: np.ndarray, seed: int
) -> np.ndarray:
    """(n, len(arms)) out-of-fold mu_a(x): each row predicted by outcome models fitted without its fold, so a
    row's own outcome never enters the model that corrects it (honest cross-fitting)."""
    mu = np.full((len(y), len(arms)), np.nan)
    for f in np.unique(fold):
        held = fold == f
        nuisance = _Outcomes.fit(X[~held], arm[~held], y[~held], arms, seed + 101 * (int(f) + 1))
        for j, a in enumerate(arms):
            mu[held, j] = nuisance.predict(X[held], a)
    return mu


def check_inputs(X: np.ndarray, arm: np.ndarray, y: np.ndarray, pscore: np.ndarray | None) -> None:
    """One entry per row everywhere, and propensities in (0, 1] (naming the first bad row)."""
    _check(X, arm, y, pscore)


def _check(X: np.ndarray, arm: np.ndarray, y: np.ndarray, pscore: np.ndarray | None) -> None:
    n = len(X)
    if len(arm) != n or len(y) != n or (pscore is not None and len(pscore) != n):
        raise ValueError("X, arm, y (and pscore) must have one entry per row")
    if pscore is not None and not np.all((pscore > 0) & (pscore <= 1)):
        bad = int(np.argmax(~((pscore > 0) & (pscore <= 1))))
        raise ValueError(f"pscore must be in (0, 1]; row {bad} has {pscore[bad]!r}")


class TLearner:
    """One outcome model per arm; the effect of arm a is mu_a − mu_control."""

    name = "t-learner"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(
        self,
        X: np.ndarray,
        arm: np.ndarray,
        y: np.ndarray,
        arms: Sequence[int],
        control: int,
        pscore: np.ndarray | None = None,
    ) -> TLearner:
        _check(X, arm, y, pscore)
        self.arms, self.control = list(arms), control
        self.outcomes = _Outcomes.fit(X, arm, y.astype(np.float64), [control, *self.arms], self.seed)
        return self

    def baseline(self, X: np.ndarray) -> np.ndarray:
        return self.outcomes.predict(X, self.control)

    def effect(self, X: np.ndarray) -> np.ndarray:
        """(n, len(arms)) estimated uplift of each arm over control."""
        base = self.baseline(X)
        return np.column_stack([self.outcomes.predict(X, a) - base for a in self.arms])


class DRLearner(TLearner):
    """Kennedy's DR-learner with K-fold cross-fitted outcome models and the logged propensities."""

    name = "dr-learner"

    def __init__(self, seed: int = 0, folds: int = 5) -> None:
        super().__init__(seed)
        if folds < 2:
            raise ValueError("folds must be >= 2 (cross-fitting)")
        self.folds = folds

    def fit(
        self,
        X: np.ndarray,
        arm: np.ndarray,
        y: np.ndarray,
        arms: Sequence[int],
        control: int,
        pscore: np.ndarray | None = None,
    ) -> DRLearner:
        if pscore is None:
            raise ValueError("DRLearner needs the logged propensities (pscore)")
        _check(X, arm, y, pscore)
        self.arms, self.control = list(arms), control
        y = y.astype(np.float64)
        everyone = [control, *self.arms]
        fold = np.random.default_rng(self.seed).integers(0, self.folds, len(y))
        mu = cross_fit_outcomes(X, arm, y, everyone, fold, self.seed)
        self.outcomes = _Outcomes.fit(X, arm, y, everyone, self.seed)  # for baseline() only
        self.effects = []
        for j, a in enumerate(self.arms, start=1):
            psi = (
                mu[:, j] - mu[:, 0] + (arm == a) * (y - mu[:, j]) / pscore - (arm == control) * (y - mu[:, 0]) / pscore
            )
            self.effects.append(_boost(X, psi, EFFECT_PARAMS, self.seed + 7 * j))
        return self

    def effect(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([np.asarray(m.predict(X), dtype=np.float64) for m in self.effects])


class ArmPredictor:
    """An uplift learner behind the S-learner interface: rows are features followed by the two action codes
    (`action_channel`, `action_content`, as in the response model's metadata); `arm_of` maps a code pair to the
    learner's arm. Control rows (and unknown pairs) get the baseline, treated rows baseline + effect."""

    def __init__(self, learner: TLearner, arm_of: Mapping[tuple[int, int], int]) -> None:
        self.learner = learner
        self.arm_of = dict(arm_of)

    def predict(self, data: np.ndarray, **kwargs: Any) -> np.ndarray:
        if kwargs:
            raise TypeError(f"ArmPredictor.predict does not support {sorted(kwargs)}")
        data = np.asarray(data, dtype=np.float64)
        X, codes = data[:, :-2], data[:, -2:].astype(np.int64)
        out = np.clip(self.learner.baseline(X), 0.0, 1.0)
        arms = np.array([self.arm_of.get((int(c), int(k)), self.learner.control) for c, k in codes])
        treated = arms != self.learner.control
        if treated.any():
            effects = self.learner.effect(X[treated])
            column = {a: j for j, a in enumerate(self.learner.arms)}
            picked = effects[np.arange(treated.sum()), [column[a] for a in arms[treated]]]
            out[treated] = out[treated] + picked
        return out


# ------------------------------------------------------------------------------------- the response dataset


class ContentArmPredictor:
    """One uplift learner per content behind the S-learner interface (rows: features + channel/content codes).

    Each content's learner has the "none" channel as control and the content's channels as arms; a control row
    for content k gets k's baseline, a treated row k's baseline + the effect of its channel."""

    def __init__(self, learners: Mapping[int, TLearner], none_channel: int) -> None:
        self.learners = dict(learners)
        self.none_channel = none_channel

    def predict(self, data: np.ndarray, **kwargs: Any) -> np.ndarray:
        if kwargs:
            raise TypeError(f"ContentArmPredictor.predict does not support {sorted(kwargs)}")
        data = np.asarray(data, dtype=np.float64)
        out = np.full(len(data), np.nan)
        content = data[:, -1].astype(np.int64)
        for k, learner in self.learners.items():
            rows = content == k
            if rows.any():
                arm_of = {(a, k): a for a in learner.arms}
                out[rows] = ArmPredictor(learner, arm_of).predict(data[rows])
        return out


def fit_response_learners(
    frame: Any,
    features: Sequence[str],
    channel_codes: Mapping[str, int],
    content_codes: Mapping[str, int],
    contents: Mapping[str, Sequence[str]],
    learner: str = "dr",
    seed: int = 0,
    folds: int = 3,
) -> ContentArmPredictor:
    """Per content k, a multi-arm learner over every logged decision of `frame` (the response dataset: treated
    rows and per-content control rows, columns `decision_id, action_channel, action_content, propensity,
    label` + features). Decisions that sent another content enter k's DR pseudo-outcomes through the outcome
    models only (their indicator terms are zero), so the logged propensities are used as they are."""
    none = channel_codes["none"]
    channel = frame["action_channel"].map(channel_codes).to_numpy()
    content = frame["action_content"].map(content_codes).to_numpy()
    treated = channel != none
    learners: dict[int, TLearner] = {}
    for name, channels in contents.items():
        k = content_codes[name]
        rows = treated | (content == k)  # every treated decision once, plus the control rows labelled for k
        part = frame.loc[rows]
        arm = np.where(treated[rows], np.where(content[rows] == k, channel[rows], -1), none)
        X = part[list(features)].to_numpy(dtype=np.float64)
        y = part["label"].to_numpy(dtype=np.float64)
        arms = [channel_codes[c] for c in channels]
        model: TLearner = DRLearner(seed=seed + k, folds=folds) if learner == "dr" else TLearner(seed=seed + k)
        learners[k] = model.fit(X, arm, y, arms=arms, control=none, pscore=part["propensity"].to_numpy(float))
    return ContentArmPredictor(learners, none)
