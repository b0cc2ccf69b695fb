"""The clients lexlip-es's own programs build (the CLI, the ingest workers and producer, the demo): which engine,
at which URL. Library callers pass their own clients instead.

The engine: `LEXLIP_ENGINE` (`opensearch` or `elasticsearch`) when set; otherwise the one of
`LEXLIP_OPENSEARCH_URL` / `LEXLIP_ELASTICSEARCH_URL` that is set (OpenSearch when both are).
"""

from __future__ import annotations

from typing import Any

from lexlip_es.errors import LexlipError
from lexlip_es.mapping import FieldType, Flavor
from lexlip_es.settings import Settings

DEFAULT_FIELD_TYPE: dict[Flavor, FieldType] = {"opensearch": "rank_features", "elasticsearch": "sparse_vector"}
"""What a new index stores lexicons as, per engine (both search them with the same helper)."""


def engine_target(settings: Settings, url: str | None = None) -> tuple[Flavor, str]:
    """(engine, URL) for this run; `url` (a command's --url) overrides the URL of the chosen engine."""
    engine = settings.engine.strip().lower()
    if engine not in ("", "opensearch", "elasticsearch"):
        raise LexlipError(f"LEXLIP_ENGINE={settings.engine!r}: choose opensearch or elasticsearch")
    if not engine:
        engine = "elasticsearch" if settings.elasticsearch_url and not settings.opensearch_url else "opensearch"
    flavor: Flavor = "elasticsearch" if engine == "elasticsearch" else "opensearch"
    chosen = url or (settings.elasticsearch_url if flavor == "elasticsearch" else settings.opensearch_url)
    if not chosen:
        variable = "LEXLIP_ELASTICSEARCH_URL" if flavor == "elasticsearch" else "LEXLIP_OPENSEARCH_URL"
        raise LexlipError(f"no search cluster: set {variable} (or LEXLIP_OPENSEARCH_URL / LEXLIP_ELASTICSEARCH_URL)")
    return flavor, chosen


def engine_client(settings: Settings, url: str | None = None, *, timeout: float = 60, max_retries: int = 0) -> Any:
    """An opensearch-py `OpenSearch` or elasticsearch-py `Elasticsearch` client for this run's engine."""
    flavor, target = engine_target(settings, url)
    if flavor == "elasticsearch":
        from elasticsearch import Elasticsearch

        return Elasticsearch(target, request_timeout=timeout, max_retries=max_retries, retry_on_timeout=max_retries > 0)
    from opensearchpy import OpenSearch

    return OpenSearch(target, timeout=timeout, max_retries=max_retries, retry_on_timeout=max_retries > 0)
