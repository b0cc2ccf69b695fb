"""The `impact` field type: lexicons as text whose term frequencies are the weights, scored boost x frequency."""

from __future__ import annotations

import pytest

from lexlip_es.backends.base import SearchHit
from lexlip_es.backends.engine import EngineQueries
from lexlip_es.bulk import LexiconDocument, document_source
from lexlip_es.errors import MappingError
from lexlip_es.features import escape_impact_token, impact_text, parse_impact_text
from lexlip_es.indices import create_index, put_template
from lexlip_es.mapping import IMPACT_SETTINGS, LexiconLayout, index_body
from lexlip_es.query import lexicon_clause

LAYOUT = LexiconLayout("m1", field_type="impact")


def test_index_body_has_the_analyzer_the_similarity_and_text_fields() -> None:
    body = index_body(LAYOUT, flavor="opensearch")
    index = body["settings"]["index"]
    assert index["analysis"] == {
        "analyzer": {"lexlip_impact": {"type": "custom", "tokenizer": "whitespace", "filter": ["lexlip_weight"]}},
        "filter": {"lexlip_weight": {"type": "delimited_term_freq", "delimiter": "|"}},
    }
    assert index["similarity"] == {
        "lexlip_dot": {"type": "scripted", "script": {"source": "return query.boost * doc.freq;"}}
    }
    field = {
        "type": "text",
        "analyzer": "lexlip_impact",
        "index_options": "freqs",
        "norms": False,
        "similarity": "lexlip_dot",
    }
    assert body["mappings"]["properties"]["image_lexicon"] == field
    assert body["mappings"]["properties"]["caption_lexicon"] == field
    assert "analysis" not in index_body(LexiconLayout("m1"), flavor="opensearch")["settings"]["index"]
    assert set(IMPACT_SETTINGS) == {"analysis", "similarity"}


def test_unknown_field_type_is_refused() -> None:
    with pytest.raises(MappingError, match="rank_features, sparse_vector, impact"):
        LexiconLayout("m1", field_type="dense")  # type: ignore[arg-type]


def test_document_source_writes_token_weight_pairs_with_escaped_tokens() -> None:
    source = document_source(LexiconDocument("a", image={"red": 57, "u.s": 600, "a|b": 3, "new york": 2}), LAYOUT)
    assert source["image_lexicon"] == "red|57 u%2Es|600 a%7Cb|3 new%20york|2"
    assert parse_impact_text(source["image_lexicon"]) == {"red": 57, "u.s": 600, "a|b": 3, "new york": 2}


def test_escaping_keeps_delimiters_and_whitespace_out_of_terms() -> None:
    for token in ["|", "a|b|c", "%7C", "tab\there", "café", "##.", "x\u00a0y"]:
        term = escape_impact_token(token)
        assert "|" not in term and not any(c.isspace() for c in term)
        assert parse_impact_text(impact_text({escape_impact_token(token).replace("%7C", "|"): 5})) == {token: 5}


def test_query_is_boosted_term_clauses_on_escaped_tokens() -> None:
    clause = lexicon_clause("opensearch", "impact", "image_lexicon", {"red": 70, "u.s": 2.5, "a|b": 1})
    assert clause == {
        "bool": {
            "should": [
                {"term": {"image_lexicon": {"value": "red", "boost": 70}}},
                {"term": {"image_lexicon": {"value": "u%2Es", "boost": 2.5}}},
                {"term": {"image_lexicon": {"value": "a%7Cb", "boost": 1}}},
            ]
        }
    }


def test_contributions_from_source_are_exact_above_511() -> None:
    hit = SearchHit(
        "a", 70 * 600 + 2 * 3, {"image_lexicon": "u%2Es|600 blue|3 red|9"}, "i", "image_lexicon", {"u.s": 70, "blue": 2}
    )
    found = EngineQueries.from_source(hit)
    assert found is not None
    assert [(c.token, c.query_weight, c.document_weight, c.engine_weight, c.score) for c in found] == [
        ("u.s", 70.0, 600.0, 600.0, 42000.0),
        ("blue", 2.0, 3.0, 3.0, 6.0),
    ]


def test_contributions_from_the_engines_explanation() -> None:
    hit = SearchHit("a", 0.0, {}, "i", "image_lexicon", {"u.s": 70, "blue": 2})
    explanation = {
        "value": 42006.0,
        "details": [
            {"value": 42000.0, "description": "weight(image_lexicon:u%2Es in 3) [PerFieldSimilarity], result of:"},
            {"value": 6.0, "description": "weight(image_lexicon:blue in 3) [PerFieldSimilarity], result of:"},
        ],
    }
    found = EngineQueries.from_explanation(hit, explanation)
    assert [(c.token, c.engine_weight) for c in found] == [("u.s", 600.0), ("blue", 3.0)]


@pytest.mark.parametrize(
    "client_class, field_type",
    [("elasticsearch.Elasticsearch", "impact"), ("opensearchpy.OpenSearch", "sparse_vector")],
)
def test_a_field_type_the_engine_lacks_is_refused_before_any_request(client_class: str, field_type: str) -> None:
    import importlib

    module, name = client_class.rsplit(".", 1)
    client = getattr(importlib.import_module(module), name)("http://127.0.0.1:9")  # nothing listens: no request made
    layout = LexiconLayout("m1", field_type=field_type)  # type: ignore[arg-type]
    with pytest.raises(MappingError, match=f"{field_type!r} is not available"):
        create_index(client, "images", layout)
    with pytest.raises(MappingError, match=f"{field_type!r} is not available"):
        put_template(client, "lexlip", ["images-*"], layout)
