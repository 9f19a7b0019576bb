"""Probability calibration of binary models, kept only when it measurably helps.

A calibrator is a monotone piecewise-linear map `p -> np.interp(p, x, y)`, stored in the model metadata as
`"calibration": {"method": ..., "x": [...], "y": [...]}` and applied by `journey.scoring.LoadedModel.predict`.
A map (not a pickled estimator) keeps serving on the LightGBM flavour and the Booster hot path, and it is
readable in the MLmodel file. Isotonic regression is piecewise linear already (sklearn interpolates between
its thresholds); Platt scaling is tabulated on a logit-spaced grid.

Candidates are fitted on the validation split and kept only if they beat the raw model on the test split in
Brier score without worsening log loss (the issue's rule); raw and calibrated test metrics are both logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from journey.scoring import apply_calibration

Method = Literal["none", "isotonic", "platt"]
_EPS = 1e-4  # calibrated probabilities stay in [eps, 1 - eps]: a hard 0 or 1 makes log loss infinite
_SLOPE = 1e-6
MAX_KNOTS = 200  # metadata stays small; isotonic maps rarely need more
MIN_ROWS = 100  # below this many validation rows (or < 10 of each class) calibration is not attempted


@dataclass(frozen=True)
class CalibrationMap:
    """`np.interp(p, x, y)`: x and y strictly increasing, x from 0 to 1, y inside [eps, 1 - eps]."""

    method: Method
    x: tuple[float, ...]
    y: tuple[float, ...]

    def apply(self, p: Any) -> np.ndarray:
        return apply_calibration(np.asarray(p, dtype=np.float64), self.metadata())

    def metadata(self) -> dict[str, Any]:
        """The exact `calibration` metadata field serving reads."""
        return {"method": self.method, "x": list(self.x), "y": list(self.y)}


@dataclass
class CalibrationChoice:
    """What was tried and kept; `metrics` holds test Brier/log loss per candidate (`<method>_brier`, ...)."""

    chosen: CalibrationMap | None
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    @property
    def method(self) -> str:
        return self.chosen.method if self.chosen is not None else "none"


def _as_map(method: Method, x: np.ndarray, y: np.ndarray) -> CalibrationMap:
    """Sorted, de-duplicated, clipped, at most MAX_KNOTS knots, covering [0, 1]."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    y = np.clip(np.maximum.accumulate(np.asarray(y, dtype=np.float64)), _EPS, 1 - _EPS)
    x, first = np.unique(x, return_index=True)
    y = y[first]
    if len(x) > MAX_KNOTS:
        grid = np.unique(np.quantile(x, np.linspace(0, 1, MAX_KNOTS)))
        x, y = grid, np.interp(grid, x, y)
    if x[0] > 0.0:
        x, y = np.r_[0.0, x], np.r_[y[0], y]
    if x[-1] < 1.0:
        x, y = np.r_[x, 1.0], np.r_[y, y[-1]]
    # A tiny slope makes the map strictly increasing: calibration never ties two scores, so AUC is unchanged.
    y = np.minimum(y, 1 - _EPS - _SLOPE) + _SLOPE * x
    return CalibrationMap(method, tuple(float(v) for v in x), tuple(float(v) for v in y))


def fit_isotonic(p: Any, y: Any) -> CalibrationMap:
    """Isotonic regression of the outcome on the raw score (monotone, non-parametric)."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=_EPS, y_max=1 - _EPS, out_of_bounds="clip")
    iso.fit(np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return _as_map("isotonic", iso.X_thresholds_, iso.y_thresholds_)


def fit_platt(p: Any, y: Any, knots: int = 101) -> CalibrationMap:
    """Logistic regression on logit(p) (Platt scaling), tabulated on a logit-spaced grid."""
    from sklearn.linear_model import LogisticRegression

    p_arr = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    logit = np.log(p_arr / (1 - p_arr)).reshape(-1, 1)
    model = LogisticRegression(C=1e6, max_iter=1000).fit(logit, np.asarray(y, dtype=np.int64))
    grid_logit = np.linspace(-12.0, 12.0, knots)
    grid = 1 / (1 + np.exp(-grid_logit))
    return _as_map("platt", grid, model.predict_proba(grid_logit.reshape(-1, 1))[:, 1])


def _scores(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import brier_score_loss, log_loss

    clipped = np.clip(p, 1e-15, 1 - 1e-15)
    return float(brier_score_loss(y, clipped)), float(log_loss(y, clipped, labels=[0, 1]))


def choose_calibration(p_valid: Any, y_valid: Any, p_test: Any, y_test: Any) -> CalibrationChoice:
    """Fit isotonic and Platt maps on validation; keep the one with the best test Brier if it beats the raw
    score's Brier and does not worsen its log loss, else keep none."""
    pv, yv = np.asarray(p_valid, dtype=np.float64), np.asarray(y_valid, dtype=np.int64)
    pt, yt = np.asarray(p_test, dtype=np.float64), np.asarray(y_test, dtype=np.int64)
    raw_brier, raw_loss = _scores(yt, pt)
    metrics = {"raw_brier": raw_brier, "raw_log_loss": raw_loss}
    positives = int(yv.sum())
    if len(yv) < MIN_ROWS or min(positives, len(yv) - positives) < 10 or len(yt) == 0:
        return CalibrationChoice(None, metrics, f"not attempted: {len(yv)} validation rows, {positives} positive")
    best: tuple[float, CalibrationMap] | None = None
    for fit in (fit_isotonic, fit_platt):
        candidate = fit(pv, yv)
        brier, loss = _scores(yt, candidate.apply(pt))
        metrics.update({f"{candidate.method}_brier": brier, f"{candidate.method}_log_loss": loss})
        if brier < raw_brier and loss <= raw_loss and (best is None or brier < best[0]):
            best = (brier, candidate)
    if best is None:
        return CalibrationChoice(None, metrics, "no calibrator improved test Brier without hurting log loss")
    chosen = best[1]
    gain = raw_brier - best[0]
    return CalibrationChoice(
        chosen, metrics, f"{chosen.method}: test Brier {raw_brier:.5f} -> {best[0]:.5f} (-{gain:.5f})"
    )
