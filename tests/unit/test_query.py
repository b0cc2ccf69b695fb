from __future__ import annotations

import pytest

from lexlip_es.query import escaped_document, rank_feature_query, sparse_vector_query


def test_rank_feature_query_body_is_exact() -> None:
    assert rank_feature_query("image_lex", {"red": 12, "u.s": 3}) == {
        "bool": {
            "should": [
                {"rank_feature": {"field": "image_lex.red", "linear": {}, "boost": 12}},
                {"rank_feature": {"field": "image_lex.u%2Es", "linear": {}, "boost": 3}},
            ]
        }
    }


def test_sparse_vector_query_body_turns_pruning_off() -> None:
    assert sparse_vector_query("lex", {"...": 7, "dog": 1}) == {
        "sparse_vector": {"field": "lex", "query_vector": {"%2E%2E%2E": 7, "dog": 1}, "prune": False}
    }


@pytest.mark.parametrize("build", [rank_feature_query, sparse_vector_query])
def test_empty_or_non_positive_queries_are_refused(build: object) -> None:
    with pytest.raises(ValueError, match="empty"):
        build("f", {})  # type: ignore[operator]
    with pytest.raises(ValueError, match="positive"):
        build("f", {"a": 0})  # type: ignore[operator]


def test_escaped_document() -> None:
    assert escaped_document({"a.b": 3, "%": 700}) == {"a%2Eb": 3, "%25": 700}
    with pytest.raises(ValueError, match="positive"):
        escaped_document({"a": -1})
    assert escaped_document({"a.b": 1, "a%2Eb": 2}) == {"a%2Eb": 1, "a%252Eb": 2}
