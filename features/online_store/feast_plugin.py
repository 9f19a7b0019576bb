"""The Feast side of the packed stores: Feast's OnlineStore interface over a VectorBackend.

Every feature view of the `nba` service is a slice of the same per-customer vector, so
`FeatureStore.get_online_features` reads each customer's vector ONCE for all views (`_read_features_per_fv`) and
converts only the requested values to protobuf. Writes coming from Feast's own materialization (`feast materialize`,
one feature view at a time) merge their slice into the stored vector; parcours' bulk path
(`features.online_store.bulk`) writes whole vectors without protobuf at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from feast import Entity, FeatureView, utils
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.types import Int32, Int64

from features.online_store.backends import VectorBackend
from features.online_store.codec import VectorCodec, default_codec

Row = tuple[datetime | None, dict[str, ValueProto] | None]


def customer_id_of(key: EntityKeyProto) -> str:
    """The single join key's value as a string (the key of the packed vector)."""
    if len(key.entity_values) != 1:
        raise ValueError(f"packed online stores need exactly one join key, got {list(key.join_keys)}")
    value = key.entity_values[0]
    kind = value.WhichOneof("val")
    if kind is None:
        raise ValueError("entity key has no value")
    return str(getattr(value, kind))


class PackedOnlineStore(OnlineStore):
    """Subclasses provide `_backend(config)`; the backend is opened once per store instance."""

    codec: VectorCodec

    def __init__(self) -> None:
        self.codec = default_codec()
        self._index = {name: i for i, name in enumerate(self.codec.names)}
        self._opened: VectorBackend | None = None

    def _open(self, config: RepoConfig) -> VectorBackend:
        raise NotImplementedError

    def backend(self, config: RepoConfig) -> VectorBackend:
        if self._opened is None:
            self._opened = self._open(config)
        return self._opened

    # -------------------------------------------------------------------------------------------------- writes

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Merge one feature view's values into each customer's vector (read-modify-write)."""
        if not data:
            return
        backend = self.backend(config)
        ids = [customer_id_of(key) for key, _, _, _ in data]
        current = backend.get_many(ids)
        matrix = np.full((len(ids), self.codec.width), np.nan)
        stamps = np.zeros(len(ids), dtype=np.int64)
        for row, blob in enumerate(current):
            if blob is not None:
                stamps[row], matrix[row] = self.codec.decode(blob)
        for row, (_, values, ts, _) in enumerate(data):
            for name, proto in values.items():
                if name not in self._index:
                    raise ValueError(f"feature {table.name}.{name} is not in the packed layout (FEATURE_NAMES)")
                matrix[row, self._index[name]] = _from_proto(proto)
            stamps[row] = max(stamps[row], _epoch_us(ts))
        backend.put_many(ids, self.codec.encode_batch(stamps, matrix))
        if progress:
            progress(len(data))

    # --------------------------------------------------------------------------------------------------- reads

    def read_vectors(self, config: RepoConfig, customer_ids: Sequence[str]) -> list[tuple[int, np.ndarray] | None]:
        return [None if b is None else self.codec.decode(b) for b in self.backend(config).get_many(customer_ids)]

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[Row]:
        vectors = self.read_vectors(config, [customer_id_of(k) for k in entity_keys])
        return self._rows(table, vectors, requested_features)

    def _rows(
        self, table: FeatureView, vectors: list[tuple[int, np.ndarray] | None], requested: list[str] | None
    ) -> list[Row]:
        names = requested if requested is not None else [f.name for f in table.features]
        is_int = {f.name: f.dtype in (Int64, Int32) for f in table.features}
        slots = [(name, self._index.get(name), is_int.get(name, False)) for name in names]
        out: list[Row] = []
        for vector in vectors:
            if vector is None:
                out.append((None, None))
                continue
            ts, values = vector
            row = {name: _to_proto(values[i] if i is not None else math.nan, integer) for name, i, integer in slots}
            out.append((datetime.fromtimestamp(ts / 1e6, tz=UTC), row))
        return out

    def _read_features_per_fv(
        self,
        config: RepoConfig,
        grouped_refs: list[Any],
        join_key_values: dict[str, Any],
        entity_name_to_join_key_map: dict[str, str],
        online_features_response: Any,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        """One backend read for all feature views (they share the entity and the vector)."""
        cache: dict[tuple[str, ...], list[tuple[int, np.ndarray] | None]] = {}
        for table, requested in grouped_refs:
            entity_values, idxs, output_len = utils._get_unique_entities(
                table, join_key_values, entity_name_to_join_key_map
            )
            keys = utils._get_entity_key_protos(entity_values)
            ids = tuple(customer_id_of(k) for k in keys)
            if ids not in cache:
                cache[ids] = self.read_vectors(config, ids)
            utils._populate_response_from_feature_data(
                requested,
                self._rows(table, cache[ids], requested),
                idxs,
                online_features_response,
                full_feature_names,
                table,
                output_len,
                include_feature_view_version_metadata,
            )

    # ------------------------------------------------------------------------------------------ infrastructure

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        """One table/keyspace for every view: created if missing; a deleted view's slice is simply never read."""
        self.backend(config).create()

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]) -> None:
        self.backend(config).drop()


def _epoch_us(ts: datetime) -> int:
    aware = ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    return round(aware.timestamp() * 1_000_000)


def _from_proto(proto: ValueProto) -> float:
    kind = proto.WhichOneof("val")
    if kind is None:
        return math.nan
    value = getattr(proto, kind)
    if isinstance(value, bool | int | float):
        return float(value)
    raise ValueError(f"packed online stores hold numbers only, got a {kind}")


def _to_proto(value: float, integer: bool) -> ValueProto:
    if math.isnan(value):
        return ValueProto() if integer else ValueProto(double_val=value)
    return ValueProto(int64_val=int(value)) if integer else ValueProto(double_val=float(value))
