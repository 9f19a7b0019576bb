"""Simple baselines every LightGBM model is reported beside, so a metric always comes with a yardstick.

- `LogisticBaseline`: what a careful analyst would fit first (median imputation, standardisation, one-hot
  action codes, L2 logistic regression).
- `RecencyFrequencyBaseline`: the classic marketing answer to "will they buy soon?" — purchase probability
  as a function of recency, frequency and tenure only (a binned, smoothed empirical estimate in the spirit of
  BG/NBD: recent and frequent buyers are alive and buy again).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def _numeric(X: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    return X[list(columns)].astype(np.float64)


class LogisticBaseline:
    """Standardised L2 logistic regression with median imputation; categorical codes are one-hot encoded."""

    def __init__(
        self,
        categorical: Sequence[str] = (),
        class_names: Sequence[Any] | None = None,
        C: float = 1.0,
        max_iter: int = 1000,
    ) -> None:
        self.categorical = categorical
        self.class_names = class_names
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: pd.DataFrame, y: Any) -> LogisticBaseline:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline, make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        self.feature_names_ = [str(c) for c in X.columns]
        self.numeric_ = [c for c in self.feature_names_ if c not in set(self.categorical)]
        numeric = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler())
        columns = ColumnTransformer(
            [
                ("numeric", numeric, self.numeric_),
                ("categorical", OneHotEncoder(handle_unknown="ignore"), list(self.categorical)),
            ]
        )
        self.classes_ = np.asarray(list(self.class_names)) if self.class_names is not None else np.unique(y)
        self.pipeline_ = Pipeline(
            [("columns", columns), ("model", LogisticRegression(C=self.C, max_iter=self.max_iter))]
        )
        self.pipeline_.fit(self._frame(X), self._targets(y))
        return self

    def _frame(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[self.feature_names_].astype({c: np.float64 for c in self.numeric_})

    def _targets(self, y: Any) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        return np.array([index[v] for v in np.asarray(y).tolist()], dtype=np.int64)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n,) P(class 1) for two classes, else (n, k) in `classes_` order (unseen classes get 0)."""
        raw = self.pipeline_.predict_proba(self._frame(X))
        full = np.zeros((len(X), len(self.classes_)))
        full[:, self.pipeline_.named_steps["model"].classes_] = raw
        return full[:, 1] if len(self.classes_) == 2 else full


# Column-name patterns, tried in order, for the features the RF baseline needs.
_RF_PATTERNS: dict[str, tuple[str, ...]] = {
    "recency": (r"days_since_last_purchase", r"purchase.*recency|recency.*purchase", r"^recency", r"recency"),
    "frequency": (
        r"^purchases_total$",
        r"^(n|num|count)_purchases?(_\d+d)?$",
        r"^purchases_365d$",
        r"purchases?_(count|n)",
        r"purchase.*frequency|frequency.*purchase",
        r"^frequency",
        r"frequency",
    ),
    "tenure": (r"^tenure", r"tenure", r"days_since_signup", r"days_since_first"),
}


def find_rf_columns(columns: Sequence[str]) -> dict[str, str | None]:
    """Best-guess recency / frequency / tenure columns by name (None when a role has no match)."""
    found: dict[str, str | None] = {}
    for role, patterns in _RF_PATTERNS.items():
        found[role] = next(
            (c for pattern in patterns for c in columns if re.search(pattern, c, flags=re.IGNORECASE)), None
        )
    return found


class RecencyFrequencyBaseline:
    """P(purchase within the horizon) from recency × frequency (× tenure) cells, fitted on train.

    Each feature is cut at its training quantiles (missing recency — never bought — is its own bin). The cell
    rate is shrunk towards its recency × frequency rate, itself shrunk towards the global rate, with
    `prior_strength` pseudo-rows, so sparse cells fall back gracefully instead of predicting 0 or 1.
    """

    def __init__(
        self,
        recency: str | None = None,
        frequency: str | None = None,
        tenure: str | None = None,
        n_bins: int = 5,
        prior_strength: float = 20.0,
    ) -> None:
        self.recency = recency
        self.frequency = frequency
        self.tenure = tenure
        self.n_bins = n_bins
        self.prior_strength = prior_strength

    def fit(self, X: pd.DataFrame, y: Any) -> RecencyFrequencyBaseline:
        guessed = find_rf_columns([str(c) for c in X.columns])
        self.columns_ = {
            "recency": self.recency or guessed["recency"],
            "frequency": self.frequency or guessed["frequency"],
            "tenure": self.tenure or guessed["tenure"],
        }
        used = {role: col for role, col in self.columns_.items() if col is not None}
        if "recency" not in used and "frequency" not in used:
            raise ValueError(f"no recency or frequency column among {list(X.columns)[:20]}...")
        self.edges_ = {
            role: np.unique(np.nanquantile(X[col].astype(float), np.linspace(0, 1, self.n_bins + 1)[1:-1]))
            if X[col].notna().any()
            else np.array([])
            for role, col in used.items()
        }
        target = np.asarray(y, dtype=np.float64)
        cells = self._cells(X)
        self.global_rate_ = float(target.mean())
        coarse_keys: list[str] = [r for r in ("recency", "frequency") if r in used]
        self.coarse_keys_ = coarse_keys
        self.coarse_ = self._smoothed(cells, target, coarse_keys, pd.Series(self.global_rate_, index=cells.index))
        prior = self._lookup(cells, self.coarse_, coarse_keys, self.global_rate_)
        self.fine_keys_ = list(self.edges_)
        self.fine_ = self._smoothed(cells, target, self.fine_keys_, prior)
        return self

    def _cells(self, X: pd.DataFrame) -> pd.DataFrame:
        """Bin index per role; -1 marks a missing value (e.g. no purchase yet)."""
        cells = {}
        for role, edges in self.edges_.items():
            values = X[self.columns_[role]].astype(float).to_numpy()
            cells[role] = np.where(np.isnan(values), -1, np.digitize(values, edges))
        return pd.DataFrame(cells, index=X.index)

    def _smoothed(self, cells: pd.DataFrame, y: np.ndarray, keys: list[str], prior: pd.Series) -> pd.Series:
        frame = cells[keys].assign(_y=y, _prior=prior.to_numpy())
        stats = frame.groupby(keys)[["_y", "_prior"]].agg(["sum", "count", "mean"])
        positives, n = stats[("_y", "sum")], stats[("_y", "count")]
        return (positives + self.prior_strength * stats[("_prior", "mean")]) / (n + self.prior_strength)

    @staticmethod
    def _lookup(cells: pd.DataFrame, table: pd.Series, keys: list[str], default: Any) -> pd.Series:
        index = pd.MultiIndex.from_frame(cells[keys]) if len(keys) > 1 else pd.Index(cells[keys[0]])
        values = table.reindex(index).to_numpy(dtype=np.float64)
        fallback = default.to_numpy(dtype=np.float64) if isinstance(default, pd.Series) else default
        return pd.Series(np.where(np.isnan(values), fallback, values), index=cells.index)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n,) P(purchase within the horizon)."""
        cells = self._cells(X)
        coarse = self._lookup(cells, self.coarse_, self.coarse_keys_, self.global_rate_)
        return self._lookup(cells, self.fine_, self.fine_keys_, coarse).to_numpy()
