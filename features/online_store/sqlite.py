"""Feast online store plugin: packed vectors in SQLite (the embedded default).

feature_store.yaml: `online_store: {type: features.online_store.sqlite.PackedSqliteOnlineStore, path: online.db}`.
Feast resolves `<module>.<Name>OnlineStore` and its config class `<Name>OnlineStoreConfig` from the same module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from feast.repo_config import FeastConfigBaseModel, RepoConfig
from pydantic import StrictStr

from features.online_store.backends import SqliteVectors
from features.online_store.feast_plugin import PackedOnlineStore

TYPE = "features.online_store.sqlite.PackedSqliteOnlineStore"


class PackedSqliteOnlineStoreConfig(FeastConfigBaseModel):
    """`path` is relative to the feature repository unless absolute."""

    type: Literal["features.online_store.sqlite.PackedSqliteOnlineStore"] = TYPE  # type: ignore[assignment]
    path: StrictStr = "online.db"


def sqlite_path(config: RepoConfig) -> Path:
    path = Path(config.online_store.path)
    if not path.is_absolute() and config.repo_path is not None:
        path = Path(config.repo_path) / path
    return path


class PackedSqliteOnlineStore(PackedOnlineStore):
    def _open(self, config: RepoConfig) -> SqliteVectors:
        return SqliteVectors(sqlite_path(config), config.project)
