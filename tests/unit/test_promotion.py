"""The promotion rule table: wins, ties, regressions, NaN, collapsed predictions — pure, no MLflow."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.promotion import Sanity, decide, sanity_check

OK = Sanity(True, 0.0, 0.2, 0.3)
CHAMPION = {"roc_auc": 0.80, "pr_auc": 0.40, "log_loss": 0.30, "brier": 0.09}
PHASE_CHAMPION = {"macro_f1": 0.50, "accuracy": 0.70, "log_loss": 0.80}


def _with(base: dict[str, float], **changes: float) -> dict[str, float]:
    return {**base, **changes}


@pytest.mark.parametrize(
    ("task", "champion", "challenger", "sanity", "promote", "reason_part"),
    [
        # clear win on the primary metric, nothing else moves
        ("churn", CHAMPION, _with(CHAMPION, roc_auc=0.82), OK, True, "wins on roc_auc"),
        # exact tie and a win smaller than the margin both keep the champion
        ("churn", CHAMPION, dict(CHAMPION), OK, False, "does not beat"),
        ("churn", CHAMPION, _with(CHAMPION, roc_auc=0.803), OK, False, "does not beat"),
        # a loss
        ("purchase", CHAMPION, _with(CHAMPION, roc_auc=0.75), OK, False, "does not beat"),
        # win on AUC but log loss / Brier / PR AUC regress beyond tolerance
        ("churn", CHAMPION, _with(CHAMPION, roc_auc=0.83, log_loss=0.32), OK, False, "log_loss regresses"),
        ("churn", CHAMPION, _with(CHAMPION, roc_auc=0.83, brier=0.115), OK, False, "brier regresses"),
        ("churn", CHAMPION, _with(CHAMPION, roc_auc=0.83, pr_auc=0.35), OK, False, "pr_auc regresses"),
        # regression within tolerance is allowed
        ("churn", CHAMPION, _with(CHAMPION, roc_auc=0.83, log_loss=0.305), OK, True, "wins"),
        # NaN: a challenger that cannot be evaluated never wins; a champion that cannot be evaluated loses
        ("churn", CHAMPION, _with(CHAMPION, roc_auc=math.nan), OK, False, "not a number"),
        ("churn", _with(CHAMPION, roc_auc=math.nan), CHAMPION, OK, True, "cannot be computed"),
        ("churn", CHAMPION, _with(CHAMPION, roc_auc=0.83, log_loss=math.nan), OK, False, "log_loss is not a number"),
        # sanity: NaN predictions or collapsed scores veto even a big win
        (
            "churn",
            CHAMPION,
            _with(CHAMPION, roc_auc=0.95),
            Sanity(False, 0.1, math.nan, math.nan, ("NaN",)),
            False,
            "sanity",
        ),
        (
            "churn",
            CHAMPION,
            _with(CHAMPION, roc_auc=0.95),
            Sanity(False, 0.0, 0.0, 1.0, ("collapsed",)),
            False,
            "sanity",
        ),
        # no champion yet: a sane challenger becomes champion
        ("churn", None, CHAMPION, OK, True, "no champion"),
        # phase uses macro-F1 as primary and accuracy / log loss as secondaries
        ("phase", PHASE_CHAMPION, _with(PHASE_CHAMPION, macro_f1=0.53), OK, True, "macro_f1"),
        ("phase", PHASE_CHAMPION, _with(PHASE_CHAMPION, macro_f1=0.53, accuracy=0.65), OK, False, "accuracy"),
        ("phase", PHASE_CHAMPION, _with(PHASE_CHAMPION, roc_auc=0.99), OK, False, "does not beat"),
    ],
)
def test_rule_table(task, champion, challenger, sanity, promote, reason_part) -> None:
    decision = decide(task, champion, challenger, sanity, margin=0.005, tolerance=0.01)
    assert decision.promote is promote, decision.reason
    assert reason_part in decision.reason


def test_margin_is_configurable() -> None:
    challenger = _with(CHAMPION, roc_auc=0.803)
    assert decide("churn", CHAMPION, challenger, OK, margin=0.002).promote
    assert not decide("churn", CHAMPION, challenger, OK, margin=0.005).promote


def test_sanity_accepts_spread_scores() -> None:
    p = np.random.default_rng(0).uniform(0, 1, 1000)
    assert sanity_check(p).ok


@pytest.mark.parametrize(
    ("predictions", "problem"),
    [
        (np.array([0.2, np.nan, 0.4, 0.5]), "NaN"),
        (np.full(500, 0.31), "std"),
        (np.r_[np.full(995, 0.05), np.linspace(0.2, 0.9, 5)], "one bin"),  # spread exists but all in one bin
        (np.array([]), "no predictions"),
    ],
)
def test_sanity_rejects_nan_and_collapsed(predictions: np.ndarray, problem: str) -> None:
    sanity = sanity_check(predictions)
    assert not sanity.ok
    assert any(problem in p for p in sanity.problems)


def test_sanity_on_multiclass_flags_one_predicted_class() -> None:
    rng = np.random.default_rng(1)
    spread = rng.dirichlet(np.ones(5), 400)
    assert sanity_check(spread).ok
    one_class = np.tile([0.6, 0.1, 0.1, 0.1, 0.1], (400, 1)) + rng.normal(0, 0.01, (400, 5))
    assert not sanity_check(one_class).ok
