"""Feast online store plugin: packed vectors in Redis, one string per customer.

feature_store.yaml: `online_store: {type: features.online_store.redis.PackedRedisOnlineStore,
connection_string: "127.0.0.1:6379[,db=N][,password=...]"}` (Feast's connection-string format).
"""

from __future__ import annotations

from typing import Literal

from feast.repo_config import FeastConfigBaseModel, RepoConfig
from pydantic import StrictStr

from features.online_store.backends import RedisVectors
from features.online_store.feast_plugin import PackedOnlineStore

TYPE = "features.online_store.redis.PackedRedisOnlineStore"


class PackedRedisOnlineStoreConfig(FeastConfigBaseModel):
    type: Literal["features.online_store.redis.PackedRedisOnlineStore"] = TYPE  # type: ignore[assignment]
    connection_string: StrictStr = "127.0.0.1:6379"
    timeout_s: float = 5.0


class PackedRedisOnlineStore(PackedOnlineStore):
    def _open(self, config: RepoConfig) -> RedisVectors:
        store = config.online_store
        return RedisVectors(store.connection_string, config.project, timeout_s=store.timeout_s)
