"""LightGBM models for the four tasks, with the conventions serving relies on.

Serving calls `Booster.predict` on a plain float numpy array in `feature_names_` order, so everything the
booster needs must survive that path: categorical inputs are integer codes (never pandas `category`, whose
mapping lives outside the array) and the booster is cut at the early-stopping iteration before it is logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from journey.catalog import Catalog

if TYPE_CHECKING:
    import lightgbm as lgb

ACTION_COLUMNS: tuple[str, str] = ("action_channel", "action_content")

DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    # Categorical action codes: few levels, so smaller groups than LightGBM's default of 100 are fine.
    "min_data_per_group": 20,
    "cat_smooth": 10.0,
    "max_cat_to_onehot": 16,
    "force_row_wise": True,
    "deterministic": True,
    "verbosity": -1,
}


# Below this many training rows LightGBM runs single-threaded: OpenMP's per-iteration thread sync costs more
# than it saves on small data, and on a busy machine (tests in parallel) it made fits 10-40x slower.
SMALL_DATA_ROWS = 20_000


class LightGBMTask:
    """A LightGBM booster for one task, trained with early stopping on the validation split.

    `class_weight="balanced"` reweights classes (`is_unbalance` for binary, inverse-frequency sample weights
    for multiclass). It is off by default: it buys little ranking quality and costs calibration, and
    decisions multiply probabilities by values and subtract them (uplift), so calibration matters more.
    """

    def __init__(
        self,
        objective: Literal["binary", "multiclass"],
        params: dict[str, Any] | None = None,
        num_boost_round: int = 400,
        early_stopping_rounds: int = 30,
        categorical: Sequence[str] = (),
        class_names: Sequence[str] | None = None,
        seed: int = 0,
        class_weight: Literal["balanced"] | None = None,
    ) -> None:
        self.objective = objective
        self.params = params
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.categorical = categorical
        self.class_names = class_names
        self.seed = seed
        self.class_weight = class_weight

    # ------------------------------------------------------------------ fitting
    def fit(self, X_train: pd.DataFrame, y_train: Any, X_valid: pd.DataFrame, y_valid: Any) -> LightGBMTask:
        import lightgbm as lgb

        self.feature_names_ = [str(c) for c in X_train.columns]
        self._check_categorical(X_train)
        self.classes_ = self._resolve_classes(y_train)
        y_tr = self._encode_labels(y_train)
        y_va = self._encode_labels(y_valid)
        self.params_ = self._lgb_params(y_tr)
        self.params_.setdefault("num_threads", 1 if len(X_train) < SMALL_DATA_ROWS else 0)
        train_set = lgb.Dataset(
            self.input_frame(X_train),
            label=y_tr,
            weight=self._sample_weights(y_tr),
            categorical_feature=list(self.categorical) or "auto",
            free_raw_data=False,
        )
        callbacks: list[Any] = []
        valid_sets: list[lgb.Dataset] = []
        if len(X_valid) > 0:
            valid_sets.append(train_set.create_valid(self.input_frame(X_valid), label=y_va))
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, first_metric_only=True, verbose=False))
        self.evals_result_: dict[str, Any] = {}
        callbacks.append(lgb.record_evaluation(self.evals_result_))
        booster = lgb.train(
            self.params_,
            train_set,
            num_boost_round=self.num_boost_round,
            valid_sets=valid_sets,
            valid_names=["valid"][: len(valid_sets)],
            callbacks=callbacks,
        )
        best = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
        self.best_iteration_ = int(best)
        # Keep exactly the trees serving should use: a loaded model predicts with all of its trees.
        self.booster_ = lgb.Booster(model_str=booster.model_to_string(num_iteration=self.best_iteration_))
        return self

    def _check_categorical(self, X: pd.DataFrame) -> None:
        for name in self.categorical:
            if name not in X.columns:
                raise ValueError(f"categorical column {name!r} is not an input column")
            if not pd.api.types.is_integer_dtype(X[name]):
                raise ValueError(
                    f"categorical column {name!r} must hold integer codes (dtype {X[name].dtype}); "
                    "use encode_actions so a plain numpy predict sees the same codes"
                )

    def _resolve_classes(self, y: Any) -> np.ndarray:
        if self.class_names is not None:
            return np.asarray(list(self.class_names), dtype=object)
        if self.objective == "binary":
            return np.array([0, 1])
        return np.unique(np.asarray(y))

    def _encode_labels(self, y: Any) -> np.ndarray:
        values = np.asarray(y)
        if self.objective == "binary" and self.class_names is None:
            encoded = values.astype(np.float64)
            if not np.isin(encoded, (0.0, 1.0)).all():
                raise ValueError("binary labels must be 0/1 (or pass class_names)")
            return encoded
        index = {label: i for i, label in enumerate(self.classes_.tolist())}
        unknown = sorted({str(v) for v in values.tolist() if v not in index})
        if unknown:
            raise ValueError(f"labels {unknown} are not among classes {list(index)}")
        return np.array([index[v] for v in values.tolist()], dtype=np.float64)

    def _lgb_params(self, y: np.ndarray) -> dict[str, Any]:
        params: dict[str, Any] = {**DEFAULT_PARAMS, "seed": self.seed}
        if self.objective == "binary":
            params.update(objective="binary", metric=["binary_logloss", "auc"])
            if self.class_weight == "balanced":
                params["is_unbalance"] = True
        else:
            params.update(objective="multiclass", num_class=len(self.classes_), metric=["multi_logloss"])
        params.update(self.params or {})
        return params

    def _sample_weights(self, y: np.ndarray) -> np.ndarray | None:
        if self.objective != "multiclass" or self.class_weight != "balanced":
            return None
        counts = np.bincount(y.astype(int), minlength=len(self.classes_)).astype(np.float64)
        per_class = np.where(counts > 0, len(y) / (len(self.classes_) * np.maximum(counts, 1.0)), 0.0)
        return per_class[y.astype(int)]

    def input_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """Float features and int codes, in `feature_names_` order (the order serving will use)."""
        frame = X[self.feature_names_]
        floats = [c for c in self.feature_names_ if c not in set(self.categorical)]
        return frame.astype({c: np.float64 for c in floats})

    # --------------------------------------------------------------- predicting
    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n,) for binary, (n, k) in `classes_` order for multiclass — via the same numpy path as serving."""
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise ValueError(f"missing input columns: {missing}")
        matrix = X[self.feature_names_].to_numpy(dtype=np.float64)
        return np.asarray(self.booster_.predict(matrix))

    def feature_importance(self, kind: Literal["gain", "split"] = "gain") -> pd.Series:
        """Importance per input column, largest first (gain is what the importance plot shows)."""
        values = self.booster_.feature_importance(importance_type=kind)
        return pd.Series(values, index=self.feature_names_, name=kind).sort_values(ascending=False)

    @property
    def booster(self) -> lgb.Booster:
        return self.booster_


def encode_actions(frame: pd.DataFrame, catalog: Catalog) -> pd.DataFrame:
    """Copy of `frame` with `action_channel`/`action_content` as int codes (index in the catalog's name lists).

    The code order is the one recorded in the model metadata (`action_columns`), so serving decodes with the
    same lists; a value outside the catalog is an error rather than a silent new category.
    """
    out = frame.copy()
    lists = {"action_channel": catalog.channel_names, "action_content": catalog.content_names}
    for column, names in lists.items():
        if column not in out.columns:
            raise ValueError(f"missing action column {column!r}")
        values = out[column]
        if pd.api.types.is_integer_dtype(values):
            bad = sorted(set(values[(values < 0) | (values >= len(names))].tolist()))
            if bad:
                raise ValueError(f"{column}: codes {bad} outside 0..{len(names) - 1}")
            out[column] = values.astype(np.int64)
            continue
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted({str(v) for v in values.unique() if v not in index})
        if unknown:
            raise ValueError(f"{column}: {unknown} not in the catalog {list(names)}")
        out[column] = values.map(index).astype(np.int64)
    return out
