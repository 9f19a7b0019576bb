"""Calibration maps: fitted on validation, kept only when they help on test, applied by serving's LoadedModel."""

from __future__ import annotations

import numpy as np
import pytest

from journey.scoring import LoadedModel, apply_calibration
from training.calibration import CalibrationMap, choose_calibration, fit_isotonic, fit_platt


def _miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores that are right in rank but twice too confident about positives: the true rate is p / 2."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, 0.8, n)
    y = (rng.random(n) < p / 2).astype(int)
    return p, y


def _calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, 0.8, n)
    return p, (rng.random(n) < p).astype(int)


@pytest.mark.parametrize("fit", [fit_isotonic, fit_platt])
def test_maps_are_monotone_cover_unit_interval_and_stay_inside_it(fit) -> None:
    p, y = _miscalibrated(2000, 0)
    cal = fit(p, y)
    x, v = np.array(cal.x), np.array(cal.y)
    assert x[0] == 0.0 and x[-1] == 1.0
    assert (np.diff(x) > 0).all() and (np.diff(v) > 0).all()  # strictly: no ties, ranking kept
    assert v.min() > 0.0 and v.max() < 1.0
    assert len(x) <= 202


def test_miscalibrated_scores_get_a_calibrator_that_lowers_test_brier() -> None:
    p_valid, y_valid = _miscalibrated(3000, 1)
    p_test, y_test = _miscalibrated(3000, 2)
    choice = choose_calibration(p_valid, y_valid, p_test, y_test)
    assert choice.chosen is not None
    assert choice.metrics[f"{choice.method}_brier"] < choice.metrics["raw_brier"]
    # the fitted map halves the score, as the data says
    assert choice.chosen.apply(np.array([0.6]))[0] == pytest.approx(0.3, abs=0.06)
    # a monotone map keeps the ranking exactly
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y_test, choice.chosen.apply(p_test)) == pytest.approx(roc_auc_score(y_test, p_test))


def test_well_calibrated_scores_keep_no_calibrator_when_none_helps() -> None:
    p_valid, y_valid = _calibrated(400, 3)
    p_test, y_test = _calibrated(400, 4)
    choice = choose_calibration(p_valid, y_valid, p_test, y_test)
    kept = choice.chosen
    if kept is not None:  # allowed only if it really improved both scores on test
        assert choice.metrics[f"{kept.method}_brier"] < choice.metrics["raw_brier"]
        assert choice.metrics[f"{kept.method}_log_loss"] <= choice.metrics["raw_log_loss"]


def test_too_few_validation_rows_means_no_calibration() -> None:
    p, y = _miscalibrated(50, 5)
    choice = choose_calibration(p, y, p, y)
    assert choice.chosen is None and "not attempted" in choice.reason


class _Constant:
    def __init__(self, out: np.ndarray) -> None:
        self.out = out

    def predict(self, data: np.ndarray, **kwargs: object) -> np.ndarray:
        return self.out


def test_loaded_model_applies_the_metadata_map_to_binary_output_only() -> None:
    calibration = CalibrationMap("isotonic", (0.0, 0.5, 1.0), (0.01, 0.2, 0.4)).metadata()
    binary = LoadedModel(
        "churn", "m", "1", _Constant(np.array([0.0, 0.25, 0.5, 1.0])), ("x",), {"calibration": calibration}
    )
    assert binary.predict(np.zeros((4, 1))) == pytest.approx([0.01, 0.105, 0.2, 0.4])
    raw = LoadedModel("churn", "m", "1", _Constant(np.array([0.25])), ("x",), {})
    assert raw.predict(np.zeros((1, 1))) == pytest.approx([0.25])
    proba = np.array([[0.2, 0.8]])
    multiclass = LoadedModel("phase", "m", "1", _Constant(proba), ("x",), {"calibration": calibration})
    assert multiclass.predict(np.zeros((1, 1))) == pytest.approx(proba)


def test_apply_calibration_clips_outside_the_knots() -> None:
    assert apply_calibration(np.array([-1.0, 2.0]), {"x": [0.1, 0.9], "y": [0.2, 0.3]}) == pytest.approx([0.2, 0.3])
