"""Rolling-origin backtest: how stable is a task's test metric from one cutoff to the next?

One out-of-time split gives one number; a model that looks good on the last week may be lucky. Each fold
tests on one later cutoff and trains on strictly earlier ones (the last of them for early stopping), moving
the origin back one cutoff per fold. Training cutoffs must also end `gap_days` (the label horizon) before the
test cutoff, so no training label window overlaps the test period ("purging"): at deployment a model never
knows labels that are still open. When the data is too short for purged folds, the gap falls back to 0 and
that is recorded (`backtest_gap_days`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MIN_FOLDS = 2


@dataclass(frozen=True)
class Fold:
    test_time: pd.Timestamp
    valid_time: pd.Timestamp
    train: np.ndarray  # boolean masks over the rows
    valid: np.ndarray
    test: np.ndarray
    gap_days: int


def rolling_folds(timestamps: pd.Series, n_folds: int, gap_days: int) -> list[Fold]:
    """Up to `n_folds` folds, newest test cutoff first; each needs >= 2 earlier cutoffs ending `gap_days`
    before its test cutoff (one to validate on, the rest to train on)."""
    ts = pd.to_datetime(timestamps, utc=True).dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
    times = np.unique(ts)
    gap = np.timedelta64(gap_days, "D")
    folds: list[Fold] = []
    for test_time in times[::-1]:
        if len(folds) >= n_folds:
            break
        eligible = times[times + gap <= test_time]
        if gap_days == 0:
            eligible = eligible[eligible < test_time]
        if len(eligible) < 2:
            continue
        valid_time = eligible[-1]
        folds.append(
            Fold(
                pd.Timestamp(test_time, tz="UTC"),
                pd.Timestamp(valid_time, tz="UTC"),
                train=ts < valid_time,
                valid=ts == valid_time,
                test=ts == test_time,
                gap_days=gap_days,
            )
        )
    return folds


def rolling_backtest(
    fit: Callable[[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series], Any],
    evaluate: Callable[[pd.Series, np.ndarray], dict[str, float]],
    X: pd.DataFrame,
    y: pd.Series,
    timestamps: pd.Series,
    n_folds: int,
    gap_days: int,
) -> pd.DataFrame:
    """One row per fold: test/valid cutoff, row counts, gap, and `evaluate(y_test, fit(...).predict_proba)`.

    A fold whose training part has a single label value is skipped (nothing to learn)."""
    folds = rolling_folds(timestamps, n_folds, gap_days)
    if len(folds) < min(MIN_FOLDS, n_folds) and gap_days > 0:
        folds = rolling_folds(timestamps, n_folds, 0)
    rows = []
    X, y = X.reset_index(drop=True), y.reset_index(drop=True)
    for fold in folds:
        if y[fold.train].nunique() < 2 or y[fold.test].empty:
            continue
        model = fit(X[fold.train], y[fold.train], X[fold.valid], y[fold.valid])
        metrics = evaluate(y[fold.test], model.predict_proba(X[fold.test]))
        rows.append(
            {
                "test_cutoff": str(fold.test_time),
                "valid_cutoff": str(fold.valid_time),
                "rows_train": int(fold.train.sum()),
                "rows_valid": int(fold.valid.sum()),
                "rows_test": int(fold.test.sum()),
                "gap_days": fold.gap_days,
                **metrics,
            }
        )
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame, metrics: Sequence[str]) -> dict[str, float]:
    """`backtest_<metric>_{mean,std,min,max}` over folds, plus the fold count and the gap actually used."""
    if table.empty:
        return {"backtest_folds": 0.0}
    out: dict[str, float] = {"backtest_folds": float(len(table)), "backtest_gap_days": float(table["gap_days"].iloc[0])}
    for name in metrics:
        if name not in table:
            continue
        values = table[name].astype(float)
        out.update(
            {
                f"backtest_{name}_mean": float(values.mean()),
                f"backtest_{name}_std": float(values.std(ddof=0)),
                f"backtest_{name}_min": float(values.min()),
                f"backtest_{name}_max": float(values.max()),
            }
        )
    return out
