"""The API in-process on a real workspace: batch decisions, validation, explanations, logs, hot model reload."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
from fastapi.testclient import TestClient

from journey.logbook import DecisionLog
from journey.scoring import TASKS
from serving.app import create_app
from tests.integration.conftest import Workspace

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(workspace: Workspace) -> Iterator[TestClient]:
    settings = workspace.settings.model_copy(update={"model_reload_seconds": 0.5})
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_batch_answers_in_order_and_logs_every_decision(client: TestClient, workspace: Workspace) -> None:
    ids = [*workspace.customers["customer_id"].astype(str).iloc[:5], "never-seen"]
    response = client.post("/v1/next-best-actions", json={"customers": [{"customer_id": c} for c in ids]})
    assert response.status_code == 200, response.text
    decisions = response.json()["decisions"]
    assert [d["customer_id"] for d in decisions] == ids
    assert [d["cold_start"] for d in decisions] == [False] * 5 + [True]
    log = DecisionLog(workspace.settings.decision_log_path)
    try:
        logged = set(log.contacts_frame()["decision_id"])
    finally:
        log.close()
    assert {d["decision_id"] for d in decisions} <= logged


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/v1/next-best-actions", {"customers": []}, "customers"),
        ("/v1/next-best-actions", {"customers": [{"customer_id": "c1", "explain": True}]}, "explain"),
        ("/v1/next-best-action", {"customer_id": "a\u0000b"}, "customer_id"),
        ("/v1/next-best-action", {"customer_id": 42}, "customer_id"),
        ("/v1/feedback", {"decision_id": "d", "outcome": "clicked", "ts": "0001-01-01T00:00:00"}, "ts"),
        ("/v1/feedback", {"decision_id": "d", "outcome": "clicked", "value": -1}, "value"),
        ("/v1/feedback", {"decision_id": "d", "outcome": "clicked", "channel": "email"}, "channel"),
    ],
)
def test_invalid_requests_get_a_422_naming_the_field(client: TestClient, path: str, payload: dict, field: str) -> None:
    response = client.post(path, json=payload)
    assert response.status_code == 422, response.text
    assert field in json.dumps(response.json()["detail"])


def test_explain_returns_feature_contributions(client: TestClient, workspace: Workspace) -> None:
    customer = str(workspace.customers["customer_id"].iloc[2])
    plain = client.post("/v1/next-best-action", json={"customer_id": customer}).json()
    assert plain["contributions"] == {}
    explained = client.post("/v1/next-best-action", json={"customer_id": customer, "explain": True}).json()
    assert explained["contributions"]["phase"]
    assert {"feature", "value", "contribution"} <= set(explained["contributions"]["phase"][0])


def test_logs_carry_no_customer_id(client: TestClient, workspace: Workspace, caplog: pytest.LogCaptureFixture) -> None:
    customer = str(workspace.customers["customer_id"].iloc[3])
    with caplog.at_level(logging.DEBUG):
        client.post("/v1/next-best-action", json={"customer_id": customer})
        client.post("/v1/next-best-action", json={"customer_id": "secret-visitor-123"})
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert any(r.name == "parcours.access" for r in caplog.records)
    assert customer not in text and "secret-visitor-123" not in text


def _new_version(workspace: Workspace, task: str, source: str | None = None) -> str:
    mlflow.set_tracking_uri(workspace.settings.tracking_uri)
    registry = mlflow.MlflowClient()
    name = workspace.settings.model_name(task)
    current = registry.get_model_version_by_alias(name, "champion")
    created = registry.create_model_version(name, source=source or str(current.source), run_id=current.run_id)
    registry.set_registered_model_alias(name, "champion", created.version)
    return str(created.version)


def _serving_version(client: TestClient, task: str) -> str:
    return next(m["version"] for m in client.get("/v1/models").json() if m["task"] == task)


def test_a_broken_champion_never_replaces_the_serving_model(
    client: TestClient, workspace: Workspace, tmp_path: Path
) -> None:
    before = _serving_version(client, "churn")
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    _new_version(workspace, "churn", source=str(broken))
    try:
        swapped = client.app.state.reloader.check()  # type: ignore[attr-defined]
        assert "churn" not in swapped
        assert _serving_version(client, "churn") == before
        assert client.post("/v1/next-best-action", json={"customer_id": "c-x"}).status_code == 200
        failed = [line for line in client.get("/metrics").text.splitlines() if 'outcome="failed"' in line]
        assert any('task="churn"' in line and line.endswith(" 1.0") for line in failed), failed
    finally:  # leave a loadable champion for the other tests of the module
        mlflow.MlflowClient().set_registered_model_alias(workspace.settings.model_name("churn"), "champion", before)


def test_moving_the_champion_alias_hot_reloads_without_failing_requests(
    client: TestClient, workspace: Workspace
) -> None:
    ids = workspace.customers["customer_id"].astype(str).tolist()
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        i = 0
        while not stop.is_set() and i < 2000:
            statuses.append(client.post("/v1/next-best-action", json={"customer_id": ids[i % len(ids)]}).status_code)
            i += 1

    worker = threading.Thread(target=load)
    worker.start()
    try:
        new = _new_version(workspace, "phase")
        deadline = time.monotonic() + 60
        while _serving_version(client, "phase") != new and time.monotonic() < deadline:
            time.sleep(0.2)  # the background poller (every 0.5 s here) picks it up
        assert _serving_version(client, "phase") == new
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(timeout=120)
    assert statuses and set(statuses) == {200}
    decision = client.post("/v1/next-best-action", json={"customer_id": ids[0]}).json()
    assert decision["model_versions"]["phase"].endswith(f"/{new}")
    assert set(decision["model_versions"]) == set(TASKS)


def test_concurrent_requests_are_micro_batched_and_each_gets_its_own_logged_decision(
    client: TestClient, workspace: Workspace
) -> None:
    ids = [*workspace.customers["customer_id"].astype(str).iloc[10:30], "never-seen-burst"]

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await asyncio.gather(*(http.post("/v1/next-best-action", json={"customer_id": c}) for c in ids))

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * len(ids)
    bodies = [r.json() for r in responses]
    assert [b["customer_id"] for b in bodies] == ids and bodies[-1]["cold_start"] is True
    sizes = client.app.state.runtime.batcher.batch_sizes  # type: ignore[attr-defined]
    assert max(sizes) > 1  # decided together, not one by one
    with sqlite3.connect(workspace.settings.decision_log_path) as db:
        marks = ",".join("?" * len(bodies))
        logged = {
            row[0]: row[1:]
            for row in db.execute(
                f"SELECT decision_id, customer_id, channel, content, propensity FROM decisions "
                f"WHERE decision_id IN ({marks})",
                [b["decision_id"] for b in bodies],
            )
        }
    for body in bodies:  # each answer is the decision logged under its id
        action = body["action"]
        assert logged[body["decision_id"]] == (
            body["customer_id"],
            action["channel"],
            action["content"],
            body["propensity"],
        )
