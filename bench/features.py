"""Feature-store benchmark at scale: bulk-generated events -> feature build -> packed SQLite/Redis materialization ->
online reads (in process and over `feast serve`) -> stock Feast materialize on a slice for comparison.

    python -m bench.features --customers 1000000 --out reports/features-1m.json [--events-per-customer 50]

The simulator is too slow at this scale, so events come from a vectorised numpy generator in the contract's
normalised format (categorical customer/type/channel columns, no per-row Python strings). Customers are independent,
so the serving snapshot (as of the end of data) is built in customer batches. All servers listen on 127.0.0.1 only
and are stopped at the end; every request loop is bounded in count.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.definitions import CONTACT_CHANNELS
from journey.settings import Settings
from journey.vocabulary import EventType

END = pd.Timestamp("2025-01-01", tz="UTC")
DAY_US = 86_400_000_000
HISTORY_DAYS = 365
# (event type, weight, channels it happens on)
_WEB = ("web", "app", "search", "social_ad")
_EVENTS: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    (EventType.PAGE_VIEW, 34, _WEB),
    (EventType.PRODUCT_VIEW, 24, _WEB),
    (EventType.ADD_TO_CART, 8, ("web", "app")),
    (EventType.CHECKOUT, 3, ("web", "app")),
    (EventType.PURCHASE, 2, ("web", "app")),
    (EventType.STORE_PURCHASE, 1, ("store",)),
    (EventType.EMAIL_OPEN, 8, ("email",)),
    (EventType.EMAIL_CLICK, 3, ("email",)),
    (EventType.SMS_CLICK, 1, ("sms",)),
    (EventType.PUSH_OPEN, 3, ("push",)),
    (EventType.AD_CLICK, 3, ("social_ad",)),
    (EventType.WEB_CLICK, 3, ("web",)),
    (EventType.MAIL_RESPONSE, 0.5, ("mail",)),
    (EventType.CALL_ANSWERED, 0.5, ("call",)),
    (EventType.SUPPORT_TICKET, 1, ("web", "call")),
    (EventType.SURVEY, 0.5, ("email", "web")),
    (EventType.REVIEW, 0.5, ("web",)),
    (EventType.REFERRAL, 0.2, ("web",)),
    (EventType.SIGNUP, 0.5, ("web", "app")),
    (EventType.UNSUBSCRIBE, 0.3, ("email", "sms", "push", "mail", "call", "social_ad")),
)
CHANNELS = tuple(sorted({c for _, _, chans in _EVENTS for c in chans}))
CONSENTS = ("consent_email", "consent_sms", "consent_push", "consent_mail", "consent_call", "consent_ads")


# ------------------------------------------------------------------------------------------------ generator


def _cat(codes: Any, categories: Any) -> pd.Categorical:
    """A categorical column from integer codes (-1 = missing): one small dictionary, no per-row strings."""
    return pd.Categorical.from_codes(np.asarray(codes, dtype=np.int64), categories=pd.Index(list(categories)))


def generate(
    first: int, n: int, events_per_customer: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Customers [first, first + n) with their events and contacts, normalised, vectorised."""
    rng = np.random.default_rng([seed, first])
    ids = pd.Index([f"c{i:08d}" for i in range(first, first + n)])
    end_us, span_us = END.value // 1000, HISTORY_DAYS * DAY_US
    arrival = end_us - (rng.random(n) * span_us).astype(np.int64)
    signed = rng.random(n) < 0.6
    signup = np.where(signed, arrival + (rng.random(n) * (end_us - arrival)).astype(np.int64), 0)
    customers = pd.DataFrame(
        {
            "customer_id": _cat(np.arange(n), ids),
            "signup_ts": pd.Series(pd.to_datetime(signup, unit="us", utc=True)).where(signed),
        }
        | {c: rng.random(n) < 0.5 for c in CONSENTS}
    )
    counts = rng.negative_binomial(2, 2 / (2 + events_per_customer), n)
    owner = np.repeat(np.arange(n), counts)
    m = len(owner)
    ts = arrival[owner] + (rng.random(m) * (end_us - arrival[owner])).astype(np.int64)
    weights = np.array([w for _, w, _ in _EVENTS])
    etype = rng.choice(len(_EVENTS), m, p=weights / weights.sum())
    pick = rng.random(m)
    channel = np.empty(m, dtype=np.int16)
    for k, (_, _, chans) in enumerate(_EVENTS):
        rows = etype == k
        channel[rows] = np.searchsorted(CHANNELS, np.array(chans))[(pick[rows] * len(chans)).astype(int)]
    buying = np.isin(etype, [i for i, (e, _, _) in enumerate(_EVENTS) if e in ("purchase", "store_purchase")])
    events = pd.DataFrame(
        {
            "customer_id": _cat(owner, ids),
            "ts": pd.Series(ts.astype("datetime64[us]")).dt.tz_localize("UTC"),
            "event_type": _cat(etype, [str(e) for e, _, _ in _EVENTS]),
            "channel": _cat(channel, CHANNELS),
            "content": _cat(np.full(m, -1), ["none"]),
            "value": np.where(buying, rng.gamma(2.0, 30.0, m), np.nan),
        }
    )
    who = np.repeat(np.arange(n), rng.poisson(6, n))
    c = len(who)
    contacts = pd.DataFrame(
        {
            "decision_id": pd.array(np.char.add("d", np.arange(first * 100, first * 100 + c).astype(str)), "string"),
            "customer_id": _cat(who, ids),
            "ts": pd.Series(
                (arrival[who] + (rng.random(c) * (end_us - arrival[who])).astype(np.int64)).astype("datetime64[us]")
            ).dt.tz_localize("UTC"),
            "channel": _cat(rng.integers(0, len(CONTACT_CHANNELS), c), list(CONTACT_CHANNELS)),
            "content": _cat(np.zeros(c, dtype=int), ["product_recommendation"]),
            "propensity": np.full(c, 0.5),
            "policy": _cat(np.zeros(c, dtype=int), ["bench"]),
        }
    )
    return customers, events, contacts


# ---------------------------------------------------------------------------------------------------- steps


def build(customers: int, epc: float, batch: int, seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The serving snapshot (as of END) of every customer, built batch by batch."""
    from features.build import build_features

    parts, events, build_s, gen_s = [], 0, 0.0, 0.0
    for first in range(0, customers, batch):
        t0 = time.perf_counter()
        frames = generate(first, min(batch, customers - first), epc, seed)
        t1 = time.perf_counter()
        parts.append(build_features(*frames, [END]))
        build_s += time.perf_counter() - t1
        gen_s += t1 - t0
        events += len(frames[1])
        del frames
        _log(f"built {first + batch:,}/{customers:,} customers ({build_s:.0f} s build, {gen_s:.0f} s generate)")
    snapshots = pd.concat(parts, ignore_index=True)
    return snapshots, {"events": events, "build_s": build_s, "generate_s": gen_s, "build_peak_mb": _peak_mb()}


def _peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def materialize(settings: Settings, prefix: str) -> dict[str, Any]:
    from features import store

    store.apply(settings)
    t0 = time.perf_counter()
    full = store.materialize_changes(settings, full=True)
    full_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = store.materialize_changes(settings)
    assert again.written == 0, again
    return {
        f"materialize_{prefix}_s": round(full_s, 2),
        f"materialize_{prefix}_write_s": round(full.seconds, 2),
        f"materialize_{prefix}_unchanged_s": round(time.perf_counter() - t0, 2),
    }


def latencies(settings: Settings, ids: list[str], prefix: str) -> dict[str, Any]:
    """One customer per call through the serving reader, and 100 per call through the backend + codec."""
    from features.online_store.codec import default_codec
    from serving.online import PackedOnlineFeatures

    reader = PackedOnlineFeatures(settings)
    for cid in ids[:200]:
        reader.read(cid)  # warm the page cache / connection
    one = _timed(lambda cid: reader.read(cid), ids[:5000])
    codec, backend = default_codec(), reader._backend
    groups = [ids[i : i + 100] for i in range(0, min(len(ids), 50_000), 100)][:300]
    many = _timed(lambda group: [codec.decode(b) for b in backend.get_many(group) if b], groups)
    reader.close()
    return {
        f"{prefix}p50_ms": round(float(np.percentile(one, 50)), 3),
        f"{prefix}p99_ms": round(float(np.percentile(one, 99)), 3),
        f"{prefix}100_p99_ms": round(float(np.percentile(many, 99)), 3),
    }


def _timed(fn: Callable[[Any], Any], items: list[Any]) -> np.ndarray:
    out = np.empty(len(items))
    for i, item in enumerate(items):
        t0 = time.perf_counter()
        fn(item)
        out[i] = (time.perf_counter() - t0) * 1000
    return out


def sqlite_bytes(settings: Settings) -> int:
    from features.online_store.backends import SqliteVectors

    table = SqliteVectors(settings.feature_store_dir / "online.db", settings.feast_project)
    table.checkpoint()
    table.close()
    return sum(p.stat().st_size for p in settings.feature_store_dir.glob("online.db*"))


def feast_serve_p99(settings: Settings, ids: list[str], requests: int = 1000) -> float:
    """p99 of POST /get-online-features (feature service nba, one customer) against a real `feast serve`."""
    from tests.servers import free_port

    port = free_port()
    feast = Path(sys.executable).with_name("feast")
    cmd = [str(feast), "-c", str(settings.feature_store_dir), "serve", "-h", "127.0.0.1", "-p", str(port)]
    cmd += ["--max-requests", "0", "--no-access-log"]
    with _process(cmd, settings.root / "feast-serve.log"):
        _wait_http(port, timeout=180.0)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = lambda cid: json.dumps({"feature_service": "nba", "entities": {"customer_id": [cid]}})  # noqa: E731

        def call(cid: str) -> None:
            conn.request("POST", "/get-online-features", body(cid), {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"feast serve answered {response.status}: {payload[:300]!r}")

        for cid in ids[:50]:
            call(cid)
        times = _timed(call, ids[:requests])
        conn.close()
    return round(float(np.percentile(times, 99)), 3)


@contextmanager
def _process(cmd: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_http(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"feast serve not answering on 127.0.0.1:{port} after {timeout} s")


def stock_materialize(snapshots: pd.DataFrame, customers: int, root: Path) -> dict[str, Any]:
    """Feast's own SQLite materialize (one row per feature per customer) on the first `customers`, scaled."""
    from features import store

    settings = Settings(home=root / "stock", online_layout="stock")
    store.write_offline(snapshots.iloc[:customers], settings)
    store.apply(settings)
    t0 = time.perf_counter()
    store.materialize(settings)
    seconds = time.perf_counter() - t0
    size = (settings.feature_store_dir / "online.db").stat().st_size
    return {
        "stock_slice_customers": customers,
        "stock_materialize_sqlite_s": round(seconds, 2),
        "stock_materialize_sqlite_s_per_100k": round(seconds * 100_000 / customers, 1),
        "stock_online_bytes_per_customer": round(size / customers),
    }


# ------------------------------------------------------------------------------------------------------ main


def run(args: argparse.Namespace) -> dict[str, Any]:
    from features import store
    from tests.servers import redis_server

    root = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="parcours-bench-features-"))
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {
        "customers": args.customers,
        "events_per_customer": args.events_per_customer,
        "machine": {"cpus": os.cpu_count(), "load_1m_at_start": round(os.getloadavg()[0], 2)},
    }
    snapshots, built = build(args.customers, args.events_per_customer, args.batch, args.seed)
    out |= built | {"snapshot_rows": len(snapshots)}
    sqlite = Settings(home=root)
    store.write_offline(snapshots, sqlite)
    ids = list(np.random.default_rng(1).permutation(snapshots["customer_id"].to_numpy())[:50_000])
    _log(f"offline written; materializing {len(snapshots):,} customers into SQLite")
    out |= materialize(sqlite, "sqlite")
    out["online_bytes_per_customer"] = round(sqlite_bytes(sqlite) / len(snapshots), 1)
    out |= latencies(sqlite, ids, "online_")
    _log(json.dumps(out))
    with redis_server(root) as url:
        redis = Settings(home=root, online_store="redis", redis_url=url)
        from features.online_store.backends import RedisVectors

        client = RedisVectors(url, redis.feast_project)
        before = client.used_memory()
        out |= materialize(redis, "redis")
        out["redis_bytes_per_customer"] = round((client.used_memory() - before) / len(snapshots), 1)
        out |= latencies(redis, ids, "redis_online_")
        client.close()
    _log(json.dumps(out))
    store.apply(sqlite)  # feature_store.yaml back to the SQLite store for feast serve
    if not args.skip_serve:
        out["feast_serve_p99_ms"] = feast_serve_p99(sqlite, ids, args.serve_requests)
    stock = min(args.stock_slice, len(snapshots))
    if stock:
        _log(f"stock Feast materialize of {stock:,} customers")
        out |= stock_materialize(snapshots, stock, root)
    out["peak_mb"] = _peak_mb()
    out["machine"]["load_1m_at_end"] = round(os.getloadavg()[0], 2)
    if not args.home and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return out


def _log(message: str) -> None:
    print(f"[bench.features {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--events-per-customer", type=float, default=50.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=50_000, help="customers per feature-build batch")
    parser.add_argument("--stock-slice", type=int, default=100_000, help="customers for the stock Feast run; 0 = skip")
    parser.add_argument("--serve-requests", type=int, default=1000)
    parser.add_argument("--skip-serve", action="store_true")
    parser.add_argument("--home", help="workspace to keep (default: a temporary one, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
