"""The feature service `nba`: every customer feature view (what training and serving both read)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feast import FeatureService, FeatureView

FEATURE_SERVICE = "nba"


def nba_service(views: list[FeatureView]) -> FeatureService:
    from feast import FeatureService

    return FeatureService(
        name=FEATURE_SERVICE,
        features=list[Any](views),
        description="All customer features for next-best-action models.",
    )
