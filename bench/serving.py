"""Serving benchmark: parcours decisions against Feast's own feature server, same machine, same run.

    python -m bench.serving --out serving.json [--customers 20000] [--home DIR] [--workers 2] [--connections 16,32,64]

Builds a workspace with `parcours demo --no-serve` (or reuses `--home`), starts the real servers on 127.0.0.1
(`parcours` under uvicorn through `serving.app.serve`, and `feast serve` on the workspace's feature_store.yaml),
then measures:

- sequential latency, one client with a kept-alive connection: `POST /v1/next-best-action` (online features, all
  models, eligibility, policies, arbitration, fsynced log append) vs `POST /get-online-features` of Feast's
  server for the same customers (features only);
- throughput with `wrk` (bounded in time, 127.0.0.1) at 16, 32 and 64 connections (`--connections`), the best run and
  its p99 at that load as the headline, every run in `load_curve`;
- batch scoring of the whole base through the batch entry point (`serving.batch`) when it exists.

Everything started here is stopped here, whatever happens.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HOST = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Run as a script (`python bench/serving.py`), this folder would be first on sys.path and this file would shadow
# the `serving` package: put the project first instead.
sys.path[:] = [str(PROJECT_ROOT), *(p for p in sys.path if Path(p or ".").resolve() != PROJECT_ROOT / "bench")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Where to write the JSON results.")
    parser.add_argument("--customers", type=int, default=20_000, help="Customers to simulate (without --home).")
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--home", type=Path, help="Reuse this workspace (already built by `parcours demo`).")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of the parcours server.")
    parser.add_argument("--requests", type=int, default=2000, help="Sequential requests per server.")
    parser.add_argument("--duration", type=int, default=15, help="Seconds of wrk load.")
    parser.add_argument(
        "--connections",
        default="16,32,64",
        help="wrk connections, one load run per value (comma-separated); decisions_per_s is the best of them.",
    )
    args = parser.parse_args(argv)

    with _workspace(args.home, args.customers, args.days) as home:
        results = run(home, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


def run(home: Path, args: argparse.Namespace) -> dict[str, Any]:
    ids = pd.read_parquet(home / "data" / "demo" / "customers.parquet", columns=["customer_id"])["customer_id"]
    rng = random.Random(7)
    sample = [str(rng.choice(ids.tolist())) for _ in range(args.requests)]
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_1m": os.getloadavg()[0]},
        "customers": len(ids),
        "workers": args.workers,
    }
    feast_port, api_port = _free_port(), _free_port()
    with _feast_server(home, feast_port), _parcours_server(home, api_port, args.workers) as api:
        feast = _sequential(feast_port, "/get-online-features", [_feast_body(c) for c in sample])
        decisions = _sequential(api_port, "/v1/next-best-action", [{"customer_id": c} for c in sample])
        results.update(
            decision_p50_ms=decisions["p50_ms"],
            decision_p99_ms=decisions["p99_ms"],
            decision_errors=decisions["errors"],
            feast_serve_p50_ms=feast["p50_ms"],
            feast_serve_p99_ms=feast["p99_ms"],
            feast_serve_errors=feast["errors"],
            decision_p99_over_feast_p99=round(decisions["p99_ms"] / feast["p99_ms"], 3),
        )
        results.update(_load_curve(api.pid, api_port, sample, args.duration, str(args.connections)))
    results.update(_batch(home))
    results["load_1m_after"] = os.getloadavg()[0]
    return results


# --- servers --------------------------------------------------------------------------------------------------


@contextmanager
def _workspace(home: Path | None, customers: int, days: int) -> Iterator[Path]:
    if home is not None:
        yield home.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="parcours-bench-") as tmp:
        root = Path(tmp)
        cmd = [_parcours(), "demo", "--no-serve", "--customers", str(customers), "--days", str(days), "--home", tmp]
        print("building the workspace:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, env=_env(root), stdout=subprocess.DEVNULL)
        yield root


def _parcours() -> str:
    local = Path(sys.executable).with_name("parcours")
    return str(local) if local.exists() else "parcours"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARCOURS_")}
    env["PARCOURS_HOME"] = str(home)
    return env


@contextmanager
def _parcours_server(home: Path, port: int, workers: int) -> Iterator[subprocess.Popen[bytes]]:
    code = (
        "from journey.settings import Settings; from serving.app import serve; "
        f"serve(Settings(), host={HOST!r}, port={port}, workers={workers})"
    )
    with _process([sys.executable, "-c", code], _env(home), home / "bench-parcours.log") as process:
        _wait_http(port, "/readyz", timeout=180)
        yield process


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its children (the uvicorn workers); Linux /proc only,
    0 elsewhere."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for entry in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = entry.read_text().rsplit(")", 1)[1].split()
            if int(entry.parent.name) == pid or int(fields[1]) == pid:  # fields[1] = ppid
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


@contextmanager
def _feast_server(home: Path, port: int) -> Iterator[None]:
    feast = Path(sys.executable).with_name("feast")
    cmd = [
        str(feast if feast.exists() else "feast"),
        "-c",
        str(home / "feature_store"),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
        "--workers",
        "1",
        "--max-requests",
        "0",
    ]
    with _process(cmd, _env(home), home / "bench-feast.log"):
        _wait_http(port, "/health", timeout=180)
        yield


@contextmanager
def _process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield process
        finally:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _wait_http(port: int, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing healthy on {HOST}:{port}{path} after {timeout} s")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --- measurements ---------------------------------------------------------------------------------------------


def _feast_body(customer_id: str) -> dict[str, Any]:
    return {"feature_service": "nba", "entities": {"customer_id": [customer_id]}}


def _sequential(port: int, path: str, bodies: list[dict[str, Any]], warmup: int = 100) -> dict[str, Any]:
    """One client, one kept-alive connection, one request at a time; round-trip latency as the client sees it."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    headers = {"Content-Type": "application/json"}
    latencies, errors = [], 0
    for i, body in enumerate([*bodies[:warmup], *bodies]):
        payload = json.dumps(body)
        start = time.perf_counter()
        conn.request("POST", path, payload, headers)
        response = conn.getresponse()
        response.read()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            latencies.append(elapsed)
            errors += response.status != 200
    conn.close()
    ms = np.asarray(latencies) * 1e3
    return {"p50_ms": _round(np.percentile(ms, 50)), "p99_ms": _round(np.percentile(ms, 99)), "errors": errors}


_WRK_SCRIPT = """
local ids = {%s}
local i = 0
request = function()
  i = i %% #ids + 1
  return wrk.format("POST", "/v1/next-best-action", {["Content-Type"] = "application/json"},
                    '{"customer_id":"' .. ids[i] .. '"}')
end
"""


def _load_curve(pid: int, port: int, sample: list[str], duration: int, connections: str) -> dict[str, Any]:
    """One wrk run per connection count. A decision is answered only once it is fsynced, so a few connections
    leave the server waiting on the disk: throughput is what the server sustains when enough connections keep it
    busy. The headline (`decisions_per_s`, `load_connections`, p99 at that load) is the best run; every run is in
    `load_curve`, with the server's CPU per decision (comparable across runs even on a busy machine)."""
    runs = []
    for count in [int(c) for c in connections.split(",") if c.strip()]:
        cpu_before = _tree_cpu_s(pid)
        run = _throughput(port, sample, duration, count)
        if run.get("load_requests"):
            run["server_cpu_ms_per_decision"] = _round((_tree_cpu_s(pid) - cpu_before) * 1e3 / run["load_requests"])
        runs.append(run)
    rated = [r for r in runs if r.get("decisions_per_s")]
    best = max(rated, key=lambda r: r["decisions_per_s"]) if rated else (runs[0] if runs else {})
    return {**best, "load_curve": runs}


def _throughput(port: int, sample: list[str], duration: int, connections: int) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"decisions_per_s": None, "decisions_p99_ms_at_load": None, "throughput_note": "wrk not installed"}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % ",".join(json.dumps(c) for c in sample))
    try:
        cmd = [
            wrk,
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{duration}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            script.name,
            f"http://{HOST}:{port}",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    finally:
        os.unlink(script.name)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    done = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "decisions_per_s": _round(float(rate.group(1))) if rate else None,
        "decisions_p50_ms_at_load": _ms(p50),
        "decisions_p99_ms_at_load": _ms(p99),
        "load_requests": int(done.group(1)) if done else None,
        "load_connections": connections,
        "load_duration_s": duration,
        "load_non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "load_socket_errors": errors.group(1) if errors else None,
    }


def _batch(home: Path) -> dict[str, Any]:
    """The whole base of the workspace (latest snapshot) through `serving.batch.score_base`, models loaded first."""
    try:
        from serving.batch import latest_snapshot, plan_for, score_base
    except ImportError:
        return {"batch_customers": None, "batch_s": None, "batch_note": "serving.batch.score_base not available"}
    from journey.settings import Settings

    settings = Settings(home=home)
    features, as_of = latest_snapshot(settings)
    plan = plan_for(settings)  # catalog, policies, champion models: loading is not timed
    start = time.perf_counter()
    decided = score_base(settings, features, pd.Timestamp.now(tz="UTC"), plan=plan)
    elapsed = time.perf_counter() - start
    return {"batch_customers": len(decided), "batch_s": _round(elapsed), "batch_snapshot": str(as_of)}


def _ms(match: re.Match[str] | None) -> float | None:
    if match is None:
        return None
    value, unit = float(match.group(1)), match.group(2)
    return _round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value)


def _round(value: float) -> float:
    return round(float(value), 3)


if __name__ == "__main__":
    raise SystemExit(main())
