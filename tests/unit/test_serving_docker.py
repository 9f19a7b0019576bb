"""Dockerfile and docker-compose.yml, checked statically (no Docker engine here) against the code they run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from journey.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def _settings_env_names() -> set[str]:
    return {f"PARCOURS_{name.upper()}" for name in Settings.model_fields}


def test_compose_runs_the_api_redis_and_mlflow(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"api", "redis", "mlflow"} <= set(services)
    assert services["api"]["ports"] == ["8000:8000"]
    for internal in ("redis", "mlflow"):  # only the API is published beyond loopback
        assert all(str(p).startswith("127.0.0.1:") for p in services[internal]["ports"])
    assert services["mlflow"]["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "--port=5000" in services["mlflow"]["command"]
    assert set(services["api"]["depends_on"]) == {"redis", "mlflow"}


def test_compose_environment_names_exist_in_settings(compose: dict[str, Any]) -> None:
    known = _settings_env_names()
    for name, service in compose["services"].items():
        for env in service.get("environment", {}):
            if env.startswith("PARCOURS_"):
                assert env in known, f"{name}: {env} is not a Settings field"
    api = compose["services"]["api"]["environment"]
    assert api["PARCOURS_ONLINE_STORE"] == "redis" and api["PARCOURS_REDIS_URL"] == "redis:6379"
    assert api["PARCOURS_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    # Binding 0.0.0.0 needs keys: compose refuses to start without them (${VAR:?message}).
    assert re.fullmatch(r"\$\{PARCOURS_API_KEYS:\?.+\}", api["PARCOURS_API_KEYS"])


def test_compose_api_command_binds_all_interfaces_with_keys(compose: dict[str, Any]) -> None:
    command = compose["services"]["api"]["command"]
    assert command[:2] == ["parcours", "serve"] and command[command.index("--host") + 1] == "0.0.0.0"


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck(dockerfile: str) -> None:
    assert len(re.findall(r"^FROM ", dockerfile, re.MULTILINE)) >= 2
    assert re.search(r"^USER parcours$", dockerfile, re.MULTILINE)
    health = re.search(r"^HEALTHCHECK .*\n\s+CMD (.*)$", dockerfile, re.MULTILINE)
    assert health and "/healthz" in health.group(1)
    assert "PARCOURS_API_KEYS" not in re.findall(r"^ENV (.*)$", dockerfile, re.MULTILINE)[0]


def test_dockerfile_cmd_serves_on_the_port_it_exposes(dockerfile: str) -> None:
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert cmd is not None
    args = yaml.safe_load(cmd.group(1))
    assert args[:2] == ["parcours", "serve"]
    port = args[args.index("--port") + 1]
    assert re.search(rf"^EXPOSE {port}$", dockerfile, re.MULTILINE)
    assert f"127.0.0.1:{port}/healthz" in dockerfile
    for env in re.findall(r"\b(PARCOURS_[A-Z_]+)=", dockerfile):
        assert env in _settings_env_names(), env
    assert shlex.join(args)
