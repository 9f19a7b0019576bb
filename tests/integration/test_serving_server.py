"""The real API server (uvicorn subprocesses on 127.0.0.1, two workers): fuzzing, auth, kill -9, Redis outage."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from serving.security import hash_key
from tests.integration.conftest import Workspace
from tests.servers import free_port, redis_server

pytestmark = pytest.mark.integration

KEY = "integration-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass(frozen=True)
class Api:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            payload = json.dumps(body) if body is not None else None
            conn.request(method, path, payload, {"Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            raw = response.read()
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, raw.decode()
        finally:
            conn.close()


@contextmanager
def api_server(home: Path, workers: int = 2, **env: str) -> Iterator[Api]:
    """`serving.app.serve` (what `parcours serve` runs) in its own process group; stopped (or killed) after."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PARCOURS_")}
    environ.update(PARCOURS_HOME=str(home), PARCOURS_API_KEYS=hash_key(KEY), PARCOURS_MODEL_RELOAD_SECONDS="0", **env)
    code = (
        "from journey.settings import Settings; from serving.app import serve; "
        f"serve(Settings(), port={port}, workers={workers})"
    )
    log = home / "logs" / f"api-{port}.log"  # a file, not a pipe: an unread pipe would fill and block the server
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", code], env=environ, start_new_session=True, stdout=out, stderr=subprocess.STDOUT
        )
    api = Api(port, process, log)
    try:
        _wait_healthy(api)
        yield api
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _wait_healthy(api: Api, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.process.poll() is not None:
            raise RuntimeError(f"API exited early: {api.log.read_text()[-2000:]}")
        with suppress(OSError, http.client.HTTPException):
            # readiness needs every worker up: ask a few times
            if all(api.call("GET", "/healthz")[0] == 200 for _ in range(4)):
                return
        time.sleep(0.3)
    raise TimeoutError(f"API not healthy on port {api.port} after {timeout} s")


@pytest.fixture(scope="module")
def api(workspace: Workspace) -> Iterator[Api]:
    with api_server(workspace.home) as server:
        yield server


def test_api_keys_guard_the_api_but_not_probes(api: Api, workspace: Workspace) -> None:
    customer = str(workspace.customers["customer_id"].iloc[0])
    assert api.call("POST", "/v1/next-best-action", {"customer_id": customer})[0] == 401
    assert (
        api.call("POST", "/v1/next-best-action", {"customer_id": customer}, {"Authorization": "Bearer nope"})[0] == 401
    )
    assert api.call("GET", "/v1/models")[0] == 401
    status, body = api.call("POST", "/v1/next-best-action", {"customer_id": customer}, AUTH)
    assert status == 200, body
    assert api.call("POST", "/v1/next-best-action", {"customer_id": customer}, {"X-API-Key": KEY})[0] == 200
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert api.call("GET", probe)[0] == 200, probe


def test_metrics_count_decisions_and_expose_model_versions(api: Api, workspace: Workspace) -> None:
    api.call("POST", "/v1/next-best-action", {"customer_id": "never-seen"}, AUTH)
    text = api.call("GET", "/metrics")[1]
    assert "parcours_http_request_duration_seconds_bucket" in text
    assert 'route="/v1/next-best-action"' in text
    assert "parcours_decisions_total" in text
    assert 'parcours_model_info{name="parcours-phase"' in text
    assert "never-seen" not in text  # no customer ids in labels


def test_oversized_and_oversized_batch_requests_are_refused(api: Api) -> None:
    huge = {"customer_id": "x" * 100, "context": {"channel": "y" * 400_000}}
    assert api.call("POST", "/v1/next-best-action", huge, AUTH)[0] == 413
    batch = {"customers": [{"customer_id": f"c{i}"} for i in range(501)]}
    status, body = api.call("POST", "/v1/next-best-actions", batch, AUTH)
    assert status == 422 and "customers" in json.dumps(body)


def test_schemathesis_finds_no_server_error(api: Api) -> None:
    """Generated valid and invalid requests for every operation: never a 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable

    schema = schemathesis.openapi.from_url(f"{api.base_url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @settings(
                max_examples=50,
                derandomize=True,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failures as they are
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(mode))
            def run(case: schemathesis.Case) -> None:
                response = case.call(base_url=api.base_url, headers=AUTH, timeout=120)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.path}: {response.status_code} {case.body!r:.200}")

            try:
                run()
            except Unsatisfiable:  # e.g. no invalid request exists for a GET without parameters
                assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
    assert not failures, "\n".join(failures[:10])


def test_acknowledged_decisions_and_feedback_survive_kill_9(workspace: Workspace) -> None:
    """Concurrent clients against two workers (two log writers); SIGKILL mid-load; every acknowledged id is there."""
    customers = workspace.customers["customer_id"].astype(str).tolist()
    acked_decisions: list[str] = []
    acked_feedback: list[int] = []
    stop = threading.Event()

    def client(offset: int, api: Api) -> None:
        i = offset
        while not stop.is_set():
            i += 1
            try:
                status, body = api.call(
                    "POST", "/v1/next-best-action", {"customer_id": customers[i % len(customers)]}, AUTH
                )
                if status != 200:
                    continue
                acked_decisions.append(body["decision_id"])
                status, fb = api.call(
                    "POST", "/v1/feedback", {"decision_id": body["decision_id"], "outcome": "opened"}, AUTH
                )
                if status == 201:
                    acked_feedback.append(fb["feedback_id"])
            except (OSError, http.client.HTTPException):
                return  # the server is gone

    with api_server(workspace.home) as api:
        threads = [threading.Thread(target=client, args=(k * 1000, api)) for k in range(6)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acked_decisions) < 150 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(api.process.pid, signal.SIGKILL)  # mid-load, no graceful shutdown
        api.process.wait(timeout=10)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    assert len(acked_decisions) >= 150 and acked_feedback
    with sqlite3.connect(workspace.settings.decision_log_path) as db:
        logged = {row[0] for row in db.execute("SELECT decision_id FROM decisions")}
        feedback = {row[0] for row in db.execute("SELECT feedback_id FROM feedback")}
    assert not set(acked_decisions) - logged
    assert not set(acked_feedback) - feedback


def test_redis_outage_degrades_answers_and_readiness_says_why(workspace: Workspace, tmp_path: Path) -> None:
    from features.store import materialize
    from journey.settings import Settings

    customer = str(workspace.customers["customer_id"].iloc[0])
    with redis_server(tmp_path) as url:
        materialize(Settings(home=workspace.home, online_store="redis", redis_url=url))
        redis_env = {"PARCOURS_ONLINE_STORE": "redis", "PARCOURS_REDIS_URL": url}
        with api_server(workspace.home, workers=1, **redis_env) as api:
            status, body = api.call("POST", "/v1/next-best-action", {"customer_id": customer}, AUTH)
            assert status == 200 and body["degraded"] is False and body["cold_start"] is False
            assert api.call("GET", "/readyz")[0] == 200
            _stop_redis(url)

            status, body = api.call("POST", "/v1/next-best-action", {"customer_id": customer}, AUTH)
            assert status == 200, body
            assert body["degraded"] is True
            assert body["action"]["channel"] in {"none", "web"}  # nothing known about consent: consent-free only
            status, ready = api.call("GET", "/readyz")
            assert status == 503 and ready["checks"]["online_store"].startswith("unreachable")
            assert api.call("GET", "/healthz")[0] == 200


def _stop_redis(url: str) -> None:
    import redis

    host, port = url.split(":")
    with suppress(redis.exceptions.ConnectionError):
        redis.Redis(host=host, port=int(port)).shutdown(nosave=True)


def test_concurrent_decisions_are_each_answered_with_their_own_logged_decision(api: Api, workspace: Workspace) -> None:
    """16 clients on two workers (micro-batched): every answer is its own customer's decision, logged once."""
    customers = workspace.customers["customer_id"].astype(str).tolist()[:160]
    answers: list[tuple[str, int, Any]] = []

    def client(chunk: list[str]) -> None:
        for customer in chunk:
            status, body = api.call("POST", "/v1/next-best-action", {"customer_id": customer}, AUTH)
            answers.append((customer, status, body))

    threads = [threading.Thread(target=client, args=(customers[k::16],)) for k in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == len(customers) and {status for _, status, _ in answers} == {200}
    assert all(body["customer_id"] == customer for customer, _, body in answers)
    ids = [body["decision_id"] for _, _, body in answers]
    assert len(set(ids)) == len(ids)
    with sqlite3.connect(workspace.settings.decision_log_path) as db:
        logged = {
            row[0]: row[1:]
            for row in db.execute(
                f"SELECT decision_id, customer_id, channel, content, propensity FROM decisions "
                f"WHERE decision_id IN ({','.join('?' * len(ids))})",
                ids,
            )
        }
    for customer, _, body in answers:
        action = body["action"]
        assert logged[body["decision_id"]] == (customer, action["channel"], action["content"], body["propensity"])


def test_two_workers_never_contact_one_customer_twice_at_once(api: Api, workspace: Workspace) -> None:
    """Eight clients ask for the same customer at the same instant (a barrier per customer), so each customer
    gets simultaneous requests on both workers. The default policies allow one outbound contact a day (and a
    20 h gap; the on-site web slot is uncapped): a worker whose read missed the other worker's contact withdraws
    its own to no contact. Every answer is what was logged."""
    capped = "channel NOT IN ('none', 'web')"
    with sqlite3.connect(workspace.settings.decision_log_path) as db:
        touched = {row[0] for row in db.execute(f"SELECT DISTINCT customer_id FROM decisions WHERE {capped}")}
    fresh = [c for c in reversed(workspace.customers["customer_id"].astype(str).tolist()) if c not in touched][:30]
    answers: list[tuple[str, int, Any]] = []
    start = threading.Barrier(8)

    def client() -> None:
        for customer in fresh:
            start.wait(timeout=30)
            status, body = api.call("POST", "/v1/next-best-action", {"customer_id": customer}, AUTH)
            answers.append((customer, status, body))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == 8 * len(fresh) and {status for _, status, _ in answers} == {200}
    with sqlite3.connect(workspace.settings.decision_log_path) as db:
        marks = ",".join("?" * len(fresh))
        contacts = dict(
            db.execute(
                f"SELECT customer_id, COUNT(*) FROM decisions WHERE customer_id IN ({marks}) AND {capped} "
                "GROUP BY customer_id",
                fresh,
            ).fetchall()
        )
        logged = {
            row[0]: row[1:]
            for row in db.execute(
                f"SELECT decision_id, channel, content FROM decisions WHERE customer_id IN ({marks})", fresh
            )
        }
    assert contacts and max(contacts.values()) == 1  # some were contacted, none twice
    for _, _, body in answers:
        assert logged[body["decision_id"]] == (body["action"]["channel"], body["action"]["content"])
