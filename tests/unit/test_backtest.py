"""Rolling-origin folds: test on a later cutoff, train on earlier ones, purge label windows that overlap."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.backtest import rolling_backtest, rolling_folds, summarise

WEEKS = pd.Series(pd.date_range("2025-01-01", periods=6, freq="7D", tz="UTC").repeat(3))


def test_folds_move_the_origin_back_and_never_train_on_later_rows() -> None:
    folds = rolling_folds(WEEKS, n_folds=3, gap_days=0)
    assert [f.test_time for f in folds] == list(WEEKS.unique()[::-1][:3])
    for fold in folds:
        assert WEEKS[fold.train].max() < fold.valid_time < fold.test_time
        assert not (fold.train & fold.test).any() and not (fold.valid & fold.test).any()


def test_gap_purges_training_cutoffs_whose_label_window_reaches_the_test_cutoff() -> None:
    folds = rolling_folds(WEEKS, n_folds=3, gap_days=14)
    for fold in folds:
        assert fold.test_time - fold.valid_time >= pd.Timedelta(days=14)
    assert rolling_folds(WEEKS, n_folds=3, gap_days=60) == []


class _Mean:
    def fit(self, y: pd.Series) -> _Mean:
        self.p = float(y.mean())
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X), self.p)


def test_backtest_falls_back_to_no_gap_and_reports_spread() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=len(WEEKS))})
    y = pd.Series(np.tile([0, 1, 1], 6))
    table = rolling_backtest(
        lambda Xt, yt, Xv, yv: _Mean().fit(yt),
        lambda yt, p: {"mean_p": float(np.mean(p))},
        X,
        y,
        WEEKS,
        n_folds=3,
        gap_days=60,  # infeasible on 6 weeks: falls back to 0 and says so
    )
    assert len(table) == 3 and (table["gap_days"] == 0).all()
    summary = summarise(table, ["mean_p"])
    assert summary["backtest_folds"] == 3 and summary["backtest_gap_days"] == 0
    assert summary["backtest_mean_p_min"] <= summary["backtest_mean_p_mean"] <= summary["backtest_mean_p_max"]
