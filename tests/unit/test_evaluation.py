"""Metrics on hand-made arrays with known values, and plots that render without a display."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from training import evaluation as ev


def test_binary_metrics_known_values() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.1, 0.8, 0.3])
    m = ev.binary_metrics(y, p)
    assert m["roc_auc"] == pytest.approx(1.0)
    assert m["pr_auc"] == pytest.approx(1.0)
    assert m["brier"] == pytest.approx((0.01 + 0.01 + 0.04 + 0.09) / 4)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.9, 0.8, 0.7])))
    assert m["prevalence"] == pytest.approx(0.5)


def test_lift_top_decile() -> None:
    # 20 rows, 4 positives (rate 0.2); the top decile (2 rows) holds 1 positive → rate 0.5 → lift 2.5.
    y = np.zeros(20, dtype=int)
    y[[0, 5, 6, 7]] = 1
    p = np.linspace(1.0, 0.0, 20)
    assert ev.lift_at(y, p, 0.1) == pytest.approx(2.5)
    assert ev.binary_metrics(y, p)["lift_top_decile"] == pytest.approx(2.5)
    assert ev.lift_at(y, -p, 0.1) == pytest.approx(0.0)


def test_binary_metrics_single_class_is_nan_not_error() -> None:
    m = ev.binary_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert np.isnan(m["roc_auc"]) and np.isnan(m["lift_top_decile"])
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.09) / 3)


def test_multiclass_metrics_and_confusion() -> None:
    classes = ["a", "b", "c"]
    y = ["a", "b", "c", "c"]
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.2, 0.2]])
    m = ev.multiclass_metrics(y, proba, classes)
    assert m["accuracy"] == pytest.approx(0.75)
    # F1: a = 2·0.5·1/(1.5) = 2/3, b = 1, c = 2·1·0.5/1.5 = 2/3
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.7, 0.7, 0.2])))
    confusion = ev.confusion_frame(y, proba, classes)
    assert confusion.loc["c", "a"] == 1 and confusion.loc["c", "c"] == 1
    assert int(confusion.to_numpy().sum()) == 4
    # Integer positions work as labels too.
    assert ev.multiclass_metrics([0, 1, 2, 2], proba, classes)["accuracy"] == pytest.approx(0.75)


def test_uplift_by_decile_and_qini_reward_a_correct_ranking() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    true_uplift = rng.uniform(0, 0.4, n)
    treated = rng.random(n) < 0.5
    y = (rng.random(n) < 0.1 + treated * true_uplift).astype(int)
    table = ev.uplift_by_decile(true_uplift, treated, y, n_bins=5)
    assert list(table["bin"]) == [1, 2, 3, 4, 5]
    assert table["observed_uplift"].iloc[0] > table["observed_uplift"].iloc[-1] + 0.15
    assert ev.qini_coefficient(true_uplift, treated, y) > 0
    assert ev.qini_coefficient(-true_uplift, treated, y) < 0
    assert ev.uplift_by_decile([], [], []).empty


def test_plots_return_figures() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    scores = {"model": np.clip(y * 0.5 + rng.random(200) * 0.5, 0, 1), "baseline": rng.random(200)}
    figures = [
        ev.plot_roc(y, scores),
        ev.plot_calibration(y, scores),
        ev.plot_lift_gain(y, scores),
        ev.plot_importance(pd.Series({"a": 3.0, "b": 1.0}, name="gain")),
        ev.plot_confusion(pd.DataFrame([[3, 1], [0, 4]], index=["x", "y"], columns=["x", "y"])),
        ev.plot_uplift_deciles(ev.uplift_by_decile(rng.random(200), y == 1, rng.integers(0, 2, 200))),
    ]
    for fig in figures:
        assert isinstance(fig, Figure)
        fig.canvas.draw()  # renders with the Agg canvas, no display needed
