from __future__ import annotations

from pathlib import Path

import pytest

from lexlip_es.settings import Settings


def test_settings_read_lexlip_variables() -> None:
    s = Settings.from_env(
        {
            "LEXLIP_OPENSEARCH_URL": "http://os:9200",
            "LEXLIP_ENGINE_HEAP_MB": "768",
            "LEXLIP_START_TIMEOUT_S": "12.5",
            "LEXLIP_CACHE_DIR": "/tmp/lexlip-cache",
            "XDG_CACHE_HOME": "/ignored",
        }
    )
    assert s.opensearch_url == "http://os:9200"
    assert s.engine_heap_mb == 768
    assert s.start_timeout_s == 12.5
    assert s.cache_dir == Path("/tmp/lexlip-cache")
    assert s.engines_dir == Path("/tmp/lexlip-cache/engines")
    assert s.redis_url is None


def test_default_cache_dir_follows_xdg() -> None:
    assert Settings.from_env({"XDG_CACHE_HOME": "/x"}).cache_dir == Path("/x/lexlip-es")


def test_bad_number_names_the_variable() -> None:
    with pytest.raises(ValueError, match="LEXLIP_ENGINE_HEAP_MB"):
        Settings.from_env({"LEXLIP_ENGINE_HEAP_MB": "lots"})


def test_overrides_win() -> None:
    assert Settings.from_env({"LEXLIP_REDIS_URL": "redis://a"}, redis_url="redis://b").redis_url == "redis://b"
