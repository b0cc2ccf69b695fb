"""Hybrid search without a server: the exact request bodies, the weights' meaning, and the explanation of the BM25
part read from a Lucene `_explain` tree."""

from __future__ import annotations

from typing import Any

import pytest

from lexlip_es.backends.base import SearchHit
from lexlip_es.backends.engine import EngineQueries, FastMode
from lexlip_es.errors import QueryError
from lexlip_es.hybrid import Hybrid, combine, parse_fields, text_contributions
from tests.unit.bodies import engine_queries, feature

MODEL_FILTER = {"term": {"lexlip_model": "m1"}}


def test_hybrid_body_sums_the_lexicon_clause_and_a_boosted_bm25_match() -> None:
    hybrid = Hybrid(weight=0.5, fields=("captions", "title^2"), lexicon_weight=2.0)
    text = hybrid.text_clause("red heart", scale=100.0)
    body = engine_queries(tie_break=False).body(hybrid.lexicon({"red": 30, "heart": 10}), 5, "image_lexicon", text=text)
    assert body["query"] == {
        "bool": {
            "must": [
                {
                    "bool": {
                        "should": [
                            {
                                "bool": {
                                    "should": [
                                        feature("image_lexicon.red", 60.0),
                                        feature("image_lexicon.heart", 20.0),
                                    ]
                                }
                            },
                            {
                                "multi_match": {
                                    "query": "red heart",
                                    "fields": ["captions", "title^2"],
                                    "type": "best_fields",
                                    "boost": 5000.0,
                                }
                            },
                        ]
                    }
                }
            ],
            "filter": [MODEL_FILTER],
        }
    }


def test_bm25_alone_and_the_lexicon_alone() -> None:
    bm25 = Hybrid(weight=1.0, lexicon_weight=0.0)
    assert bm25.lexicon({"red": 30}) == {}
    body = engine_queries("elasticsearch", field_type="sparse_vector", tie_break=False).body(
        {}, 3, "image_lexicon", text=bm25.text_clause("cat", 100.0)
    )
    assert body["query"]["bool"]["must"] == [
        {"multi_match": {"query": "cat", "fields": ["captions"], "type": "best_fields", "boost": 10000.0}}
    ]
    lexicon_only = Hybrid(weight=0.0)
    assert lexicon_only.text_clause("cat", 100.0) is None
    assert combine({"rank_feature": {}}, None) == {"rank_feature": {}}


def test_fast_mode_keeps_the_bm25_clause_in_the_first_phase() -> None:
    text = Hybrid(weight=1.0).text_clause("cat", 10.0)
    body = engine_queries(fast=FastMode(terms=1, window=50)).body({"a": 3, "b": 2}, 5, "image_lexicon", text=text)
    should = body["query"]["bool"]["must"][0]["bool"]["should"]
    assert should[1] == text
    assert should[0] == {"bool": {"should": [feature("image_lexicon.a", 3)]}}
    assert body["rescore"]["query"]["rescore_query"]["bool"]["should"][0]["rank_feature"]["field"] == "image_lexicon.b"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weight": -1.0}, "weight must be a finite number >= 0"),
        ({"weight": float("nan")}, "weight must be a finite number >= 0"),
        ({"weight": 0.0, "lexicon_weight": 0.0}, "both are 0"),
        ({"fields": ()}, "non-empty sequence"),
        ({"fields": "captions"}, "non-empty sequence"),
        ({"fields": ("captions", "a b")}, "is not a field name"),
        ({"fields": ("image_lexicon",)}, "is a lexicon field"),
    ],
)
def test_bad_hybrid_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(QueryError, match=message):
        Hybrid(**kwargs)


def test_parse_fields() -> None:
    assert parse_fields(" captions, title^2 ,,") == ("captions", "title^2")
    assert parse_fields(["name"]) == ("name",)


# The shape of a Lucene 9/10 explanation of a best_fields multi_match over two fields, values as the engine gives
# them: `max of` picks the better field, under it a `sum of` over the matched words.
EXPLANATION = {
    "value": 7.5,
    "description": "max of:",
    "details": [
        {
            "value": 7.5,
            "description": "sum of:",
            "details": [
                {"value": 5.0, "description": "weight(captions:red in 3) [PerFieldSimilarity], result of:"},
                {"value": 2.5, "description": "weight(captions:heart in 3) [PerFieldSimilarity], result of:"},
            ],
        },
        {
            "value": 4.0,
            "description": "sum of:",
            "details": [{"value": 4.0, "description": "weight(title:red in 3) [PerFieldSimilarity], result of:"}],
        },
    ],
}


def test_text_contributions_follow_the_score_best_field_only() -> None:
    out = text_contributions(EXPLANATION, boost=2.0)
    assert [(c.part, c.token, c.score) for c in out] == [("captions", "red", 5.0), ("captions", "heart", 2.5)]
    assert sum(c.score for c in out) == EXPLANATION["value"]
    assert out[0].query_weight == 2.0 and out[0].engine_weight == 2.5


def test_a_single_word_explanation_and_no_match() -> None:
    single = {"value": 3.0, "description": "weight(captions:cat in 0) [PerFieldSimilarity], result of:"}
    assert [(c.token, c.score) for c in text_contributions(single, 1.0)] == [("cat", 3.0)]
    assert text_contributions({"matched": False, "value": 0.0, "description": "no match"}, 1.0) == []


def test_hybrid_hits_remember_their_text_clause() -> None:
    text = Hybrid(weight=1.0).text_clause("cat", 10.0)
    response = {"hits": {"hits": [{"_id": "a", "_score": 9.0, "_source": {}, "sort": [9.0, "a"]}]}}
    (hit,) = engine_queries().hits(response, "image_lexicon", {}, text)
    assert hit.text_query == text and hit.query == {}
    assert EngineQueries.text_boost(hit) == 100.0
    assert EngineQueries.from_source(SearchHit("a", 1.0)) == []
