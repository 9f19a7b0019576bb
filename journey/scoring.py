"""Turn feature rows into model scores, whatever trained the models.

Models are anything with `predict(np.ndarray) -> np.ndarray` (a LightGBM Booster fits), plus the metadata
that training writes to MLflow (docs/architecture.md): feature order, phase classes, action encodings.
Keeping this protocol here lets serving, batch scoring and policy evaluation share one scoring path
without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import pandas as pd

from journey.catalog import Action
from journey.vocabulary import NO_CONTACT, PHASES

TASKS: tuple[str, ...] = ("phase", "churn", "purchase", "response")
ACTION_CHANNEL, ACTION_CONTENT = "action_channel", "action_content"


class Predictor(Protocol):
    def predict(self, data: np.ndarray, **kwargs: Any) -> np.ndarray: ...


def apply_calibration(p: np.ndarray, calibration: Mapping[str, Any]) -> np.ndarray:
    """Map raw binary probabilities through the monotone piecewise-linear `{"x": [...], "y": [...]}` map that
    training stores in the model metadata (values outside `x` take the end values, like `np.interp`)."""
    x = np.asarray(calibration["x"], dtype=np.float64)
    y = np.asarray(calibration["y"], dtype=np.float64)
    return np.interp(np.asarray(p, dtype=np.float64), x, y)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score: predictor plus the metadata that says how to feed it."""

    task: str
    name: str
    version: str
    predictor: Predictor
    feature_names: tuple[str, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.metadata.get("classes") or ())

    def action_codes(self, column: str) -> dict[str, int]:
        names = (self.metadata.get("action_columns") or {}).get(column) or []
        return {name: code for code, name in enumerate(names)}

    def matrix(self, features: pd.DataFrame) -> np.ndarray:
        """Model-ordered float matrix; a feature the frame lacks is NaN (LightGBM treats it as missing)."""
        return features.reindex(columns=list(self.feature_names)).to_numpy(dtype=np.float64, na_value=np.nan)

    def predict(self, matrix: np.ndarray, **kwargs: Any) -> np.ndarray:
        """Raw booster output; for a binary model with a `calibration` map in its metadata, calibrated.

        `kwargs` go to the predictor (e.g. LightGBM's `num_threads` for a large batch)."""
        raw = np.asarray(self.predictor.predict(matrix, **kwargs))
        calibration = self.metadata.get("calibration")
        if calibration and raw.ndim == 1:  # binary only: multiclass output is (n, k)
            return apply_calibration(raw, calibration)
        return raw

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Per-feature contributions (LightGBM `pred_contrib`); last column is the bias."""
        return np.asarray(self.predictor.predict(matrix, pred_contrib=True))


@dataclass(frozen=True)
class ModelSet:
    """The models serving decides with; any may be missing (e.g. no logged contacts → no response model)."""

    phase: LoadedModel | None = None
    churn: LoadedModel | None = None
    purchase: LoadedModel | None = None
    response: LoadedModel | None = None

    def versions(self) -> dict[str, str]:
        return {m.task: f"{m.name}/{m.version}" for m in self.loaded()}

    def loaded(self) -> list[LoadedModel]:
        return [m for m in (self.phase, self.churn, self.purchase, self.response) if m is not None]


@dataclass(frozen=True)
class CustomerScores:
    """Scores for n customers: phase probabilities in PHASES order, churn risk, purchase propensity."""

    phase_proba: np.ndarray
    churn_risk: np.ndarray
    purchase_propensity: np.ndarray

    @property
    def phase(self) -> np.ndarray:
        return np.asarray(PHASES, dtype=object)[self.phase_proba.argmax(axis=1)]


SMALL_FRAME = 64  # rows up to which `InputPlan` converts by column positions (the online path) instead of reindex


@dataclass(frozen=True)
class InputPlan:
    """How to turn one feature frame into every loaded model's input matrix (`LoadedModel.matrix`) with ONE
    conversion: the models mostly share their columns, and the frame → float conversion is the costly part
    for a single row. Build it once per model set (`InputPlan.of`)."""

    union: tuple[str, ...]
    columns: Mapping[str, tuple[int, ...] | None]  # task -> positions in `union`; None = `union` itself

    @classmethod
    def of(cls, models: ModelSet) -> InputPlan:
        loaded = models.loaded()
        union = tuple(dict.fromkeys(name for m in loaded for name in m.feature_names))
        position = {name: i for i, name in enumerate(union)}
        columns: dict[str, tuple[int, ...] | None] = {}
        for m in loaded:
            picked = tuple(position[name] for name in m.feature_names)
            columns[m.task] = None if picked == tuple(range(len(union))) else picked
        return cls(union, columns)

    def matrices(self, features: pd.DataFrame) -> dict[str, np.ndarray]:
        return self.split(self.union_matrix(features))

    def split(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        """Per-model matrices from the union matrix."""
        return {task: matrix if cols is None else matrix[:, list(cols)] for task, cols in self.columns.items()}

    @cached_property
    def position(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.union)}

    @cached_property
    def _layouts(self) -> dict[tuple[str, ...], np.ndarray]:
        """Column positions per frame layout (online frames have one of a few), resolved once each."""
        return {}

    def union_matrix(self, features: pd.DataFrame) -> np.ndarray:
        """(rows × union) float64; a column the frame lacks is NaN."""
        if len(features) <= SMALL_FRAME and features.columns.is_unique:
            layout = tuple(features.columns)
            index = self._layouts.get(layout)
            if index is None:
                index = features.columns.get_indexer(pd.Index(self.union))
                if len(self._layouts) < 16:
                    self._layouts[layout] = index
            present = index >= 0
            matrix = np.full((len(features), len(self.union)), np.nan)
            try:
                matrix[:, present] = features.to_numpy()[:, index[present]].astype(np.float64)
                return matrix
            except (TypeError, ValueError):  # e.g. pd.NA in an object column: let pandas convert
                pass
        return features.reindex(columns=list(self.union)).to_numpy(dtype=np.float64, na_value=np.nan)


def model_inputs(models: ModelSet, features: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each loaded model's input matrix from one conversion of the frame (see `InputPlan`)."""
    return InputPlan.of(models).matrices(features)


def score_customers(
    models: ModelSet,
    features: pd.DataFrame,
    inputs: Mapping[str, np.ndarray] | None = None,
    predict_kwargs: Mapping[str, Any] | None = None,
) -> CustomerScores:
    """Phase, churn and purchase scores; a missing model yields an uninformative score (NaN or uniform).

    `inputs` are the models' matrices when the caller already has them (`model_inputs`)."""
    n = len(features)
    inputs = inputs if inputs is not None else model_inputs(models, features)
    kwargs = dict(predict_kwargs or {})
    return CustomerScores(
        phase_proba=_phase_proba(models.phase, inputs, n, kwargs),
        churn_risk=_binary(models.churn, inputs, n, kwargs),
        purchase_propensity=_binary(models.purchase, inputs, n, kwargs),
    )


def _binary(model: LoadedModel | None, inputs: Mapping[str, np.ndarray], n: int, kwargs: dict[str, Any]) -> np.ndarray:
    if model is None:
        return np.full(n, np.nan)
    if n == 0:
        return np.empty(0)
    return model.predict(inputs[model.task], **kwargs).reshape(n)


def _phase_proba(
    model: LoadedModel | None, inputs: Mapping[str, np.ndarray], n: int, kwargs: dict[str, Any]
) -> np.ndarray:
    uniform = np.full((n, len(PHASES)), 1.0 / len(PHASES))
    if model is None or n == 0:
        return uniform
    raw = model.predict(inputs[model.task], **kwargs).reshape(n, -1)
    # Reorder the model's classes into PHASES order so callers never depend on training's class order.
    order = [model.classes.index(p) if p in model.classes else -1 for p in PHASES]
    proba = np.where(np.array(order) >= 0, raw[:, np.maximum(order, 0)], 0.0)
    total = proba.sum(axis=1, keepdims=True)
    return np.divide(proba, total, out=uniform, where=total > 0)


def response_matrix(model: LoadedModel, row: np.ndarray, actions: Sequence[Action]) -> tuple[np.ndarray, np.ndarray]:
    """Rows for the S-learner: the customer's features repeated per action, plus the action codes.

    Returns (matrix, scorable): actions whose channel/content the model was not trained on are not scorable.
    """
    channels, contents = model.action_codes(ACTION_CHANNEL), model.action_codes(ACTION_CONTENT)
    codes = np.array(
        [(channels.get(a.channel, -1), contents.get(a.content, -1)) for a in actions], dtype=np.float64
    ).reshape(len(actions), 2)
    scorable = np.asarray((codes >= 0).all(axis=1), dtype=bool)
    matrix = np.hstack([np.repeat(row.reshape(1, -1), len(actions), axis=0), codes])
    return matrix, scorable


RESPONSE_EFFECT = "response_effect"


def effect_per_response(model: LoadedModel) -> dict[str, float] | None:
    """The per-content effects of a response-propensity model (training/response_effect.py), None for an
    S-learner. Such a model predicts P(respond | x, action); uplift = that × the content's effect."""
    if model.metadata.get("uplift_method") != RESPONSE_EFFECT:
        return None
    return {str(k): float(v) for k, v in (model.metadata.get("effect_per_response") or {}).items()}


def uplifts(model: LoadedModel, row: np.ndarray, actions: Sequence[Action]) -> tuple[np.ndarray, np.ndarray]:
    """P(goal | action) and P(goal | no contact) for each action, in one predict call (NaN if not scorable).

    For a response-propensity model: (P(respond) × effect, 0), whose difference is the uplift."""
    effects = effect_per_response(model)
    if effects is not None:
        pairs = np.arange(len(actions))
        return _response_effect_pairs(model, row.reshape(1, -1), pairs * 0, pairs, actions, effects, None)
    controls = [Action(NO_CONTACT, a.content) for a in actions]
    matrix, scorable = response_matrix(model, row, [*actions, *controls])
    proba = np.full(len(matrix), np.nan)
    if scorable.any():
        proba[scorable] = model.predict(matrix[scorable]).reshape(-1)
    treated, control = proba[: len(actions)], proba[len(actions) :]
    return treated, control


def pair_uplifts(
    model: LoadedModel,
    matrix: np.ndarray,
    rows: np.ndarray,
    columns: np.ndarray,
    actions: Sequence[Action],
    predict_kwargs: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """P(goal | action) and P(goal | no contact) for (customer, action) pairs, in ONE predict call.

    `matrix` is the customers' model-ordered features, pair i is (customer `rows[i]`, `actions[columns[i]]`).
    Control rows depend on the customer and the content only, so they are predicted once per (customer, content)
    and shared by every channel of that content. NaN where the model does not know the action.
    """
    effects = effect_per_response(model)
    if effects is not None:  # response propensity × effect per response: no control rows to predict
        return _response_effect_pairs(model, matrix, rows, columns, actions, effects, predict_kwargs)
    channels, contents = model.action_codes(ACTION_CHANNEL), model.action_codes(ACTION_CONTENT)
    channel_code = np.array([channels.get(a.channel, -1) for a in actions], dtype=np.int64)
    content_code = np.array([contents.get(a.content, -1) for a in actions], dtype=np.int64)
    none_code = channels.get(NO_CONTACT, -1)
    treated, control = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    ok = (channel_code[columns] >= 0) & (content_code[columns] >= 0)
    t_rows, t_channel, t_content = rows[ok], channel_code[columns[ok]], content_code[columns[ok]]
    width = max(len(contents), 1)
    keys, inverse = np.unique(t_rows * width + t_content, return_inverse=True)
    c_rows, c_content = keys // width, keys % width
    if none_code < 0:  # no control rows to compare with: nothing is scorable
        return treated, control
    n_treated, features = len(t_rows), matrix.shape[1]
    stacked = np.empty((n_treated + len(keys), features + 2), dtype=np.float64)
    np.take(matrix, t_rows, axis=0, out=stacked[:n_treated, :features])
    np.take(matrix, c_rows, axis=0, out=stacked[n_treated:, :features])
    stacked[:n_treated, features] = t_channel
    stacked[n_treated:, features] = none_code
    stacked[:n_treated, features + 1] = t_content
    stacked[n_treated:, features + 1] = c_content
    if len(stacked):
        proba = model.predict(stacked, **dict(predict_kwargs or {})).reshape(-1)
        treated[ok] = proba[:n_treated]
        control[ok] = proba[n_treated:][inverse.reshape(-1)]
    return treated, control


def _response_effect_pairs(
    model: LoadedModel,
    matrix: np.ndarray,
    rows: np.ndarray,
    columns: np.ndarray,
    actions: Sequence[Action],
    effects: Mapping[str, float],
    predict_kwargs: Mapping[str, Any] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(P(respond | x, a) × effect of a's content, 0) per pair, in one predict call; NaN for unknown actions."""
    channels, contents = model.action_codes(ACTION_CHANNEL), model.action_codes(ACTION_CONTENT)
    channel_code = np.array([channels.get(a.channel, -1) for a in actions], dtype=np.int64)
    content_code = np.array([contents.get(a.content, -1) for a in actions], dtype=np.int64)
    effect = np.array([effects.get(a.content, 0.0) for a in actions], dtype=np.float64)
    treated, control = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    ok = (channel_code[columns] >= 0) & (content_code[columns] >= 0)
    if not ok.any():
        return treated, control
    stacked = np.empty((int(ok.sum()), matrix.shape[1] + 2), dtype=np.float64)
    np.take(matrix, rows[ok], axis=0, out=stacked[:, :-2])
    stacked[:, -2] = channel_code[columns[ok]]
    stacked[:, -1] = content_code[columns[ok]]
    proba = model.predict(stacked, **dict(predict_kwargs or {})).reshape(-1)
    treated[ok] = proba * effect[columns[ok]]
    control[ok] = 0.0
    return treated, control
