"""Always-on outbound batch: decide for the whole customer base with the same engine and policies as the API.

The base is scored in customer batches (model inputs, eligibility, policies, one response predict per batch),
then the decisions are taken once over the whole base, because channel capacities (catalog `daily_capacity`)
are shared by everyone: when more customers want a capped channel than it can take, the highest-value ones
get it and the others fall back to their next best allowed action (`journey.decision.allocate_capacity`).
Contact policies are evaluated from the snapshot's features, with `features.policy_state` semantics, vectorised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.feast_repo.data_sources import TIMESTAMP_FIELD
from features.feast_repo.entities import JOIN_KEY
from features.policy_state import contact_states
from features.request import add_request_features
from journey.catalog import Catalog, load_catalog
from journey.decision import BatchDecisions, BatchScores, DecisionEngine
from journey.errors import DataContractError, NotReadyError
from journey.policies import load_policies
from journey.scoring import ModelSet
from journey.settings import Settings

log = logging.getLogger(__name__)

BATCH_CUSTOMERS = 20_000  # per scoring batch: ~12 response rows per customer × 116 float64 inputs ≈ 220 MB
Progress = Callable[[int, int], None]  # (customers done, customers in total)
OUTPUT_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "phase",
    "churn_risk",
    "purchase_propensity",
    "channel",
    "content",
    "objective",
    "score",
    "uplift",
    "propensity",
)


@dataclass(frozen=True)
class BatchPlan:
    """What scoring the base needs besides the features: the engine and the channel capacities."""

    engine: DecisionEngine
    capacities: dict[str, int]
    batch_size: int = BATCH_CUSTOMERS


def plan_for(settings: Settings, models: ModelSet | None = None, batch_size: int = BATCH_CUSTOMERS) -> BatchPlan:
    """Catalog, policies and champion models of the workspace, as serving loads them."""
    from serving.models import load_models

    catalog = load_catalog(settings.catalog_path)
    compile_models = settings.compiled_models != "off"  # a base-wide run repays a compilation many times over
    models = models if models is not None else load_models(settings, compile_models=compile_models)
    if not models.loaded():
        raise NotReadyError("no champion model is registered: run `parcours train` first")
    engine = DecisionEngine(
        catalog=catalog,
        policies=load_policies(settings.policies_path),
        models=models,
        exploration_rate=settings.exploration_rate,
        policy_name="nba-batch",
        rng=np.random.default_rng(settings.seed),
        predict_threads=0,  # every core: the base is scored in large predicts
    )
    return BatchPlan(engine=engine, capacities=capacities(catalog), batch_size=batch_size)


def capacities(catalog: Catalog) -> dict[str, int]:
    return {name: spec.daily_capacity for name, spec in catalog.channels.items() if spec.daily_capacity is not None}


def score_base(
    settings: Settings,
    features: pd.DataFrame,
    now: pd.Timestamp,
    progress: Progress | None = None,
    *,
    plan: BatchPlan | None = None,
    top_k: int = 0,
) -> pd.DataFrame:
    """One decision per row of `features` (a `customer_id` column + snapshot feature columns) at `now`.

    Returns one row per customer, in input order: `customer_id`, `phase`, `churn_risk`, `purchase_propensity`,
    `p_<phase>`, `channel`, `content`, `objective`, `score`, `uplift`, `p_response`, `p_baseline`,
    `objective_weight`, `propensity`, `explored`, `n_candidates` (+ `alt<i>_action/score` for `top_k` > 0).
    """
    plan = plan or plan_for(settings)
    return decide_base(plan, features, now, progress).to_frame(top_k=top_k)


def decide_base(
    plan: BatchPlan, features: pd.DataFrame, now: pd.Timestamp, progress: Progress | None = None
) -> BatchDecisions:
    """Score every batch, then choose over the whole base (capacities are global)."""
    now = _utc(now)
    ids = _customer_ids(features)
    total = len(features)
    started = time.perf_counter()
    scores: BatchScores | None = None
    for lo in range(0, total, plan.batch_size):
        chunk = features.iloc[lo : lo + plan.batch_size]
        part = score_chunk(plan.engine, ids[lo : lo + plan.batch_size], chunk, now)
        scores = scores or BatchScores.allocate(total, part)
        scores.assign(lo, part)
        if progress is not None:
            progress(min(lo + plan.batch_size, total), total)
    if scores is None:  # no customer at all
        scores = score_chunk(plan.engine, ids, features, now)
    decisions = plan.engine.choose(scores, plan.capacities, top_k=3)
    log.debug("decided for %d customers in %.1f s", total, time.perf_counter() - started)
    return decisions


def score_chunk(engine: DecisionEngine, ids: np.ndarray, chunk: pd.DataFrame, now: pd.Timestamp) -> BatchScores:
    """Request features at `now`, contact state from the snapshot, then the engine's scores for one batch."""
    frame = add_request_features(chunk.reset_index(drop=True), now)
    return engine.score_batch(ids, frame, contact_states(frame, now), now)


def latest_snapshot(settings: Settings) -> tuple[pd.DataFrame, pd.Timestamp]:
    """The offline store's rows at its latest `event_timestamp` (the workspace's current features)."""
    from features.store import offline_path

    path = offline_path(settings)
    if not path.exists():
        raise NotReadyError(f"no offline features at {path}: run `parcours features build` (or `parcours demo`)")
    stamps = pd.read_parquet(path, columns=[TIMESTAMP_FIELD])[TIMESTAMP_FIELD]
    if stamps.empty:
        raise NotReadyError(f"{path} holds no feature rows")
    latest = pd.Timestamp(stamps.max())
    frame = pd.read_parquet(path, filters=[(TIMESTAMP_FIELD, "==", latest)])
    return frame.reset_index(drop=True), _utc(latest)


def features_as_of(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    contacts: pd.DataFrame,
    as_of: pd.Timestamp,
    batch_size: int = 50_000,
) -> Iterator[pd.DataFrame]:
    """Feature rows as of `as_of` for every customer, built in customer batches (bounded memory)."""
    from features.build import build_features

    ids = customers[JOIN_KEY].astype(str).to_numpy()
    event_ids, contact_ids = events[JOIN_KEY].astype(str), contacts[JOIN_KEY].astype(str)
    for lo in range(0, len(ids), batch_size):
        batch = set(ids[lo : lo + batch_size])
        rows = build_features(
            customers[customers[JOIN_KEY].astype(str).isin(batch)],
            events[event_ids.isin(batch)],
            contacts[contact_ids.isin(batch)],
            [as_of],
        )
        if len(rows):
            yield rows


def _customer_ids(features: pd.DataFrame) -> np.ndarray:
    if JOIN_KEY not in features.columns:
        raise DataContractError(f"features: column '{JOIN_KEY}' is missing (one row per customer is expected)")
    ids = features[JOIN_KEY].astype(str).to_numpy(dtype=object)
    duplicated = pd.Index(ids).duplicated()
    if duplicated.any():
        first = int(np.flatnonzero(duplicated)[0])
        raise DataContractError(f"features: row {first}: customer_id '{ids[first]}' appears more than once")
    return ids


def _utc(ts: pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
