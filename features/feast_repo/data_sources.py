"""The offline snapshot parquet as a Feast FileSource (read by the DuckDB offline store)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from feast import FileSource

SOURCE_NAME = "customer_snapshots"
TIMESTAMP_FIELD = "event_timestamp"


def snapshot_source(path: Path) -> FileSource:
    """`path` is made absolute: the DuckDB offline store resolves relative paths against the process cwd."""
    from feast import FileSource
    from feast.data_format import ParquetFormat

    return FileSource(
        name=SOURCE_NAME,
        path=str(Path(path).expanduser().resolve()),
        file_format=ParquetFormat(),
        timestamp_field=TIMESTAMP_FIELD,
        description="Weekly point-in-time customer snapshots written by features.store.write_offline.",
    )
