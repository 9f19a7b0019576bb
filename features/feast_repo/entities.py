"""The customer entity (join key `customer_id`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from feast import Entity

ENTITY_NAME = "customer"
JOIN_KEY = "customer_id"


def customer_entity() -> Entity:
    from feast import Entity, ValueType

    return Entity(
        name=ENTITY_NAME,
        join_keys=[JOIN_KEY],
        value_type=ValueType.STRING,
        description="A customer or identified visitor of the journey.",
    )
