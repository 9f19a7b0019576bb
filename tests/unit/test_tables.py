"""Reading and writing the contract tables: file discovery, CSV text columns, readable errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from journey.contract import contract_columns
from journey.errors import DataContractError
from journey.tables import TABLE_NAMES, TEXT_COLUMNS, find_table, read_table, write_table


def test_every_contract_column_is_read_as_text() -> None:
    for name in TABLE_NAMES:
        assert set(contract_columns(name)) <= TEXT_COLUMNS, name


def test_find_table_prefers_parquet_then_csv_then_gzip(tmp_path: Path) -> None:
    assert find_table(tmp_path, "events") is None
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "events.csv.gz", index=False)
    assert find_table(tmp_path, "events") == tmp_path / "events.csv.gz"
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "events.csv", index=False)
    assert find_table(tmp_path, "events") == tmp_path / "events.csv"
    write_table(pd.DataFrame({"a": [1]}), tmp_path, "events")
    assert find_table(tmp_path, "events") == tmp_path / "events.parquet"
    assert find_table(tmp_path, "customers") is None


def test_csv_keeps_ids_as_text_and_infers_extra_columns(tmp_path: Path) -> None:
    (tmp_path / "customers.csv").write_text("customer_id,signup_ts,age\n007,2025-01-01,41\n12,,35\n")
    frame = read_table(tmp_path, "customers")
    assert frame["customer_id"].tolist() == ["007", "12"]
    assert frame["age"].tolist() == [41, 35]


def test_gzipped_csv_is_read(tmp_path: Path) -> None:
    pd.DataFrame({"customer_id": ["a"], "signup_ts": [None]}).to_csv(tmp_path / "customers.csv.gz", index=False)
    assert read_table(tmp_path, "customers")["customer_id"].tolist() == ["a"]


def test_missing_table_names_the_directory_and_expected_files(tmp_path: Path) -> None:
    with pytest.raises(DataContractError, match=r"no events table \(expected one of events.parquet"):
        read_table(tmp_path, "events")


@pytest.mark.parametrize("file_name", ["events.parquet", "events.csv.gz"])
def test_unreadable_file_is_a_contract_error_naming_it(tmp_path: Path, file_name: str) -> None:
    (tmp_path / file_name).write_bytes(b"\x00\x01 this is not a table")
    with pytest.raises(DataContractError, match=file_name):
        read_table(tmp_path, "events")


def test_write_table_creates_the_directory_and_round_trips(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"customer_id": ["a", "b"], "ts": pd.to_datetime(["2025-01-01", "2025-01-02"], utc=True).as_unit("us")}
    )
    path = write_table(frame, tmp_path / "new" / "dir", "events")
    assert path == tmp_path / "new" / "dir" / "events.parquet"
    pd.testing.assert_frame_equal(read_table(path.parent, "events"), frame)
