"""Packed online stores for Feast: one compact, exact feature vector per customer (see docs/feature-store.md).

Feast stays the API and the registry: `online_store: {type: features.online_store.sqlite.PackedSqliteOnlineStore}`
(or `...redis.PackedRedisOnlineStore`) in feature_store.yaml, and `FeatureStore.get_online_features` / `feast serve`
read through these plugins. Nothing here imports feast at import time except the plugin modules themselves.
"""
