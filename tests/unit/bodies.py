"""Helpers for the tests that assert exact request bodies: the query builder for a test index, and one clause."""

from __future__ import annotations

from typing import Any

from lexlip_es.backends.engine import EngineQueries
from lexlip_es.mapping import LexiconLayout


def engine_queries(flavor: str = "opensearch", **kwargs: Any) -> EngineQueries:
    """The query builder for index `images` of model `m1` (`field_type` and EngineQueries' options as keywords)."""
    field_type = kwargs.pop("field_type", "rank_features")
    return EngineQueries(flavor, "images", LexiconLayout("m1", field_type=field_type), **kwargs)  # type: ignore[arg-type]


def feature(field: str, boost: float) -> dict[str, Any]:
    """One linear `rank_feature` clause as the engines receive it."""
    return {"rank_feature": {"field": field, "linear": {}, "boost": boost}}
