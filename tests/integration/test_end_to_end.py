"""The whole pipeline on ~2,000 simulated customers: CLI → Feast → LightGBM in MLflow → FastAPI."""

from __future__ import annotations

from collections.abc import Iterator

import mlflow
import pytest
from fastapi.testclient import TestClient

from journey.catalog import load_catalog
from journey.logbook import DecisionLog
from journey.scoring import TASKS
from journey.vocabulary import CONSENT_COLUMNS, PHASES, Objective
from serving.app import create_app
from tests.integration.conftest import Workspace

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(workspace: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(workspace.settings)) as test_client:
        yield test_client


def test_every_task_has_a_champion_in_the_registry(workspace: Workspace) -> None:
    mlflow.set_tracking_uri(workspace.settings.tracking_uri)
    client = mlflow.MlflowClient()
    for task in TASKS:
        version = client.get_model_version_by_alias(workspace.settings.model_name(task), "champion")
        assert int(version.version) >= 1


def test_the_response_model_is_response_times_effect_with_opt_out_rates(workspace: Workspace) -> None:
    mlflow.set_tracking_uri(workspace.settings.tracking_uri)
    uri = f"models:/{workspace.settings.model_name('response')}@champion"
    metadata = mlflow.models.get_model_info(uri).metadata or {}
    catalog = load_catalog()
    assert metadata["uplift_method"] == "response_effect"
    assert set(metadata["effect_per_response"]) == set(catalog.contents)
    assert all(0.0 <= e < 1.0 for e in metadata["effect_per_response"].values())
    rates = metadata["opt_out_rate"]
    assert rates["web"] < rates["email"]  # nothing to unsubscribe from on the site


def test_decision_for_a_known_customer_is_complete_and_consistent(client: TestClient, workspace: Workspace) -> None:
    customer = workspace.customers.iloc[0]
    response = client.post("/v1/next-best-action", json={"customer_id": str(customer["customer_id"])})
    assert response.status_code == 200, response.text
    body = response.json()

    assert body["customer_id"] == customer["customer_id"]
    assert body["cold_start"] is False
    assert body["phase"]["label"] in PHASES
    assert sum(body["phase"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert 0.0 <= body["churn_risk"] <= 1.0
    assert 0.0 <= body["purchase_propensity"] <= 1.0
    assert set(body["model_versions"]) == set(TASKS)

    action = body["action"]
    catalog = load_catalog()
    if action["channel"] != "none":
        assert action["objective"] in {o.value for o in Objective}
        assert action["channel"] in catalog.contents[action["content"]].channels
    scores = [action["score"]] + [a["score"] for a in body["alternatives"]]
    if not body["explored"]:
        assert scores == sorted(scores, reverse=True)
    assert 0 < body["propensity"] <= 1


def test_no_channel_without_consent_is_ever_returned(client: TestClient, workspace: Workspace) -> None:
    sample = workspace.customers.sample(40, random_state=1)
    for _, customer in sample.iterrows():
        body = client.post("/v1/next-best-action", json={"customer_id": customer["customer_id"]}).json()
        for proposed in [body["action"], *body["alternatives"]]:
            consent = CONSENT_COLUMNS.get(proposed["channel"])
            if consent:
                assert bool(customer[consent]), (customer["customer_id"], proposed)


def test_unknown_customer_gets_a_flagged_cold_start_answer(client: TestClient) -> None:
    body = client.post("/v1/next-best-action", json={"customer_id": "never-seen-before"}).json()
    assert body["cold_start"] is True
    # Nothing is known about consent, so only consent-free channels can be proposed.
    assert body["action"]["channel"] in {"none", "web"}


def test_decisions_and_feedback_are_logged(client: TestClient, workspace: Workspace) -> None:
    customer_id = str(workspace.customers["customer_id"].iloc[1])
    decision = client.post("/v1/next-best-action", json={"customer_id": customer_id}).json()
    feedback = client.post("/v1/feedback", json={"decision_id": decision["decision_id"], "outcome": "clicked"})
    assert feedback.status_code == 201, feedback.text

    log = DecisionLog(workspace.settings.decision_log_path)
    try:
        contacts = log.contacts_frame()
        logged = contacts[contacts["decision_id"] == decision["decision_id"]]
        assert logged["channel"].tolist() == [decision["action"]["channel"]]
        assert logged["propensity"].iloc[0] == pytest.approx(decision["propensity"])
        assert decision["decision_id"] in set(log.feedback_frame()["decision_id"])
    finally:
        log.close()


@pytest.mark.parametrize(
    ("path", "payload", "status"),
    [
        ("/v1/next-best-action", {"customer_id": ""}, 422),
        ("/v1/next-best-action", {"customer_id": "c1", "unexpected": 1}, 422),
        ("/v1/next-best-action", {"customer": "c1"}, 422),
        ("/v1/feedback", {"decision_id": "does-not-exist", "outcome": "clicked"}, 404),
        ("/v1/feedback", {"decision_id": "x", "outcome": "teleported"}, 422),
    ],
)
def test_client_mistakes_get_a_clear_4xx(client: TestClient, path: str, payload: dict, status: int) -> None:
    response = client.post(path, json=payload)
    assert response.status_code == status
    assert response.json()["detail"]


def test_malformed_json_is_a_422(client: TestClient) -> None:
    response = client.post("/v1/next-best-action", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422


def test_health_readiness_and_models(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    models = client.get("/v1/models").json()
    assert {m["task"] for m in models} == set(TASKS)
