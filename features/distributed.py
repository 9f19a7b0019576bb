"""The offline feature build on Dask, for event logs that do not fit one machine's memory.

Customers are independent (every feature of a customer reads only that customer's rows), so the build is split by
customer: a stable hash of `customer_id` puts each customer in one of `buckets` buckets, and each bucket is
validated and built alone with the single-machine code (`journey.contract.validate`, `features.build`), on one
worker, in bounded memory. Three stages, each a set of independent Dask tasks:

1. partition: Dask reads the raw tables (a parquet file, a directory of parquet parts, or CSV) and writes them
   hive-partitioned by bucket (`<work>/raw/<table>/_bucket=k/`); nothing is ever gathered on one machine.
2. validate: per bucket, the data contract (and the ingested-event merge); per-bucket reports are summed and the
   usability rules applied to the totals. Duplicate `decision_id`s are caught within a bucket only (a
   decision_id repeated for two different customers in two buckets is not flagged).
3. build: per bucket, `build_features(customers, events, contacts, times)` with the snapshot grid of the whole
   data, written to `<out>/part-<k>.parquet`; `combine` streams the parts into the one parquet file the Feast
   FileSource reads (DuckDB sorts out of core).

Result: the same rows and values as the single-machine build (tests/integration/test_dask_build.py).
Run: `python -m features.distributed DATA_DIR --home HOME [--workers N] [--buckets B]`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd

from features.build import build_features, event_days, history_start, snapshot_plan
from features.definitions import FEATURE_NAMES
from journey.catalog import load_catalog
from journey.contract import validate
from journey.contract.parse import parse_id
from journey.contract.schema import MAX_QUARANTINE_SHARE
from journey.errors import DataContractError
from journey.eventlog import merge_ingested
from journey.tables import TABLE_NAMES, TEXT_COLUMNS

if TYPE_CHECKING:
    from distributed import Client

BUCKET = "_bucket"
_TS = "datetime64[us, UTC]"


def bucket_of(ids: pd.Series, buckets: int) -> np.ndarray:
    """Stable bucket per normalised customer id (pandas' fixed-key SipHash: same in every process and run)."""
    normalised = parse_id(ids).values.fillna("").astype(str).to_numpy(dtype=object)
    return (pd.util.hash_array(normalised) % np.uint64(buckets)).astype("int64")


# ------------------------------------------------------------------------------------------- 1. partition


def find_input(data_dir: Path, name: str) -> Path | None:
    """`<name>.parquet` (file or directory of parts), `<name>/` (parts), `<name>.csv` or `<name>.csv.gz`."""
    for candidate in (f"{name}.parquet", name, f"{name}.csv", f"{name}.csv.gz"):
        path = data_dir / candidate
        if path.exists():
            return path
    return None


def _id_column(columns: Sequence[str]) -> str:
    for column in columns:
        if str(column).strip().lower() == "customer_id":
            return str(column)
    raise DataContractError(f"required column 'customer_id' is missing (columns found: {', '.join(columns)})")


def _with_bucket(frame: pd.DataFrame, column: str, buckets: int) -> pd.DataFrame:
    return frame.assign(**{BUCKET: bucket_of(frame[column], buckets)})


def partition_tables(data_dir: Path, work_dir: Path, buckets: int) -> dict[str, Path]:
    """Write each raw table hive-partitioned by customer bucket; runs on the current Dask client."""
    import dask.dataframe as dd

    out: dict[str, Path] = {}
    for name in TABLE_NAMES:
        path = find_input(Path(data_dir), name)
        if path is None:
            if name == "contacts":
                continue
            raise DataContractError(f"{data_dir}: no {name} table")
        if ".csv" in path.name:
            header = pd.read_csv(path, nrows=0).columns
            text = {c: "object" for c in header if str(c).strip().lower() in TEXT_COLUMNS}
            frame = dd.read_csv(str(path), dtype=text, blocksize=None if path.name.endswith(".gz") else "64MB")
        else:
            frame = dd.read_parquet(str(path))
        column = _id_column(list(frame.columns))
        meta = frame._meta.assign(**{BUCKET: pd.Series([], dtype="int64")})
        target = work_dir / "raw" / name
        frame.map_partitions(_with_bucket, column, buckets, meta=meta).to_parquet(
            str(target), partition_on=[BUCKET], write_index=False, overwrite=True
        )
        out[name] = target
    return out


# -------------------------------------------------------------------------------------------- 2. validate


@dataclass
class BucketReport:
    """What validating one bucket found: row accounting per table and the time span of its valid rows."""

    rows_in: dict[str, int] = field(default_factory=dict)
    rows_quarantined: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    first_event: pd.Timestamp | None = None
    last_ts: pd.Timestamp | None = None
    event_days: pd.Series = field(default_factory=lambda: pd.Series(dtype="int64"))  # events per day, for the grid


def _read_bucket(root: Path, bucket: int) -> pd.DataFrame | None:
    part = root / f"{BUCKET}={bucket}"
    return pd.read_parquet(part) if part.exists() else None


def validate_bucket(
    work_dir: Path, bucket: int, buckets: int, now: pd.Timestamp, catalog_path: Path | None, ingested: Path | None
) -> BucketReport:
    """The data contract on one bucket; valid rows to `<work>/valid/<table>/part-<k>.parquet`."""
    from journey.eventlog import read_ingested

    raw = {name: _read_bucket(work_dir / "raw" / name, bucket) for name in TABLE_NAMES}
    empty = pd.DataFrame({"customer_id": pd.Series([], dtype=object)})
    customers = raw["customers"] if raw["customers"] is not None else empty.assign(signup_ts=None)
    events = raw["events"] if raw["events"] is not None else empty.assign(ts=None, event_type=None)
    contacts_present = (work_dir / "raw" / "contacts").exists()
    contacts = raw["contacts"] if raw["contacts"] is not None else None
    if contacts is None and contacts_present:
        contacts = empty.assign(decision_id=None, ts=None, channel=None, content=None)
    data = validate(customers, events, contacts, load_catalog(catalog_path), now=now)
    valid = {"customers": data.customers, "events": data.events, "contacts": data.contacts}
    if ingested is not None:
        log = read_ingested(ingested)
        log = log[bucket_of(log["customer_id"], buckets) == bucket] if len(log) else log
        valid["customers"], valid["events"] = merge_ingested(valid["customers"], valid["events"], log)
    for name, frame in valid.items():
        target = work_dir / "valid" / name
        target.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(target / f"part-{bucket:05d}.parquet", index=False)
    share_rule = "of rows quarantined"
    stamps = [valid["events"]["ts"].max(), valid["contacts"]["ts"].max() if len(valid["contacts"]) else pd.NaT]
    last = max((t for t in stamps if pd.notna(t)), default=None)
    return BucketReport(
        rows_in={r.table: r.rows_in for r in data.reports},
        rows_quarantined={r.table: r.rows_quarantined for r in data.reports},
        problems=[p for p in data.problems if share_rule not in p and "no valid customers" not in p],
        first_event=valid["events"]["ts"].min() if len(valid["events"]) else None,
        last_ts=last,
        event_days=event_days(valid["events"]["ts"]),
    )


def check_usable(reports: Sequence[BucketReport]) -> None:
    """The contract's usability rules on the totals (a bucket alone may be small or unlucky)."""
    problems = sorted({p for r in reports for p in r.problems})
    for table in TABLE_NAMES:
        rows = sum(r.rows_in.get(table, 0) for r in reports)
        bad = sum(r.rows_quarantined.get(table, 0) for r in reports)
        if rows and bad / rows > MAX_QUARANTINE_SHARE:
            problems.append(f"{table}: {bad / rows:.0%} of rows quarantined ({bad} of {rows})")
    if sum(r.rows_in.get("customers", 0) - r.rows_quarantined.get("customers", 0) for r in reports) == 0:
        problems.append("customers: no valid customers")
    if problems:
        raise DataContractError("data is unusable: " + "; ".join(problems))


# ----------------------------------------------------------------------------------------------- 3. build


def snapshot_grid(
    first_event: pd.Timestamp,
    last_ts: pd.Timestamp,
    every_days: int,
    as_of: pd.Timestamp | None = None,
    day_counts: pd.Series | None = None,
) -> list[pd.Timestamp]:
    """The grid `parcours.pipelines.build_features` uses: every `every_days` from where the log turns dense
    (`features.build.history_start` on `day_counts`, the buckets' events per day summed; else the first event),
    plus one at the end of the data."""
    end = as_of or (pd.Timestamp(last_ts).floor("D") + pd.Timedelta(days=1)).tz_convert("UTC")
    start = history_start(day_counts, every_days) if day_counts is not None else None
    return snapshot_plan(start or first_event, end, every_days)


def build_bucket(
    work_dir: Path, bucket: int, times: Sequence[pd.Timestamp], out_dir: Path, as_of: pd.Timestamp | None
) -> int:
    """Snapshots of one bucket's customers to `<out>/part-<k>.parquet`; returns its row count."""
    tables = {name: pd.read_parquet(work_dir / "valid" / name / f"part-{bucket:05d}.parquet") for name in TABLE_NAMES}
    if as_of is not None:  # like parcours.pipelines.cut_at: nothing at or after as_of
        for name in ("events", "contacts"):
            tables[name] = tables[name][tables[name]["ts"] < as_of].reset_index(drop=True)
    snapshots = build_features(tables["customers"], tables["events"], tables["contacts"], times)
    out_dir.mkdir(parents=True, exist_ok=True)
    snapshots.to_parquet(out_dir / f"part-{bucket:05d}.parquet", index=False)
    return len(snapshots)


def combine(parts_dir: Path, path: Path) -> Path:
    """One parquet file sorted like the single-machine build, streamed by DuckDB (spills to disk if needed)."""
    columns = ", ".join(f'"{c}"' for c in ("customer_id", "event_timestamp", *FEATURE_NAMES))
    tmp = path.with_suffix(".parquet.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            f"COPY (SELECT {columns} FROM read_parquet('{parts_dir}/part-*.parquet') "
            f"ORDER BY event_timestamp, customer_id) TO '{tmp}' (FORMAT parquet)"
        )
    finally:
        con.close()
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class DistributedBuild:
    times: list[pd.Timestamp]
    rows: int
    parts_dir: Path
    reports: list[BucketReport]


def build_features_distributed(
    client: Client,
    data_dir: Path,
    work_dir: Path,
    buckets: int = 64,
    every_days: int = 7,
    as_of: pd.Timestamp | None = None,
    now: pd.Timestamp | None = None,
    catalog_path: Path | None = None,
    ingested: Path | None = None,
) -> DistributedBuild:
    """Partition, validate and build on `client`'s cluster; the snapshot parts land in `<work>/snapshots`.

    Choose `buckets` so one bucket's rows fit a worker comfortably (e.g. 50M events on 8 GB workers: 64-128).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    partition_tables(Path(data_dir), work_dir, buckets)  # a Client is dask's default scheduler once made
    ids = list(range(buckets))
    n = len(ids)
    futures = client.map(
        validate_bucket, [work_dir] * n, ids, [buckets] * n, [now] * n, [catalog_path] * n, [ingested] * n, pure=False
    )
    reports: list[BucketReport] = client.gather(futures)
    check_usable(reports)
    firsts = [r.first_event for r in reports if r.first_event is not None]
    lasts = [r.last_ts for r in reports if r.last_ts is not None]
    if not firsts:
        raise DataContractError("events: no valid events")
    days = pd.concat([r.event_days for r in reports if len(r.event_days)])  # history_start sums shared days
    times = snapshot_grid(min(firsts), max(lasts), every_days, as_of, days)
    out = work_dir / "snapshots"
    built = client.map(build_bucket, [work_dir] * n, ids, [times] * n, [out] * n, [as_of] * n, pure=False)
    counts: list[int] = client.gather(built)
    return DistributedBuild(times=times, rows=int(sum(counts)), parts_dir=out, reports=reports)


def main(argv: Sequence[str] | None = None) -> None:
    """Build a workspace's offline snapshots on a local (or `--scheduler`) Dask cluster."""
    from distributed import Client, LocalCluster

    from journey.eventlog import event_log_path
    from journey.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m features.distributed", description=main.__doc__)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--buckets", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (default: local)")
    parser.add_argument("--as-of", default=None)
    args = parser.parse_args(argv)
    settings = Settings(home=args.home) if args.home else Settings()
    as_of = pd.Timestamp(args.as_of, tz="UTC") if args.as_of else None
    cluster = None if args.scheduler else LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True)
    client = Client(args.scheduler or cluster)
    try:
        log = event_log_path(settings)
        build = build_features_distributed(
            client,
            args.data_dir,
            settings.feature_store_dir / "dask",
            args.buckets,
            settings.snapshot_every_days,
            as_of,
            catalog_path=settings.catalog_path,
            ingested=log if log.exists() else None,
        )
        from features.store import offline_path

        path = combine(build.parts_dir, offline_path(settings))
        print(f"{build.rows:,} rows in {len(build.times)} snapshots → {path}")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
