"""Train, evaluate, track and register the four task models.

One MLflow parent run `train` holds one nested run per task. Each task run records what is needed to trust
or reproduce the model: the data (window, rows, label rates, a content hash, the feature list), the LightGBM
parameters, test metrics of the model *beside* its baselines (`model_*`, `baseline_logistic_*`,
`baseline_rf_*`), plots, and the model registered with the metadata serving reads (docs/architecture.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd

from journey.catalog import Catalog
from journey.errors import NotReadyError
from journey.settings import Settings
from journey.vocabulary import NO_CONTACT, PHASES
from training import evaluation as ev
from training.backtest import rolling_backtest, summarise
from training.baselines import LogisticBaseline, RecencyFrequencyBaseline
from training.calibration import CalibrationChoice, choose_calibration
from training.lgbm import ACTION_COLUMNS, LightGBMTask, encode_actions
from training.registry import SCHEMA_VERSION, ModelVersionRef, log_and_register
from training.response_effect import (
    METHOD,
    EffectTable,
    effect_table,
    enough_responses,
    opt_out_rates,
    propensity_rows,
)
from training.tracking import configure_mlflow

log = logging.getLogger(__name__)

TASKS: tuple[str, ...] = ("phase", "churn", "purchase", "response")
SPLITS: tuple[str, ...] = ("train", "valid", "test")

# Columns that describe a row but must never be model inputs (ids, times, outcomes, logging-policy data).
NON_FEATURES: frozenset[str] = frozenset(
    {
        "customer_id",
        "event_timestamp",
        "decision_id",
        "label",
        "split",
        "propensity",
        "value_observed",
        "cutoff",
        *ACTION_COLUMNS,
    }
)
# Absolute timestamps as numbers make trees split on calendar time, which never recurs out of time.
ABSOLUTE_TIME_MARKERS: tuple[str, ...] = ("epoch",)

# Class imbalance is measured on every run, not assumed: both options are fitted and the one with the better
# validation primary metric is kept (ties within IMBALANCE_TIE go to unweighted, which calibrates better).
# The response model stays unweighted: reweighting rescales its probabilities, and decisions use their
# differences (uplift) at face value.
ClassWeight = Literal["balanced"] | None
CLASS_WEIGHT_OPTIONS: tuple[ClassWeight, ...] = (None, "balanced")
IMBALANCE_TIE = 0.002
# Calibration is tried for the customer-level binary models; the response model's output enters decisions as
# a difference f(x, c, k) - f(x, none, k), which a map fitted on pooled rows does not make more truthful.
CALIBRATED_TASKS: frozenset[str] = frozenset({"churn", "purchase"})
BACKTEST_FOLDS = 3
BACKTEST_TASKS: frozenset[str] = frozenset({"phase", "churn", "purchase"})


@dataclass
class TaskResult:
    """Outcome of one task: `status` is "trained", "skipped" (no usable dataset) or "failed"."""

    task: str
    status: Literal["trained", "skipped", "failed"]
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    version: ModelVersionRef | None = None
    run_id: str | None = None
    feature_names: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ data access
def _column(dataset: Any, attr: str) -> pd.Series:
    """`dataset.label` / `dataset.split` may name a column of `dataset.frame` or hold the values themselves."""
    frame: pd.DataFrame = dataset.frame
    value = getattr(dataset, attr)
    if isinstance(value, str):
        return frame[value]
    return pd.Series(np.asarray(value), index=frame.index, name=attr)


def model_features(dataset: Any) -> tuple[list[str], list[str]]:
    """(usable features, dropped with reason): numeric or boolean, not an id/outcome, not absolute time."""
    frame: pd.DataFrame = dataset.frame
    kept, dropped = [], []
    for name in dataset.feature_names:
        if name not in frame.columns:
            dropped.append(f"{name} (missing from the frame)")
        elif name in NON_FEATURES:
            dropped.append(f"{name} (row descriptor, not a feature)")
        elif any(marker in name for marker in ABSOLUTE_TIME_MARKERS):
            dropped.append(f"{name} (absolute time)")
        elif not (pd.api.types.is_numeric_dtype(frame[name]) or pd.api.types.is_bool_dtype(frame[name])):
            dropped.append(f"{name} (dtype {frame[name].dtype})")
        else:
            kept.append(name)
    return kept, dropped


def dataset_hash(frame: pd.DataFrame) -> str:
    """Content hash of the rows and columns trained on, to tell whether two runs saw the same data."""
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class _Splits:
    X: dict[str, pd.DataFrame]
    y: dict[str, pd.Series]
    rows: dict[str, pd.DataFrame]


def _splits(dataset: Any, columns: list[str], catalog: Catalog | None) -> _Splits:
    frame: pd.DataFrame = dataset.frame
    if catalog is not None:
        frame = encode_actions(frame, catalog)
    split, label = _column(dataset, "split").astype(str), _column(dataset, "label")
    parts = {s: frame.loc[(split == s).to_numpy()] for s in SPLITS}
    return _Splits(
        X={s: p[columns] for s, p in parts.items()},
        y={s: label.loc[p.index] for s, p in parts.items()},
        rows=parts,
    )


# ------------------------------------------------------------------------------------------------- training
def _horizon_days(task: str, settings: Settings) -> int | None:
    return {
        "purchase": settings.purchase_horizon_days,
        "churn": settings.churn_horizon_days,
        "response": settings.response_window_days,
    }.get(task)


def _metadata(task: str, features: list[str], model: LightGBMTask, catalog: Catalog) -> dict[str, Any]:
    metadata: dict[str, Any] = {"parcours_schema": SCHEMA_VERSION, "task": task, "feature_names": features}
    if task == "phase":
        metadata["classes"] = [str(c) for c in model.classes_]
    if task == "response":
        metadata["action_columns"] = {
            "action_channel": list(catalog.channel_names),
            "action_content": list(catalog.content_names),
        }
    return metadata


def _fit_model(
    task: str, data: _Splits, categorical: Sequence[str], seed: int, class_weight: ClassWeight = None
) -> LightGBMTask:
    return _fit(task, categorical, seed, class_weight)(
        data.X["train"], data.y["train"], data.X["valid"], data.y["valid"]
    )


def _fit(
    task: str, categorical: Sequence[str], seed: int, class_weight: ClassWeight
) -> Callable[[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series], LightGBMTask]:
    """A fitting function (train and valid parts in, fitted model out), shared by the final fit and the backtest."""

    def fit(X_train: pd.DataFrame, y_train: pd.Series, X_valid: pd.DataFrame, y_valid: pd.Series) -> LightGBMTask:
        if task == "phase":
            model = LightGBMTask(
                "multiclass", class_names=[p.value for p in PHASES], seed=seed, class_weight=class_weight
            )
        else:
            if y_train.nunique() < 2:
                raise ValueError(f"{task}: the training split has a single label value; nothing to learn")
            model = LightGBMTask("binary", categorical=categorical, seed=seed, class_weight=class_weight)
        return model.fit(X_train, y_train, X_valid, y_valid)

    return fit


def _primary(task: str, y: pd.Series, p: np.ndarray) -> float:
    if task == "phase":
        return ev.multiclass_metrics(y, p, [ph.value for ph in PHASES])["macro_f1"]
    return ev.binary_metrics(y, p)["roc_auc"]


def _fit_best_weighting(
    task: str, data: _Splits, categorical: Sequence[str], seed: int
) -> tuple[LightGBMTask, dict[str, float]]:
    """Fit unweighted and class-balanced models and keep the better one on the validation primary metric."""
    if data.X["valid"].empty or task == "response":
        return _fit_model(task, data, categorical, seed), {}
    fitted: list[tuple[float, LightGBMTask]] = []
    metrics: dict[str, float] = {}
    for option in CLASS_WEIGHT_OPTIONS:
        model = _fit_model(task, data, categorical, seed, option)
        value = _primary(task, data.y["valid"], model.predict_proba(data.X["valid"]))
        metrics[f"imbalance_valid_{'macro_f1' if task == 'phase' else 'roc_auc'}_{option or 'none'}"] = value
        fitted.append((value, model))
    (unweighted, plain), (balanced, weighted) = fitted
    chosen = (
        weighted
        if np.isfinite(balanced) and balanced > (unweighted if np.isfinite(unweighted) else -1) + IMBALANCE_TIE
        else plain
    )
    return chosen, metrics


def _fit_baselines(task: str, data: _Splits, categorical: Sequence[str]) -> dict[str, Any]:
    """Baselines by name; a baseline that cannot be fitted is left out, never fatal."""
    baselines: dict[str, Any] = {}
    classes = [p.value for p in PHASES] if task == "phase" else None
    candidates: list[tuple[str, Callable[[], Any]]] = [
        ("logistic", lambda: LogisticBaseline(categorical=categorical, class_names=classes)),
    ]
    if task == "purchase":
        candidates.append(("rf", RecencyFrequencyBaseline))
    for name, make in candidates:
        try:
            baselines[name] = make().fit(data.X["train"], data.y["train"])
        except ValueError as error:  # e.g. no recency/frequency column among the features
            log.warning("%s: baseline %s skipped: %s", task, name, error)
    return baselines


def _evaluate(task: str, y: pd.Series, scores: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Test metrics per scorer, prefixed `model_` / `baseline_<name>_`, so each metric sits beside its yardstick."""
    metrics: dict[str, float] = {}
    for name, p in scores.items():
        prefix = "model_" if name == "model" else f"baseline_{name}_"
        values = (
            ev.multiclass_metrics(y, p, [ph.value for ph in PHASES]) if task == "phase" else ev.binary_metrics(y, p)
        )
        metrics.update({f"{prefix}{k}": v for k, v in values.items()})
    return metrics


# --------------------------------------------------------------------------------------------------- uplift
def _uplift_table(model: LightGBMTask, rows: pd.DataFrame, features: list[str], catalog: Catalog) -> pd.DataFrame:
    """Mean predicted uplift f(x, c, k) − f(x, none, k) per catalog action over the test decisions, next to
    the (naive) observed treated and control goal rates of the same action."""
    decisions = rows.drop_duplicates("decision_id") if "decision_id" in rows else rows
    base = decisions[features]
    channel_code = {c: i for i, c in enumerate(catalog.channel_names)}
    content_code = {k: i for i, k in enumerate(catalog.content_names)}
    none_code = channel_code[NO_CONTACT]
    out = []
    for action in catalog.actions:
        k = content_code[action.content]
        treated = model.predict_proba(base.assign(action_channel=channel_code[action.channel], action_content=k))
        control = model.predict_proba(base.assign(action_channel=none_code, action_content=k))
        is_t = (rows["action_channel"] == channel_code[action.channel]) & (rows["action_content"] == k)
        is_c = (rows["action_channel"] == none_code) & (rows["action_content"] == k)
        out.append(
            {
                "action": action.key,
                "mean_predicted_uplift": float(np.mean(treated - control)) if len(base) else np.nan,
                "mean_predicted_treated": float(np.mean(treated)) if len(base) else np.nan,
                "n_treated_test": int(is_t.sum()),
                "observed_treated_rate": float(rows.loc[is_t, "label"].mean()) if is_t.any() else np.nan,
                "observed_control_rate": float(rows.loc[is_c, "label"].mean()) if is_c.any() else np.nan,
            }
        )
    return pd.DataFrame(out)


def _uplift_scores(model: LightGBMTask, rows: pd.DataFrame, features: list[str], catalog: Catalog) -> np.ndarray:
    """Per row, the predicted uplift of its content averaged over the content's channels (the same score for
    treated and control rows of a content, so the two are comparable inside a bin)."""
    channel_code = {c: i for i, c in enumerate(catalog.channel_names)}
    none_code = channel_code[NO_CONTACT]
    scores = np.full(len(rows), np.nan)
    contents = rows["action_content"].to_numpy()
    for k, name in enumerate(catalog.content_names):
        mask = contents == k
        if name not in catalog.contents or not mask.any():
            continue
        base = rows.loc[mask, features]
        control = model.predict_proba(base.assign(action_channel=none_code, action_content=k))
        per_channel = [
            model.predict_proba(base.assign(action_channel=channel_code[c], action_content=k)) - control
            for c in catalog.contents[name].channels
        ]
        scores[mask] = np.mean(per_channel, axis=0)
    return scores


def _response_checks(
    model: LightGBMTask, rows: pd.DataFrame, features: list[str], catalog: Catalog, artifacts: Path
) -> dict[str, float]:
    """Uplift sanity checks on the test split; tables and plots go to `artifacts`."""
    table = _uplift_table(model, rows, features, catalog)
    table.to_csv(artifacts / "uplift_by_action.csv", index=False)
    metrics = {
        f"uplift_mean_{str(action).replace(':', '__')}": float(value)
        for action, value in zip(table["action"], table["mean_predicted_uplift"], strict=True)
    }
    scores = _uplift_scores(model, rows, features, catalog)
    treated = (rows["action_channel"] != catalog.channel_names.index(NO_CONTACT)).to_numpy()
    y = rows["label"].to_numpy(dtype=float)
    weights = None
    if "propensity" in rows and rows["propensity"].notna().all():
        weights = 1.0 / rows["propensity"].clip(lower=0.01).to_numpy(dtype=float)
    valid = ~np.isnan(scores)
    deciles = ev.uplift_by_decile(
        scores[valid], treated[valid], y[valid], weights=None if weights is None else weights[valid]
    )
    deciles.to_csv(artifacts / "uplift_by_decile.csv", index=False)
    _save(ev.plot_uplift_deciles(deciles), artifacts / "uplift_by_decile.png")
    metrics["uplift_qini"] = ev.qini_coefficient(scores[valid], treated[valid], y[valid])
    if len(deciles) >= 2:
        top, bottom = deciles.iloc[0], deciles.iloc[-1]
        metrics["uplift_observed_top_decile"] = float(top.observed_uplift)
        metrics["uplift_observed_bottom_decile"] = float(bottom.observed_uplift)
    metrics["uplift_mean_all_actions"] = float(table["mean_predicted_uplift"].mean())
    return metrics


def _response_effects(dataset: Any, settings: Settings, catalog: Catalog) -> EffectTable | None:
    """The per-content effects per response (train and valid rows: test stays unseen), or None for the S-learner
    (chosen in the settings, or too few logged responses to learn who responds)."""
    if settings.uplift_method != METHOD or not enough_responses(dataset.frame):
        return None
    return effect_table(_fitting_rows(dataset), catalog)


def _fitting_rows(dataset: Any) -> pd.DataFrame:
    """Train and valid rows: what the response effects and opt-out rates are estimated on (test stays unseen)."""
    return dataset.frame.loc[(dataset.split != "test").to_numpy()]


def _propensity_dataset(dataset: Any) -> Any:
    """The response dataset reduced to the logged contacts, labelled by `responded`."""
    rows = propensity_rows(dataset.frame)
    return replace(dataset, frame=rows, split=dataset.split.loc[rows.index])


def _effect_report(effects: EffectTable, artifacts: Path) -> dict[str, float]:
    """The effect table as CSV and bar chart; pooled effect and spread as metrics."""
    table = effects.frame()
    table.to_csv(artifacts / "effect_per_response.csv", index=False)
    if not table.empty:
        _save(ev.plot_effects(table), artifacts / "effect_per_response.png")
    metrics = {"effect_pooled": effects.pooled, "effect_spread": effects.spread}
    metrics.update({f"effect_{c.content}": c.effect for c in effects.contents})
    return metrics


# ------------------------------------------------------------------------------- calibration, backtest, truth
def _calibrate(task: str, model: LightGBMTask, data: _Splits) -> CalibrationChoice | None:
    """Fit calibration maps on valid, keep one only if it helps on test (binary customer models only)."""
    if task not in CALIBRATED_TASKS or data.X["valid"].empty or data.X["test"].empty:
        return None
    return choose_calibration(
        model.predict_proba(data.X["valid"]), data.y["valid"], model.predict_proba(data.X["test"]), data.y["test"]
    )


def _backtest(
    task: str, data: _Splits, categorical: Sequence[str], settings: Settings, class_weight: ClassWeight, out: Path
) -> dict[str, float]:
    """Rolling-origin folds over all rows (train + valid + test); per-fold table to `backtest.csv`."""
    folds = int(getattr(settings, "backtest_folds", BACKTEST_FOLDS))
    if task not in BACKTEST_TASKS or folds <= 0:
        return {}
    rows = pd.concat([data.rows[s] for s in SPLITS])
    if "event_timestamp" not in rows:
        return {}
    X = pd.concat([data.X[s] for s in SPLITS])
    y = pd.concat([data.y[s] for s in SPLITS])
    classes = [ph.value for ph in PHASES]

    def evaluate(y_test: pd.Series, p: np.ndarray) -> dict[str, float]:
        return ev.multiclass_metrics(y_test, p, classes) if task == "phase" else ev.binary_metrics(y_test, p)

    gap = _horizon_days(task, settings) or (30 if task == "phase" else 0)
    table = rolling_backtest(
        _fit(task, categorical, settings.seed, class_weight),
        evaluate,
        X,
        y,
        rows["event_timestamp"],
        folds,
        gap,
    )
    table.to_csv(out / "backtest.csv", index=False)
    names = ["macro_f1", "accuracy", "log_loss"] if task == "phase" else ["roc_auc", "pr_auc", "log_loss", "brier"]
    return summarise(table, names)


def load_phase_truth(data_dir: Path) -> pd.DataFrame | None:
    """The simulator's latent phase history next to a dataset, if any (REPORTING only, never a feature)."""
    path = Path(data_dir) / "ground_truth" / "phase_history.parquet"
    return pd.read_parquet(path) if path.exists() else None


def _true_phase_metrics(
    rows: pd.DataFrame, y: pd.Series, proba: np.ndarray, truth: pd.DataFrame, out: Path
) -> dict[str, float]:
    """Phase model (and rule label) accuracy against the simulator's latent phase at each test cutoff.

    The simulator also has latent states outside the 5 modelled phases (e.g. dormant, churned): their share
    is reported, and accuracy is computed on the rows whose true phase is one of the 5."""
    from training.labels import true_phase_at

    classes = [ph.value for ph in PHASES]
    true = true_phase_at(truth, rows[["customer_id", "event_timestamp"]]).to_numpy(dtype=object)
    predicted = np.asarray(classes, dtype=object)[np.asarray(proba).argmax(axis=1)]
    known = np.array([t is not None for t in true])
    modelled = np.array([t in classes for t in true])
    frame = pd.DataFrame({"true_phase": true, "predicted": predicted, "label": y.to_numpy(dtype=object)})
    pd.crosstab(frame["true_phase"].fillna("(none)"), frame["predicted"]).to_csv(out / "true_phase_confusion.csv")
    metrics = {
        "true_phase_rows": float(known.sum()),
        "true_phase_share_outside_classes": float(1 - modelled[known].mean()) if known.any() else np.nan,
    }
    if modelled.any():
        from sklearn.metrics import f1_score

        t, p, lab = true[modelled], predicted[modelled], frame["label"].to_numpy()[modelled]
        metrics["model_true_phase_accuracy"] = float(np.mean(t == p))
        metrics["model_true_phase_macro_f1"] = float(f1_score(t, p, labels=classes, average="macro", zero_division=0))
        metrics["label_true_phase_accuracy"] = float(np.mean(t == lab))
    return metrics


# ---------------------------------------------------------------------------------------------------- plots
def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=110)


def _plots(
    task: str,
    y: pd.Series,
    scores: Mapping[str, np.ndarray],
    model: LightGBMTask,
    out: Path,
    raw: np.ndarray | None = None,
) -> None:
    _save(
        ev.plot_importance(model.feature_importance("gain"), title=f"{task}: feature importance (gain)"),
        out / "importance.png",
    )
    if task == "phase":
        classes = [p.value for p in PHASES]
        confusion = ev.confusion_frame(y, scores["model"], classes)
        confusion.to_csv(out / "confusion_matrix.csv")
        _save(
            ev.plot_confusion(confusion, title="phase: confusion matrix (test, row-normalised)"),
            out / "confusion_matrix.png",
        )
        return
    if y.nunique() < 2:
        return
    _save(ev.plot_roc(y, scores, title=f"{task}: ROC (test)"), out / "roc.png")
    reliability = dict(scores) if raw is None else {"model (raw)": raw, **scores}
    _save(ev.plot_calibration(y, reliability, title=f"{task}: reliability (test)"), out / "calibration.png")
    _save(ev.plot_lift_gain(y, scores, title=f"{task}: gain and lift (test)"), out / "lift_gain.png")


# ----------------------------------------------------------------------------------------------- parameters
def _data_params(dataset: Any, data: _Splits, features: list[str], dropped: list[str]) -> dict[str, Any]:
    meta = getattr(dataset, "meta", None) or {}
    digest = meta.get("training_set_sha256") or dataset_hash(dataset.frame)
    params: dict[str, Any] = {"n_features": len(features), "dataset_hash": str(digest)[:16]}
    for split in SPLITS:
        rows = data.rows[split]
        params[f"rows_{split}"] = len(rows)
        if "event_timestamp" in rows and len(rows):
            params[f"{split}_start"] = str(rows["event_timestamp"].min())
            params[f"{split}_end"] = str(rows["event_timestamp"].max())
    if dropped:
        params["features_dropped"] = "; ".join(dropped)[:500]
    scalars = {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)}
    params.update({k if k.startswith("data_") else f"data_{k}": v for k, v in scalars.items()})
    return params


def _label_rates(task: str, data: _Splits) -> dict[str, float]:
    if task == "phase":
        return {
            f"{split}_share_{phase.value}": float((data.y[split] == phase.value).mean())
            for split in SPLITS
            if len(data.y[split])
            for phase in PHASES
        }
    return {f"{split}_positive_rate": float(data.y[split].mean()) for split in SPLITS if len(data.y[split])}


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}


# -------------------------------------------------------------------------------------------------- entry points
def train_task(
    task: str, dataset: Any, settings: Settings, catalog: Catalog, phase_truth: pd.DataFrame | None = None
) -> TaskResult:
    """Fit, evaluate against baselines, log and register one task model in its own (nested) MLflow run.

    `phase_truth` (the simulator's latent phase history) only adds reporting metrics to the phase run."""
    import mlflow

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    configure_mlflow(settings)
    features, dropped = model_features(dataset)
    if not features:
        raise ValueError(f"{task}: no usable numeric feature among {list(dataset.feature_names)[:10]}")
    is_response = task == "response"
    categorical = list(ACTION_COLUMNS) if is_response else []
    effects = _response_effects(dataset, settings, catalog) if is_response else None
    opt_outs = opt_out_rates(_fitting_rows(dataset)) if is_response else {}
    if effects is not None:
        dataset = _propensity_dataset(dataset)
    data = _splits(dataset, features + categorical, catalog if is_response else None)
    if data.X["train"].empty:
        raise ValueError(f"{task}: the training split is empty")
    eval_split = "test" if len(data.X["test"]) else "valid"

    with mlflow.start_run(run_name=task, nested=mlflow.active_run() is not None) as run:
        mlflow.set_tags({"parcours.task": task, "parcours.eval_split": eval_split})
        if is_response:
            mlflow.set_tags({"parcours.uplift_method": METHOD if effects is not None else "s_learner"})
        model, metrics = _fit_best_weighting(task, data, categorical, settings.seed)
        baselines = _fit_baselines(task, data, categorical)
        X_eval, y_eval = data.X[eval_split], data.y[eval_split]
        raw = model.predict_proba(X_eval)
        calibration = _calibrate(task, model, data)
        chosen = calibration.chosen if calibration is not None else None
        served = chosen.apply(raw) if chosen is not None else raw
        scores = {"model": served, **{n: b.predict_proba(X_eval) for n, b in baselines.items()}}
        metrics.update(_evaluate(task, y_eval, scores))
        metrics["model_best_iteration"] = float(model.best_iteration_)
        metrics.update(_label_rates(task, data))
        if calibration is not None:
            metrics.update({f"calibration_{k}": v for k, v in calibration.metrics.items()})
        params = {
            "task": task,
            "objective": model.objective,
            "horizon_days": _horizon_days(task, settings),
            "num_boost_round": model.num_boost_round,
            "early_stopping_rounds": model.early_stopping_rounds,
            "class_weight": model.class_weight or "none",
            "calibration": chosen.method if chosen is not None else "none",
            "calibration_note": calibration.reason[:250] if calibration is not None else "not applicable",
            "categorical_features": ",".join(categorical) or "none",
            "baselines": ",".join(baselines) or "none",
            **{f"lgb_{k}": v for k, v in model.params_.items()},
            **_data_params(dataset, data, features, dropped),
        }
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            _plots(task, y_eval, scores, model, out, raw=raw if chosen is not None else None)
            metrics.update({f"opt_out_rate_{c}": r for c, r in opt_outs.items()})
            if is_response and effects is not None:
                metrics.update(_effect_report(effects, out))
            elif is_response:
                metrics.update(_response_checks(model, data.rows[eval_split], features, catalog, out))
            metrics.update(_backtest(task, data, categorical, settings, model.class_weight, out))
            if task == "phase" and phase_truth is not None:
                metrics.update(_true_phase_metrics(data.rows[eval_split], y_eval, served, phase_truth, out))
            (out / "features.json").write_text(json.dumps({"features": features, "dropped": dropped}, indent=1))
            meta = getattr(dataset, "meta", None) or {}
            (out / "dataset_meta.json").write_text(json.dumps(meta, indent=1, default=str))
            model.feature_importance("gain").to_csv(out / "feature_importance.csv")
            mlflow.log_params({k: v for k, v in params.items() if v is not None})
            mlflow.log_metrics(_finite(metrics))
            mlflow.log_artifacts(str(out))
        metadata = _metadata(task, features, model, catalog)
        if opt_outs:
            metadata["opt_out_rate"] = opt_outs
        if effects is not None:
            metadata["uplift_method"] = METHOD
            metadata["effect_per_response"] = effects.effects(list(catalog.contents))
        if chosen is not None:
            metadata["calibration"] = chosen.metadata()
        version = log_and_register(task, model, metadata, data.X["train"], settings)
        mlflow.set_tags({"parcours.model_version": version.version, "parcours.aliases": ",".join(version.aliases)})
    return TaskResult(
        task=task,
        status="trained",
        message=f"registered {version.name} v{version.version} ({', '.join(version.aliases)})",
        metrics=metrics,
        version=version,
        run_id=run.info.run_id,
        feature_names=features,
        rows={s: len(data.rows[s]) for s in SPLITS},
    )


def _summary(result: TaskResult) -> str:
    if result.status != "trained":
        return f"{result.task}: {result.status} — {result.message}"
    key = "model_macro_f1" if result.task == "phase" else "model_roc_auc"
    base = "baseline_logistic_macro_f1" if result.task == "phase" else "baseline_logistic_roc_auc"
    model_value, base_value = result.metrics.get(key, np.nan), result.metrics.get(base, np.nan)
    metric = key.removeprefix("model_")
    return f"{result.task}: {metric} {model_value:.3f} (logistic {base_value:.3f}); {result.message}"


def train_all(
    data: Any,
    settings: Settings,
    catalog: Catalog,
    tasks: Iterable[str] = TASKS,
    max_rows: int | None = None,
    progress: Callable[[str], None] | None = None,
    phase_truth: pd.DataFrame | None = None,
) -> dict[str, TaskResult]:
    """Build each task's dataset and train it under one parent run `train`; one task failing or lacking data
    (e.g. no contacts for the response model) never stops the others. `progress` receives one-line messages;
    `phase_truth` (simulated data only) adds true-phase accuracy to the phase run's report."""
    import mlflow

    from training.datasets import build_task_dataset

    say = progress or (lambda message: log.info("%s", message))
    configure_mlflow(settings)
    results: dict[str, TaskResult] = {}
    with mlflow.start_run(run_name="train"):
        tasks = list(tasks)
        mlflow.log_params({"tasks": ",".join(tasks), "max_rows": max_rows, "seed": settings.seed})
        for task in tasks:
            say(f"{task}: building the dataset")
            try:
                dataset = build_task_dataset(
                    cast(Any, task), data, settings, catalog, max_rows=max_rows, seed=settings.seed
                )
            except NotReadyError as error:  # e.g. no logged contacts yet: only this task is skipped
                results[task] = TaskResult(task, "skipped", str(error))
            except Exception as error:
                mlflow.log_text(traceback.format_exc(), f"errors/{task}.txt")
                results[task] = TaskResult(task, "failed", f"dataset: {type(error).__name__}: {error}")
            else:
                say(f"{task}: training on {len(dataset.frame)} rows")
                try:
                    results[task] = train_task(task, dataset, settings, catalog, phase_truth=phase_truth)
                except Exception as error:
                    mlflow.log_text(traceback.format_exc(), f"errors/{task}.txt")
                    results[task] = TaskResult(task, "failed", f"{type(error).__name__}: {error}")
            result = results[task]
            mlflow.set_tag(f"parcours.{task}.status", result.status)
            headline = {k: v for k, v in result.metrics.items() if k.startswith(("model_", "baseline_"))}
            mlflow.log_metrics(_finite({f"{task}.{k}": v for k, v in headline.items()}))
            say(_summary(result))
    return results
