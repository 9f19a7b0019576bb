"""Champion/challenger promotion: a pure decision rule, sanity checks, and the registry's alias history.

`decide` is a pure function of two metric sets and the challenger's sanity report, so the rule table is unit
tested without MLflow. `promote` wires it to the registry: it compares both models on the same holdout
(`training.compare`), moves `champion` only when the rule says so (or when forced with a reason), and the
move is recorded by `registry.set_alias` (who, when, why). `champion_at` answers "which version was champion
on date X" from those records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from journey.settings import Settings

if TYPE_CHECKING:
    from journey.catalog import Catalog
    from training.compare import Comparison
    from training.datasets import JourneyData

DEFAULT_MARGIN = 0.005
DEFAULT_TOLERANCE = 0.01
MIN_STD = 1e-3
MAX_BIN_SHARE = 0.99

# +1: higher is better, -1: lower is better. The primary metric decides; secondaries may only veto.
PRIMARY: dict[str, str] = {"phase": "macro_f1", "churn": "roc_auc", "purchase": "roc_auc", "response": "roc_auc"}
SECONDARY: dict[str, dict[str, int]] = {
    "phase": {"accuracy": +1, "log_loss": -1},
    "binary": {"pr_auc": +1, "log_loss": -1, "brier": -1},
}


def primary_metric(task: str) -> str:
    return PRIMARY.get(task, "roc_auc")


def secondary_metrics(task: str) -> dict[str, int]:
    return SECONDARY["phase" if task == "phase" else "binary"]


# ------------------------------------------------------------------------------------------------ sanity
@dataclass(frozen=True)
class Sanity:
    """Whether a model's holdout predictions look like a working model (not NaN, not collapsed)."""

    ok: bool
    nan_share: float
    std: float
    top_bin_share: float
    problems: tuple[str, ...] = ()


def sanity_check(
    predictions: Any, min_std: float = MIN_STD, max_bin_share: float = MAX_BIN_SHARE, bins: int = 10
) -> Sanity:
    """No NaN; spread above `min_std`; less than `max_bin_share` of the rows in one of `bins` equal-width
    probability bins (binary) or in one predicted class (multiclass, (n, k) probabilities)."""
    p = np.asarray(predictions, dtype=np.float64)
    if p.size == 0:
        return Sanity(False, math.nan, math.nan, math.nan, ("no predictions",))
    nan_share = float(np.mean(~np.isfinite(p)))
    problems: list[str] = []
    if nan_share > 0:
        problems.append(f"{nan_share:.1%} of predictions are NaN or infinite")
        return Sanity(False, nan_share, math.nan, math.nan, tuple(problems))
    if p.ndim == 2:
        std = float(p.std(axis=0).mean())
        top = float(np.bincount(p.argmax(axis=1), minlength=p.shape[1]).max() / len(p))
    else:
        std = float(p.std())
        counts = np.bincount(np.clip((p * bins).astype(int), 0, bins - 1), minlength=bins)
        top = float(counts.max() / len(p))
    if std <= min_std:
        problems.append(f"predictions collapsed: std {std:.2e} <= {min_std:.0e}")
    if top >= max_bin_share:
        problems.append(f"predictions collapsed: {top:.1%} of rows in one bin (limit {max_bin_share:.0%})")
    return Sanity(not problems, nan_share, std, top, tuple(problems))


# ---------------------------------------------------------------------------------------------- decision
@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    checks: tuple[str, ...] = field(default=())


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(value)


def decide(
    task: str,
    champion: Mapping[str, float] | None,
    challenger: Mapping[str, float],
    sanity: Sanity,
    margin: float = DEFAULT_MARGIN,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Decision:
    """Promote the challenger only if it is sane, beats the champion on the primary metric by at least
    `margin`, and loses no secondary metric by more than `tolerance` (all on the same holdout)."""
    primary = primary_metric(task)
    if not sanity.ok:
        return Decision(False, "challenger fails sanity checks: " + "; ".join(sanity.problems))
    new = challenger.get(primary)
    if not _finite(new):
        return Decision(False, f"challenger {primary} is not a number ({new})")
    if champion is None:
        return Decision(True, f"no champion to beat; challenger {primary} {new:.4f}")
    old = champion.get(primary)
    if not _finite(old):
        return Decision(True, f"champion {primary} cannot be computed on the holdout ({old}); challenger {new:.4f}")
    assert new is not None and old is not None
    delta = new - old
    checks = [f"{primary}: {old:.4f} -> {new:.4f} ({delta:+.4f}, margin {margin})"]
    if delta < margin:
        return Decision(
            False, f"challenger does not beat the champion on {primary} by {margin}: {delta:+.4f}", tuple(checks)
        )
    regressions = []
    for name, direction in secondary_metrics(task).items():
        before, after = champion.get(name), challenger.get(name)
        if not _finite(before):
            continue
        if not _finite(after):
            regressions.append(f"{name} is not a number")
            continue
        assert before is not None and after is not None
        worse = (before - after) * direction
        checks.append(f"{name}: {before:.4f} -> {after:.4f}")
        if worse > tolerance:
            regressions.append(f"{name} regresses {before:.4f} -> {after:.4f} (tolerance {tolerance})")
    if regressions:
        return Decision(False, "challenger wins on " + primary + " but " + "; ".join(regressions), tuple(checks))
    return Decision(True, f"challenger wins on {primary} by {delta:+.4f} with no regression", tuple(checks))


# ------------------------------------------------------------------------------------------ registry side
@dataclass
class PromotionOutcome:
    """A promotion decision; `promoted` says whether `champion` moves (or, once applied, moved) to `challenger`."""

    task: str
    promoted: bool
    reason: str
    champion_before: str | None
    challenger: str | None
    forced: bool = False
    comparison: Comparison | None = None
    checks: tuple[str, ...] = ()
    applied: bool = False

    @property
    def champion_after(self) -> str | None:
        return self.challenger if self.promoted else self.champion_before


def plan_promotion(
    task: str,
    data: JourneyData,
    settings: Settings,
    catalog: Catalog,
    margin: float = DEFAULT_MARGIN,
    tolerance: float = DEFAULT_TOLERANCE,
    force: bool = False,
    reason: str | None = None,
    comparison: Comparison | None = None,
) -> PromotionOutcome:
    """Compare `challenger` with `champion` on the current holdout and decide; nothing moves yet, so a job can
    decide for every task first and move aliases only when all of it succeeded."""
    from training.compare import compare_models
    from training.registry import CHALLENGER, CHAMPION, get_version

    if force and not (reason and reason.strip()):
        raise ValueError("--force needs --reason: every forced promotion must say why")
    champion, challenger = get_version(task, CHAMPION, settings), get_version(task, CHALLENGER, settings)
    before = champion.version if champion else None
    if challenger is None:
        return PromotionOutcome(task, False, "no challenger registered", before, None)
    if champion is not None and champion.version == challenger.version:
        return PromotionOutcome(task, False, "challenger is already champion", before, challenger.version)
    if comparison is None and champion is not None:
        comparison = compare_models(task, data, settings, catalog, a=CHAMPION, b=CHALLENGER)
    if comparison is None:
        decision = Decision(True, "no champion yet")
    else:
        decision = decide(task, comparison.a.metrics, comparison.b.metrics, comparison.b.sanity, margin, tolerance)
    if not (decision.promote or force):
        return PromotionOutcome(
            task, False, decision.reason, before, challenger.version, False, comparison, decision.checks
        )
    why = f"forced: {reason} (rule said: {decision.reason})" if force and not decision.promote else decision.reason
    if reason and not force:
        why = f"{why}; {reason}"
    forced = force and not decision.promote
    return PromotionOutcome(task, True, why, before, challenger.version, forced, comparison, decision.checks)


def apply_promotion(outcome: PromotionOutcome, settings: Settings) -> PromotionOutcome:
    """Move `champion` as planned (recorded with the reason by `registry.set_alias`); no-op when not promoted."""
    from training.registry import CHAMPION, set_alias

    if outcome.promoted and outcome.challenger is not None and not outcome.applied:
        set_alias(outcome.task, CHAMPION, outcome.challenger, settings, reason=outcome.reason)
        outcome.applied = True
    return outcome


def promote(
    task: str,
    data: JourneyData,
    settings: Settings,
    catalog: Catalog,
    margin: float = DEFAULT_MARGIN,
    tolerance: float = DEFAULT_TOLERANCE,
    force: bool = False,
    reason: str | None = None,
    comparison: Comparison | None = None,
) -> PromotionOutcome:
    """`plan_promotion` then `apply_promotion`: move `champion` if the rule allows (or if forced, with a reason)."""
    outcome = plan_promotion(task, data, settings, catalog, margin, tolerance, force, reason, comparison)
    return apply_promotion(outcome, settings)


def alias_moves(task: str, settings: Settings) -> pd.DataFrame:
    """Every recorded alias move of a task's versions, oldest first: when, alias, action, version, who, why."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from training.registry import HISTORY_TAG
    from training.tracking import configure_mlflow

    configure_mlflow(settings)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    name = settings.model_name(task)
    try:
        versions = list(client.search_model_versions(f"name = '{name}'"))
    except MlflowException:
        versions = []
    rows = []
    for mv in versions:
        for entry in json.loads((mv.tags or {}).get(HISTORY_TAG, "[]")):
            rows.append({"version": str(mv.version), **entry})
    columns = ["when", "alias", "action", "version", "previous_version", "next_version", "who", "why"]
    frame = pd.DataFrame(rows).reindex(columns=columns)
    if frame.empty:
        return frame
    frame["when"] = pd.to_datetime(frame["when"], utc=True)
    order = frame["action"].map({"removed": 0, "set": 1})  # within one instant, the old version leaves first
    return frame.assign(_o=order).sort_values(["when", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)


def champion_at(task: str, when: datetime | pd.Timestamp | str, settings: Settings) -> str | None:
    """The version that was `champion` at `when` (UTC if naive), from the alias history; None before the first."""
    moment = pd.Timestamp(when)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    moves = alias_moves(task, settings)
    if moves.empty:
        return None
    sets = moves[(moves["alias"] == "champion") & (moves["action"] == "set") & (moves["when"] <= moment)]
    return None if sets.empty else str(sets["version"].iloc[-1])
