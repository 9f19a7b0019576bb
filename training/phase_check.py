"""How well the trained phase model tracks the simulator's latent journey phase: a report, never an input.

The phase model learns rule-based labels (`training.labels.phase_labels`) from what the event log shows; the
simulator knows each customer's true phase. The NBA's eligibility and objective weights rest on the predicted
phase, so `parcours evaluate` reports how often it is right when the policies start deciding. On the simulator
it was the NBA's largest single handicap until the labels learned to see customers through their after-sales
contacts (docs/policy-evaluation.md, "Sixth session" and "Seventh session"). Training reports the same
agreement on the phase run's test split when given the truth (`model_true_phase_accuracy`, docs/lifecycle.md);
this one measures it where the decisions are taken. The latent phase is read for reporting only: it is never a
feature or a label.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from journey.scoring import ModelSet, score_customers
from journey.vocabulary import PHASES

PHASE_NAMES: tuple[str, ...] = tuple(p.value for p in PHASES)


def agreement(true_phase: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Accuracy over customers whose latent state is a journey phase (dormant, churned and not-yet-arrived ones
    are left out: no phase is right for them), each phase's recall, and the counts behind them."""
    true_phase = np.asarray(true_phase, dtype=object)
    predicted = np.asarray(predicted, dtype=object)
    if true_phase.shape != predicted.shape:
        raise ValueError(f"agreement: {true_phase.shape} latent phases for {predicted.shape} predictions")
    live = np.isin(true_phase, PHASE_NAMES)
    right = live & (true_phase == predicted)
    recall = {p: float(right[true_phase == p].mean()) for p in PHASE_NAMES if (true_phase == p).any()}
    confusion = pd.crosstab(pd.Series(true_phase[live], name="true"), pd.Series(predicted[live], name="predicted"))
    return {
        "customers": int(live.sum()),
        "accuracy": float(right.sum() / live.sum()) if live.any() else float("nan"),
        "recall": recall,
        "confusion": {str(t): {str(p): int(n) for p, n in row.items()} for t, row in confusion.iterrows()},
    }


def phase_agreement(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    contacts: pd.DataFrame,
    latent: pd.DataFrame,
    models: ModelSet,
    at: pd.Timestamp,
) -> dict[str, Any] | None:
    """The phase model's predictions for every customer as of `at` (features built as the policies see them)
    against `latent` (customer_id, phase: the simulator's state at `at`). None without a phase model."""
    from features.build import build_features
    from features.request import add_request_features

    if models.phase is None:
        return None
    features = add_request_features(build_features(customers, events, contacts, [at]), at)
    predicted = np.array([str(p) for p in score_customers(models, features).phase], dtype=object)
    truth = latent.drop_duplicates("customer_id").set_index("customer_id")["phase"]
    return agreement(truth.reindex(features["customer_id"].astype(str)).to_numpy(dtype=object), predicted)
