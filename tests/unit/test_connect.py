"""Which engine the CLI, workers and demo talk to."""

from __future__ import annotations

import pytest

from lexlip_es.connect import engine_client, engine_target
from lexlip_es.errors import LexlipError
from lexlip_es.settings import Settings


def _settings(**env: str) -> Settings:
    return Settings.from_env({f"LEXLIP_{k.upper()}": v for k, v in env.items()})


def test_the_engine_is_the_one_whose_url_is_set_or_the_one_named() -> None:
    assert engine_target(_settings(opensearch_url="http://os:9200")) == ("opensearch", "http://os:9200")
    assert engine_target(_settings(elasticsearch_url="http://es:9200")) == ("elasticsearch", "http://es:9200")
    both = {"opensearch_url": "http://os:9200", "elasticsearch_url": "http://es:9200"}
    assert engine_target(_settings(**both)) == ("opensearch", "http://os:9200")
    assert engine_target(_settings(engine="Elasticsearch", **both)) == ("elasticsearch", "http://es:9200")
    assert engine_target(_settings(**both), url="http://other:9200") == ("opensearch", "http://other:9200")
    with pytest.raises(LexlipError, match="set LEXLIP_ELASTICSEARCH_URL"):
        engine_target(_settings(engine="elasticsearch", opensearch_url="http://os:9200"))
    with pytest.raises(LexlipError, match="choose opensearch or elasticsearch"):
        engine_target(_settings(engine="solr"))
    with pytest.raises(LexlipError, match="no search cluster"):
        engine_target(_settings())


def test_the_client_is_the_engine_library_s_own() -> None:
    assert type(engine_client(_settings(opensearch_url="http://127.0.0.1:1"))).__module__.startswith("opensearchpy")
    es = engine_client(_settings(elasticsearch_url="http://127.0.0.1:1"))
    assert type(es).__module__.startswith("elasticsearch")
