"""LightGBMTask: learns, follows scikit-learn conventions, and predicts identically through serving's numpy path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from journey.catalog import load_catalog
from training.baselines import LogisticBaseline, RecencyFrequencyBaseline, find_rf_columns
from training.lgbm import ACTION_COLUMNS, LightGBMTask, encode_actions


def _binary(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"signal": rng.normal(size=n), "noise": rng.normal(size=n)})
    X.loc[rng.random(n) < 0.1, "noise"] = np.nan
    y = (2.0 * X["signal"] + rng.normal(scale=0.5, size=n) > 0).astype(int).to_numpy()
    return X, y


def _with_actions(n: int = 600, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    catalog = load_catalog()
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x": rng.normal(size=n)})
    X["action_channel"] = rng.choice(catalog.channel_names, n)
    X["action_content"] = rng.choice(catalog.content_names, n)
    effect = np.where(X["action_channel"] == "email", 1.5, 0.0) + np.where(X["action_content"] == "none", -1.0, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-(X["x"] + effect)))).astype(int)
    return encode_actions(X, catalog), y


def test_binary_learns_signal_and_fit_returns_self() -> None:
    X, y = _binary()
    model = LightGBMTask("binary", seed=0)
    assert model.fit(X[:300], y[:300], X[300:], y[300:]) is model
    p = model.predict_proba(X[300:])
    assert p.shape == (100,)
    assert roc_auc_score(y[300:], p) > 0.85
    assert model.feature_names_ == ["signal", "noise"]
    assert 1 <= model.best_iteration_ <= 400
    assert model.booster_.current_iteration() == model.best_iteration_  # cut at the early-stopping round
    assert list(model.classes_) == [0, 1]
    assert model.feature_importance().index[0] == "signal"


def test_multiclass_probabilities_follow_class_names() -> None:
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.normal(size=450), "b": rng.normal(size=450)})
    names = ["low", "mid", "high"]
    y = np.array(names)[np.digitize(X["a"], [-0.5, 0.5])]
    model = LightGBMTask("multiclass", class_names=["high", "low", "mid"], seed=0).fit(
        X[:350], y[:350], X[350:], y[350:]
    )
    proba = model.predict_proba(X[350:])
    assert proba.shape == (100, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    predicted = np.asarray(model.classes_)[proba.argmax(axis=1)]
    assert (predicted == y[350:]).mean() > 0.8


def test_balanced_class_weight_runs_for_both_objectives() -> None:
    X, y = _binary()
    LightGBMTask("binary", class_weight="balanced").fit(X[:300], y[:300], X[300:], y[300:])
    y3 = np.where(X["signal"] > 1, "rare", "common")
    model = LightGBMTask("multiclass", class_names=["common", "rare"], class_weight="balanced")
    assert model.fit(X[:300], y3[:300], X[300:], y3[300:]).predict_proba(X[:5]).shape == (5, 2)


def test_numpy_predict_matches_dataframe_predict_with_categorical_codes() -> None:
    X, y = _with_actions()
    model = LightGBMTask("binary", categorical=ACTION_COLUMNS, seed=0).fit(X[:450], y[:450], X[450:], y[450:])
    booster = model.booster_
    from_frame = booster.predict(X[model.feature_names_])
    from_numpy = booster.predict(X[model.feature_names_].to_numpy(dtype=np.float64))
    np.testing.assert_array_equal(from_frame, from_numpy)
    np.testing.assert_array_equal(model.predict_proba(X), from_numpy)
    # The actions matter to the model, so the codes really went through as categories.
    email = encode_actions(X.assign(action_channel="email"), load_catalog())
    nothing = encode_actions(X.assign(action_channel="none"), load_catalog())
    assert model.predict_proba(email).mean() > model.predict_proba(nothing).mean()


def test_categorical_inputs_must_be_integer_codes() -> None:
    X, y = _with_actions()
    X["action_channel"] = X["action_channel"].astype("category")
    with pytest.raises(ValueError, match="integer codes"):
        LightGBMTask("binary", categorical=ACTION_COLUMNS).fit(X, y, X, y)


def test_encode_actions_uses_catalog_positions_and_rejects_unknown_values() -> None:
    catalog = load_catalog()
    frame = pd.DataFrame({"action_channel": ["email", "none"], "action_content": ["none", "cart_reminder"]})
    codes = encode_actions(frame, catalog)
    assert codes["action_channel"].tolist() == [0, len(catalog.channel_names) - 1]
    assert codes["action_content"].tolist() == [len(catalog.content_names) - 1, 1]
    assert codes["action_channel"].dtype == np.int64
    with pytest.raises(ValueError, match="fax"):
        encode_actions(frame.assign(action_channel=["fax", "email"]), catalog)
    with pytest.raises(ValueError, match="outside"):
        encode_actions(codes.assign(action_channel=[99, 0]), catalog)


def test_logistic_baseline_learns_and_handles_missing_values() -> None:
    X, y = _binary()
    baseline = LogisticBaseline().fit(X[:300], y[:300])
    assert roc_auc_score(y[300:], baseline.predict_proba(X[300:])) > 0.85


def test_recency_frequency_baseline_ranks_recent_frequent_buyers_higher() -> None:
    rng = np.random.default_rng(5)
    n = 800
    X = pd.DataFrame(
        {
            "recency_purchase_days": rng.exponential(40, n),
            "purchases_total": rng.poisson(2, n),
            "tenure_days": rng.uniform(30, 500, n),
        }
    )
    X.loc[X["purchases_total"] == 0, "recency_purchase_days"] = np.nan
    logit = -1.5 + 0.6 * X["purchases_total"] - 0.03 * X["recency_purchase_days"].fillna(150)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    assert find_rf_columns(list(X.columns)) == {
        "recency": "recency_purchase_days",
        "frequency": "purchases_total",
        "tenure": "tenure_days",
    }
    baseline = RecencyFrequencyBaseline().fit(X[:600], y[:600])
    p = baseline.predict_proba(X[600:])
    assert p.shape == (200,) and ((p > 0) & (p < 1)).all()
    assert roc_auc_score(y[600:], p) > 0.7
