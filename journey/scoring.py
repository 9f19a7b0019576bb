"""Turn feature rows into model scores, whatever trained the models.

Models are anything with `predict(np.ndarray) -> np.ndarray` (a LightGBM Booster fits), plus the metadata
that training writes to MLflow (docs/architecture.md): feature order, phase classes, action encodings.
Keeping this protocol here lets serving, batch scoring and policy evaluation share one scoring path
without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from journey.catalog import Action
from journey.vocabulary import NO_CONTACT, PHASES

TASKS: tuple[str, ...] = ("phase", "churn", "purchase", "response")
ACTION_CHANNEL, ACTION_CONTENT = "action_channel", "action_content"


class Predictor(Protocol):
    def predict(self, data: np.ndarray, **kwargs: Any) -> np.ndarray: ...


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

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.predictor.predict(matrix))

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


def score_customers(models: ModelSet, features: pd.DataFrame) -> CustomerScores:
    """Phase, churn and purchase scores; a missing model yields an uninformative score (NaN or uniform)."""
    n = len(features)
    return CustomerScores(
        phase_proba=_phase_proba(models.phase, features, n),
        churn_risk=_binary(models.churn, features, n),
        purchase_propensity=_binary(models.purchase, features, n),
    )


def _binary(model: LoadedModel | None, features: pd.DataFrame, n: int) -> np.ndarray:
    if model is None:
        return np.full(n, np.nan)
    return model.predict(model.matrix(features)).reshape(n)


def _phase_proba(model: LoadedModel | None, features: pd.DataFrame, n: int) -> np.ndarray:
    uniform = np.full((n, len(PHASES)), 1.0 / len(PHASES))
    if model is None:
        return uniform
    raw = model.predict(model.matrix(features)).reshape(n, -1)
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


def uplifts(model: LoadedModel, row: np.ndarray, actions: Sequence[Action]) -> tuple[np.ndarray, np.ndarray]:
    """P(goal | action) and P(goal | no contact) for each action, in one predict call (NaN if not scorable)."""
    controls = [Action(NO_CONTACT, a.content) for a in actions]
    matrix, scorable = response_matrix(model, row, [*actions, *controls])
    proba = np.full(len(matrix), np.nan)
    if scorable.any():
        proba[scorable] = model.predict(matrix[scorable]).reshape(-1)
    treated, control = proba[: len(actions)], proba[len(actions) :]
    return treated, control
