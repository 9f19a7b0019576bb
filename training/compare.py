"""Champion/challenger comparison on one and the same, most recent holdout.

The holdout is rebuilt from the current data through the point-in-time dataset path (`build_task_dataset`,
Feast historical features), and its test split is what both models score — so two models trained months apart
are judged on identical rows. Each model is loaded exactly as serving loads it (LightGBM Booster + metadata,
calibration map applied through `journey.scoring.LoadedModel`), so the comparison measures what would serve.
A model whose own training/validation window reaches into the holdout is flagged: its score there is optimistic.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from journey.catalog import Catalog
from journey.scoring import RESPONSE_EFFECT, LoadedModel
from journey.settings import Settings
from journey.vocabulary import PHASES
from training import evaluation as ev
from training.datasets import JourneyData, build_task_dataset
from training.promotion import Sanity, primary_metric, sanity_check
from training.registry import ModelVersionRef, get_version
from training.response_effect import enough_responses, propensity_rows
from training.tracking import configure_mlflow

log = logging.getLogger(__name__)


@dataclass
class Holdout:
    """The rows both models are scored on: model inputs are taken from `frame` by each model's metadata."""

    task: str
    frame: pd.DataFrame
    y: pd.Series
    split: str
    start: pd.Timestamp | None
    end: pd.Timestamp | None

    def describe(self) -> dict[str, Any]:
        return {
            "rows": len(self.frame),
            "split": self.split,
            "start": str(self.start),
            "end": str(self.end),
            "prevalence": float(self.y.mean()) if self.task != "phase" and len(self.y) else None,
        }


@dataclass
class ScoredModel:
    label: str
    ref: ModelVersionRef
    predictions: np.ndarray
    metrics: dict[str, float]
    sanity: Sanity
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.label} v{self.ref.version}"


@dataclass
class Comparison:
    task: str
    holdout: Holdout
    a: ScoredModel
    b: ScoredModel
    run_id: str | None = None

    @property
    def primary(self) -> str:
        return primary_metric(self.task)

    def table(self) -> pd.DataFrame:
        """Metric × model, with b − a."""
        names = sorted(set(self.a.metrics) | set(self.b.metrics), key=lambda m: (m != self.primary, m))
        rows = [{"metric": m, "a": self.a.metrics.get(m, np.nan), "b": self.b.metrics.get(m, np.nan)} for m in names]
        frame = pd.DataFrame(rows)
        frame["b_minus_a"] = frame["b"] - frame["a"]
        return frame


# ---------------------------------------------------------------------------------------------- loading
def resolve(
    task: str, settings: Settings, alias: str | None = None, version: str | int | None = None
) -> ModelVersionRef:
    """A registered version by alias or number; a clear error when it does not exist."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from journey.errors import NotReadyError

    name = settings.model_name(task)
    if version is not None:
        configure_mlflow(settings)
        client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
        try:
            mv = client.get_model_version(name, str(version))
        except MlflowException as error:
            raise NotReadyError(f"{name} has no version {version}") from error
        return ModelVersionRef(mv.name, str(mv.version), mv.run_id, None, tuple(mv.aliases or ()))
    ref = get_version(task, alias or "champion", settings)
    if ref is None:
        raise NotReadyError(f"{name} has no version with alias {alias!r}: train first (`parcours train`)")
    return ref


def load_model(task: str, ref: ModelVersionRef, settings: Settings) -> LoadedModel:
    """The Booster and metadata as serving loads them (LightGBM flavour, metadata from the MLmodel file)."""
    import mlflow
    import mlflow.lightgbm

    configure_mlflow(settings)
    info = mlflow.models.get_model_info(ref.uri)
    metadata = dict(info.metadata or {})
    booster = mlflow.lightgbm.load_model(ref.uri)
    names = tuple(metadata.get("feature_names") or booster.feature_name())
    return LoadedModel(task, ref.name, ref.version, booster, names, metadata)


# ---------------------------------------------------------------------------------------------- holdout
def build_holdout(
    task: str, data: JourneyData, settings: Settings, catalog: Catalog, max_rows: int | None = None
) -> Holdout:
    """The test split (valid if test is empty) of the current data's point-in-time dataset for `task`."""
    dataset = build_task_dataset(cast(Any, task), data, settings, catalog, max_rows=max_rows, seed=settings.seed)
    if task == "response" and settings.uplift_method == RESPONSE_EFFECT and enough_responses(dataset.frame):
        # response × effect models predict P(respond | x, action): they are compared on the logged contacts
        rows = propensity_rows(dataset.frame)
        dataset = replace(dataset, frame=rows, split=dataset.split.loc[rows.index])
    split = dataset.split.astype(str).to_numpy()
    name = "test" if (split == "test").any() else "valid"
    frame = dataset.frame.loc[split == name].reset_index(drop=True)
    ts = pd.to_datetime(frame["event_timestamp"], utc=True) if len(frame) else pd.Series(dtype="datetime64[ns, UTC]")
    return Holdout(
        task, frame, frame[dataset.label], name, ts.min() if len(ts) else None, ts.max() if len(ts) else None
    )


def model_matrix(model: LoadedModel, frame: pd.DataFrame) -> np.ndarray:
    """Features in the model's order, then the action codes from the model's own metadata lists (response)."""
    matrix = model.matrix(frame)
    actions: dict[str, list[str]] = dict(model.metadata.get("action_columns") or {})
    if not actions:
        return matrix
    codes = []
    for column, names in actions.items():
        index = {n: i for i, n in enumerate(names)}
        values = frame[column]
        coded = values if pd.api.types.is_integer_dtype(values) else values.map(lambda v, ix=index: ix.get(v, np.nan))
        codes.append(coded.to_numpy(dtype=np.float64))
    return np.column_stack([matrix, *codes])


def _metrics(task: str, model: LoadedModel, y: pd.Series, p: np.ndarray) -> dict[str, float]:
    if task == "phase":
        classes = list(model.classes or [ph.value for ph in PHASES])
        return ev.multiclass_metrics(y, p, classes)
    return ev.binary_metrics(y, p)


def _training_window_notes(ref: ModelVersionRef, holdout: Holdout, settings: Settings) -> list[str]:
    """Flag a model that trained or early-stopped on rows inside the holdout window."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if ref.run_id is None or holdout.start is None:
        return []
    try:
        params = MlflowClient(tracking_uri=settings.tracking_uri).get_run(ref.run_id).data.params
    except MlflowException:
        return ["training run not found: cannot check its data window"]
    notes = []
    for split in ("train", "valid"):
        end = params.get(f"{split}_end")
        if end and pd.Timestamp(end).tz_convert("UTC") >= holdout.start:
            notes.append(f"its {split} split reaches {end} >= holdout start {holdout.start}: optimistic score")
    return notes


def score(label: str, task: str, ref: ModelVersionRef, holdout: Holdout, settings: Settings) -> ScoredModel:
    model = load_model(task, ref, settings)
    notes = _training_window_notes(ref, holdout, settings)
    missing = [f for f in model.feature_names if f not in holdout.frame.columns]
    if missing:
        notes.append(f"{len(missing)} of its features are missing from the current data (scored as NaN)")
    if task == "response" and _predicts_response(model) != _holds_responses(holdout):
        notes.append("this model predicts a different response label than the holdout's (response × effect vs "
                     "S-learner): its metrics are not comparable")  # fmt: skip
    p = model.predict(model_matrix(model, holdout.frame))
    sanity = sanity_check(p)
    metrics = _metrics(task, model, holdout.y, p) if sanity.nan_share == 0 else {}
    return ScoredModel(label, ref, p, metrics, sanity, notes)


def _predicts_response(model: LoadedModel) -> bool:
    return model.metadata.get("uplift_method") == RESPONSE_EFFECT


def _holds_responses(holdout: Holdout) -> bool:
    """A response × effect holdout holds logged contacts only (no "none" rows)."""
    return "action_channel" in holdout.frame and not (holdout.frame["action_channel"].astype(str) == "none").any()


# ---------------------------------------------------------------------------------------------- compare
def compare_models(
    task: str,
    data: JourneyData,
    settings: Settings,
    catalog: Catalog,
    a: str = "champion",
    b: str = "challenger",
    a_version: str | int | None = None,
    b_version: str | int | None = None,
    max_rows: int | None = None,
    log_run: bool = True,
    holdout: Holdout | None = None,
) -> Comparison:
    """Score two registered versions (by alias, or by number when `*_version` is given) on the same holdout,
    and log the comparison as an MLflow run `compare-<task>` with both metric sets and overlaid plots."""
    ref_a = resolve(task, settings, alias=a, version=a_version)
    ref_b = resolve(task, settings, alias=b, version=b_version)
    holdout = holdout or build_holdout(task, data, settings, catalog, max_rows)
    if holdout.frame.empty:
        from journey.errors import NotReadyError

        raise NotReadyError(f"{task}: the current data gives an empty holdout; nothing to compare on")
    label_a = a if a_version is None else f"v{a_version}"
    label_b = b if b_version is None else f"v{b_version}"
    comparison = Comparison(
        task, holdout, score(label_a, task, ref_a, holdout, settings), score(label_b, task, ref_b, holdout, settings)
    )
    if log_run:
        comparison.run_id = _log_comparison(comparison, settings)
    return comparison


def _log_comparison(comparison: Comparison, settings: Settings) -> str:
    import mlflow

    configure_mlflow(settings)
    task, a, b = comparison.task, comparison.a, comparison.b
    with mlflow.start_run(run_name=f"compare-{task}", nested=mlflow.active_run() is not None) as run:
        mlflow.set_tags(
            {
                "parcours.kind": "compare",
                "parcours.task": task,
                "parcours.a": f"{a.label}={a.ref.version}",
                "parcours.b": f"{b.label}={b.ref.version}",
            }
        )
        holdout = {f"holdout_{k}": v for k, v in comparison.holdout.describe().items() if v is not None}
        mlflow.log_params(
            {"a_label": a.label, "a_version": a.ref.version, "b_label": b.label, "b_version": b.ref.version, **holdout}
        )
        for prefix, scored in (("a", a), ("b", b)):
            mlflow.log_metrics({f"{prefix}_{k}": v for k, v in scored.metrics.items() if np.isfinite(v)})
            mlflow.log_metrics({f"{prefix}_sanity_std": scored.sanity.std} if np.isfinite(scored.sanity.std) else {})
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            comparison.table().to_csv(out / "comparison.csv", index=False)
            notes = {a.name: a.notes + list(a.sanity.problems), b.name: b.notes + list(b.sanity.problems)}
            (out / "notes.json").write_text(json.dumps(notes, indent=1))
            _plots(comparison, out)
            mlflow.log_artifacts(str(out))
    return str(run.info.run_id)


def _plots(comparison: Comparison, out: Path) -> None:
    task, y = comparison.task, comparison.holdout.y
    scored = [s for s in (comparison.a, comparison.b) if s.sanity.nan_share == 0]
    if task == "phase":
        classes = [p.value for p in PHASES]
        for s in scored:
            confusion = ev.confusion_frame(y, s.predictions, classes)
            fig = ev.plot_confusion(confusion, title=f"phase: {s.name} (holdout, row-normalised)")
            fig.savefig(out / f"confusion_{s.label}.png", dpi=110)
        return
    if y.nunique() < 2 or not scored:
        return
    scores = {s.name: s.predictions for s in scored}
    ev.plot_roc(y, scores, title=f"{task}: ROC on the holdout").savefig(out / "roc.png", dpi=110)
    ev.plot_calibration(y, scores, title=f"{task}: reliability on the holdout").savefig(
        out / "calibration.png", dpi=110
    )
    ev.plot_lift_gain(y, scores, title=f"{task}: gain and lift on the holdout").savefig(out / "lift_gain.png", dpi=110)
