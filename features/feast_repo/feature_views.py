"""One feature view per feature family, all over the same snapshot source; schema from the registry."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from features.definitions import FAMILIES, FeatureDef, features_of

if TYPE_CHECKING:
    from feast import Entity, FeatureView, Field, FileSource


def view_name(family: str) -> str:
    return f"customer_{family}"


def _field(feature: FeatureDef) -> Field:
    from feast import Field
    from feast.types import Float64, Int64

    return Field(name=feature.name, dtype=Int64 if feature.dtype == "int" else Float64, description=feature.description)


def feature_views(entity: Entity, source: FileSource, ttl_days: int) -> list[FeatureView]:
    """`ttl_days` bounds how old a snapshot may be to answer a point-in-time lookup."""
    from feast import FeatureView

    return [
        FeatureView(
            name=view_name(family),
            entities=[entity],
            ttl=timedelta(days=ttl_days),
            schema=[_field(f) for f in features_of(family)],
            source=source,
            online=True,
            tags={"family": family},
        )
        for family in FAMILIES
    ]
