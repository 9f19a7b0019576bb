"""Real-time features on the real stack: POST /v1/events → event log → recompute → Feast online → next decision."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.realtime import read_source
from features.store import offline_path, online_features
from journey.catalog import load_catalog
from journey.eventlog import event_log_path, read_ingested
from parcours import pipelines
from serving.app import create_app
from tests.integration.conftest import Workspace

pytestmark = pytest.mark.integration

CART_RULE = "eligibility rule failed: cart_open"
CART_CHANNELS = set(load_catalog().contents["cart_reminder"].channels)


@pytest.fixture(scope="module")
def client(workspace: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(workspace.settings)) as test_client:
        yield test_client


def _decide(client: TestClient, customer_id: str) -> dict[str, Any]:
    response = client.post("/v1/next-best-action", json={"customer_id": customer_id})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _cart_rule_excluded(decision: dict[str, Any]) -> bool:
    return any(e["content"] == "cart_reminder" and e["reason"].startswith(CART_RULE) for e in decision["excluded"])


def _logged_features(workspace: Workspace, decision_id: str) -> dict[str, float]:
    conn = sqlite3.connect(workspace.settings.decision_log_path)
    try:
        row = conn.execute("SELECT features FROM decisions WHERE decision_id = ?", (decision_id,)).fetchone()
    finally:
        conn.close()
    assert row is not None
    features: dict[str, float] = json.loads(row[0])
    return features


def _now_iso(minutes_ago: float) -> str:
    return (pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=minutes_ago)).isoformat()


def test_the_build_records_its_source(workspace: Workspace) -> None:
    source = read_source(workspace.settings)
    assert source is not None
    assert source.data_dir == str((workspace.home / "data" / "demo").resolve())
    assert source.snapshot_every_days == workspace.settings.snapshot_every_days
    assert source.rows["customers"] == len(workspace.customers)


def test_add_to_cart_reaches_the_next_decision(client: TestClient, workspace: Workspace) -> None:
    # a customer for whom cart_reminder is held back only by its rule (no open cart)
    chosen = None
    for customer_id in workspace.customers["customer_id"].astype(str).head(120):
        if online_features(workspace.settings, [customer_id])["cart_open"].iloc[0] != 0:
            continue
        if _cart_rule_excluded(_decide(client, customer_id)):
            chosen = customer_id
            break
    assert chosen is not None, "no customer with cart_reminder excluded by its rule in the sample"
    before = online_features(workspace.settings, [chosen]).iloc[0]

    events = [
        {"customer_id": chosen, "ts": _now_iso(3), "event_type": "product_view", "channel": "web", "content": "tv-55"},
        {"customer_id": chosen, "ts": _now_iso(2), "event_type": "add_to_cart", "channel": "web", "content": "tv-55"},
    ]
    response = client.post("/v1/events", json={"events": events})
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["customers"], body["customers_refreshed"]) == (2, 1, 1)
    assert body["refresh_error"] is None

    after = online_features(workspace.settings, [chosen]).iloc[0]
    assert (after["cart_abandoned_7d"], after["cart_open"]) == (1, 1)
    assert after["add_to_cart_7d"] == before["add_to_cart_7d"] + 1
    assert after["product_views_7d"] == before["product_views_7d"] + 1

    decision = _decide(client, chosen)
    assert not _cart_rule_excluded(decision)
    logged = _logged_features(workspace, str(decision["decision_id"]))
    assert logged["cart_open"] == 1

    # a purchase closes the cart: the next decision sees that too
    purchase = {"customer_id": chosen, "ts": _now_iso(1), "event_type": "purchase", "channel": "web", "value": 499}
    assert client.post("/v1/events", json=purchase).status_code == 202
    assert online_features(workspace.settings, [chosen])[["cart_abandoned_7d", "cart_open"]].iloc[0].tolist() == [0, 0]
    closed = _decide(client, chosen)
    offered = [closed["action"], *closed["alternatives"]]
    assert all(a["content"] != "cart_reminder" for a in offered)
    assert {e["channel"] for e in closed["excluded"] if e["content"] == "cart_reminder"} == CART_CHANNELS


def test_an_unknown_customer_is_accepted_as_a_new_visitor(client: TestClient, workspace: Workspace) -> None:
    assert _decide(client, "rt-visitor-1")["cold_start"] is True
    response = client.post(
        "/v1/events", json={"customer_id": "rt-visitor-1", "event_type": "page_view", "channel": "web"}
    )
    assert response.status_code == 202, response.text
    assert response.json()["customers_refreshed"] == 1
    features = online_features(workspace.settings, ["rt-visitor-1"]).iloc[0]
    assert features["events_total"] == 1 and features["is_identified"] == 0 and features["consent_email"] == 0
    assert _decide(client, "rt-visitor-1")["cold_start"] is False


@pytest.mark.parametrize(
    ("event", "field", "words"),
    [
        ({"event_type": "teleport"}, "event_type", "event vocabulary"),
        ({"ts": "01/06/2025"}, "ts", "timestamp"),
        ({"event_type": "purchase", "value": -3}, "value", ">= 0"),
        ({"channel": "pigeon"}, "channel", "event channels"),
    ],
)
def test_a_contract_violation_is_a_422_naming_item_field_and_rule(
    client: TestClient, workspace: Workspace, event: dict[str, object], field: str, words: str
) -> None:
    stored = len(read_ingested(event_log_path(workspace.settings)))
    good = {"customer_id": "rt-x", "event_type": "page_view", "channel": "web"}
    response = client.post("/v1/events", json={"events": [good, {**good, **event}]})
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "events", 1, field]
    assert words in problem["msg"]
    assert len(read_ingested(event_log_path(workspace.settings))) == stored  # all or nothing


@pytest.mark.parametrize(
    "body",
    [
        {"events": []},
        {"events": [{"customer_id": "a", "event_type": "page_view"}] * 1001},
        {"customer_id": "a", "event_type": "page_view", "colour": "red"},
        {"customer_id": "a", "event_type": "page_view", "value": "lots"},
        {"customer_id": "", "event_type": "page_view"},
        [1, 2],
    ],
)
def test_malformed_bodies_are_422_not_500(client: TestClient, body: object) -> None:
    response = client.post("/v1/events", json=body)
    assert response.status_code == 422, response.text


def test_single_event_latency_is_reported(client: TestClient, workspace: Workspace) -> None:
    customer_id = str(workspace.customers["customer_id"].iloc[-1])
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        response = client.post(
            "/v1/events", json={"customer_id": customer_id, "event_type": "page_view", "channel": "web"}
        )
        timings.append(time.perf_counter() - start)
        assert response.status_code == 202
    print(
        f"\nPOST /v1/events, one event, {len(workspace.customers)} customers: "
        f"median {sorted(timings)[2] * 1000:.0f} ms, max {max(timings) * 1000:.0f} ms"
    )


def test_zz_the_next_offline_build_sees_ingested_events(workspace: Workspace) -> None:
    """Runs last in this module: it rebuilds the workspace's offline snapshots."""
    settings = workspace.settings
    catalog = pipelines.catalog_for(settings)
    data_dir = workspace.home / "data" / "demo"
    ingested = read_ingested(event_log_path(settings))
    customer_id = str(ingested.loc[ingested["event_type"] == "add_to_cart", "customer_id"].iloc[0])
    base = pipelines.validate(data_dir, settings, catalog).events
    expected = int((base["customer_id"] == customer_id).sum() + (ingested["customer_id"] == customer_id).sum())

    data = pipelines.load_usable(data_dir, settings, catalog)
    assert "rt-visitor-1" in set(data.customers["customer_id"])
    build = pipelines.build_features(data, settings)
    offline = pd.read_parquet(offline_path(settings))
    latest = offline[(offline["customer_id"] == customer_id) & (offline["event_timestamp"] == build.latest)]
    assert latest["events_total"].tolist() == [expected]
    assert latest["add_to_cart_7d"].iloc[0] >= 1 and latest["purchases_30d"].iloc[0] >= 1
    source = read_source(settings)
    assert source is not None and source.rows["events"] == len(data.events)
