"""Exact query JSON, query-side checks, explanations and error translation, without a server."""

from __future__ import annotations

import pytest

from lexlip_es.backends.base import SearchHit
from lexlip_es.backends.engine import EngineQueries, top_terms
from lexlip_es.backends.exact import ExactBackend
from lexlip_es.clients import translate
from lexlip_es.errors import EmptyQueryError, EngineUnavailableError, IndexNotFoundError, QueryError
from lexlip_es.mapping import LexiconLayout
from lexlip_es.search import check_text
from tests.unit.bodies import engine_queries, feature


def test_opensearch_search_body_is_exact() -> None:
    body = engine_queries(max_terms=2).body(
        {"red": 30, "u.s": 5, "circle": 30}, 10, "image_lexicon", [{"term": {"shop": "eu"}}], min_score=2.0
    )
    # one request: the engine orders equal scores by id (Lucene still skips what cannot reach the k-th score)
    assert body == {
        "size": 10,
        "query": {
            "bool": {
                "must": [
                    {
                        "bool": {
                            "should": [
                                feature("image_lexicon.circle", 30),
                                feature("image_lexicon.red", 30),
                            ]
                        }
                    }
                ],
                "filter": [{"term": {"lexlip_model": "m1"}}, {"term": {"shop": "eu"}}],
            }
        },
        "track_total_hits": False,
        "_source": True,
        "min_score": 2.0,
        "sort": [{"_score": {"order": "desc"}}, {"lexlip_id": {"order": "asc"}}],
        "track_scores": True,
    }


def _answer(*hits: tuple[str, float]) -> dict[str, object]:
    return {"hits": {"hits": [{"_id": i, "_score": s, "_source": {}} for i, s in hits]}}


def test_engine_sorted_hits_keep_their_order_and_others_are_ordered_by_score_then_id() -> None:
    sorted_answer = {
        "hits": {"hits": [{"_id": i, "_score": s, "_source": {}, "sort": [s, i]} for i, s in (("a", 9.0), ("b", 5.0))]}
    }
    hits = engine_queries().hits(sorted_answer, "image_lexicon", {"red": 3}, k=2)
    assert [(h.id, h.sort) for h in hits] == [("a", (9.0, "a")), ("b", (5.0, "b"))]
    # a rescored (fast mode) answer comes in the engine's own order among equal scores: c before b at 5.0
    answer = _answer(("a", 9.0), ("c", 5.0), ("b", 5.0), ("d", 1.0))
    hits = engine_queries().hits(answer, "image_lexicon", {"red": 3}, k=2)
    assert [(h.id, h.sort) for h in hits] == [("a", (9.0, "a")), ("b", (5.0, "b"))]
    plain = engine_queries(tie_break=False)
    assert "sort" not in plain.body({"red": 3}, 2, "image_lexicon")


def test_elasticsearch_sparse_vector_body() -> None:
    body = engine_queries("elasticsearch", field_type="sparse_vector", tie_break=False, source=["file"]).body(
        {"u.s": 5}, 3, "caption_lexicon"
    )
    assert body == {
        "size": 3,
        "query": {
            "bool": {
                "must": [{"sparse_vector": {"field": "caption_lexicon", "query_vector": {"u%2Es": 5}, "prune": False}}],
                "filter": [{"term": {"lexlip_model": "m1"}}],
            }
        },
        "track_total_hits": False,
        "_source": ["file"],
    }


def test_top_terms_keeps_the_largest_weights_ties_to_the_smaller_token() -> None:
    assert top_terms({"b": 5, "a": 5, "c": 9, "d": 1}, 2) == {"c": 9, "a": 5}
    assert top_terms({"a": 1}, None) == {"a": 1}


@pytest.mark.parametrize(
    ("vector", "k", "field", "error", "message"),
    [
        ({}, 10, "image_lexicon", EmptyQueryError, "empty"),
        ({"a": 0}, 10, "image_lexicon", QueryError, "positive"),
        ({"a": float("inf")}, 10, "image_lexicon", QueryError, "finite"),
        ({"a": 1}, 0, "image_lexicon", QueryError, "k must be"),
        ({"a": 1}, 10, "title", QueryError, "field must be"),
    ],
)
def test_bad_vectorengine_queries(vector: dict[str, float], k: int, field: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        engine_queries().body(vector, k, field)


def test_opensearch_cannot_use_sparse_vector() -> None:
    with pytest.raises(QueryError, match="Elasticsearch feature"):
        engine_queries("opensearch", field_type="sparse_vector").body({"a": 1}, 1, "image_lexicon")


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("", EmptyQueryError, "empty"),
        ("  \n\t ", EmptyQueryError, "empty"),
        ("x" * 10_000, QueryError, "10,000 characters long; the limit is 1,000"),
        ("red\x00circle", QueryError, "U\\+0000 at position 3"),
        ("red\x1bcircle", QueryError, "U\\+001B"),
        (42, QueryError, "must be a str"),
    ],
)
def test_bad_texts(text: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        check_text(text)


def test_text_whitespace_is_collapsed() -> None:
    assert check_text(" a  red\tcircle\n") == "a red circle"


def test_explanation_from_source_uses_lucene_weights() -> None:
    hit = SearchHit(
        "a", 0.0, {"image_lexicon": {"red": 3, "u%2Es": 601}}, "images", "image_lexicon", {"red": 2, "u.s": 1, "x": 5}
    )
    contributions = EngineQueries.from_source(hit)
    assert contributions is not None
    assert [(c.token, c.query_weight, c.document_weight, c.engine_weight, c.score) for c in contributions] == [
        ("u.s", 1.0, 601.0, 600.0, 600.0),
        ("red", 2.0, 3.0, 3.0, 6.0),
    ]


def test_explanation_from_the_engine_explain_api() -> None:
    hit = SearchHit("a", 0.0, {}, "images", "image_lexicon", {"red": 2, "u.s": 4})
    explanation = {
        "value": 18.0,
        "details": [
            {"value": 6.0, "description": "Linear function on the image_lexicon field for the red feature"},
            {"value": 12.0, "description": "Linear function on the image_lexicon field for the u%2Es feature"},
        ],
    }
    contributions = EngineQueries.from_explanation(hit, explanation)
    assert [(c.token, c.engine_weight, c.score) for c in contributions] == [("u.s", 3.0, 12.0), ("red", 3.0, 6.0)]


def test_exact_backend_orders_ties_by_id() -> None:
    backend = ExactBackend([("b", {"x": 2}), ("a", {"x": 2}), ("c", {"x": 1, "y": 9}), ("d", {"z": 1})])
    (hits,) = backend.search_many([{"x": 3, "y": 1}], k=10)
    assert [(h.id, h.score) for h in hits] == [("c", 12.0), ("a", 6.0), ("b", 6.0)]
    assert [(c.token, c.score) for c in backend.contributions(hits[0])] == [("y", 9.0), ("x", 3.0)]


def test_client_errors_become_ours() -> None:
    from opensearchpy.exceptions import ConnectionError as OSConnectionError
    from opensearchpy.exceptions import NotFoundError

    down = translate(OSConnectionError("N/A", "Connection refused", None), "searching 'x'")
    assert isinstance(down, EngineUnavailableError) and "cannot be reached" in str(down)
    missing = translate(
        NotFoundError(
            404,
            "index_not_found_exception",
            {"error": {"type": "index_not_found_exception", "reason": "no such index [x]"}},
        ),
        "searching 'x'",
        "x",
    )
    assert isinstance(missing, IndexNotFoundError) and "index 'x' does not exist" in str(missing)


def test_a_text_that_encodes_to_nothing_is_an_empty_query_error() -> None:
    from lexlip_es.search import LexSearch
    from lexlip_es.sparse import SparseVector, Vocabulary

    class NothingEncoder:
        vocab = Vocabulary(["[PAD]", "red"])
        model_id = "m1"

        def encode_queries(self, texts: list[str], scale: float, top_k: int | None) -> list[SparseVector]:
            return [SparseVector.empty()]

    from opensearchpy import OpenSearch

    search = LexSearch(
        OpenSearch("http://127.0.0.1:9"), "images", text_encoder=NothingEncoder(), layout=LexiconLayout("m1")
    )
    with pytest.raises(EmptyQueryError, match="encodes to an empty lexicon"):
        search._text_vector(search.layout(), "the")


def test_fast_mode_body_scores_head_terms_and_rescores_the_rest() -> None:
    from lexlip_es.backends.engine import FastMode

    body = engine_queries(fast=FastMode(terms=2, window=50)).body({"a": 9, "b": 7, "c": 3, "d": 1}, 10, "image_lexicon")
    assert body == {
        "size": 10,
        "query": {
            "bool": {
                "must": [
                    {
                        "bool": {
                            "should": [
                                feature("image_lexicon.a", 9),
                                feature("image_lexicon.b", 7),
                            ]
                        }
                    }
                ],
                "filter": [{"term": {"lexlip_model": "m1"}}],
            }
        },
        "track_total_hits": False,
        "_source": True,
        "rescore": {
            "window_size": 50,
            "query": {
                "rescore_query": {
                    "bool": {
                        "should": [
                            feature("image_lexicon.c", 3),
                            feature("image_lexicon.d", 1),
                        ]
                    }
                },
                "query_weight": 1.0,
                "rescore_query_weight": 1.0,
                "score_mode": "total",
            },
        },
    }
    short = engine_queries(fast=FastMode(terms=8)).body({"a": 9}, 10, "image_lexicon")
    assert "rescore" not in short and "sort" in short  # a short query is an exact search
    with pytest.raises(QueryError, match="fast mode needs"):
        FastMode(terms=0)


def test_explanation_of_a_one_term_query_is_the_clause_itself() -> None:
    hit = SearchHit("a", 0.0, {}, "images", "image_lexicon", {"u.s": 4})
    explanation = {
        "value": 12.0,
        "description": "Linear function on the image_lexicon field for the u%2Es feature, computed as w * S from:",
        "details": [{"value": 4.0, "description": "w, weight of this function"}, {"value": 3.0, "description": "S"}],
    }
    contributions = EngineQueries.from_explanation(hit, explanation)
    assert [(c.token, c.engine_weight, c.score) for c in contributions] == [("u.s", 3.0, 12.0)]


def test_pages_continue_after_the_last_hit_and_k_stays_inside_the_result_window() -> None:
    from lexlip_es.backends.engine import MAX_RESULT_WINDOW, FastMode

    queries = engine_queries()
    response = {"hits": {"hits": [{"_id": "b", "_score": 7.0, "sort": [7.0, "b"]}]}}
    (last,) = queries.hits(response, "image_lexicon", {"red": 3})
    assert last.sort == (7.0, "b")
    body = queries.body({"red": 3}, 10, "image_lexicon", after=last)
    assert body["search_after"] == [7.0, "b"]
    assert body["sort"] == [{"_score": {"order": "desc"}}, {"lexlip_id": {"order": "asc"}}]
    assert "search_after" not in queries.body({"red": 3}, 10, "image_lexicon")
    with pytest.raises(QueryError, match="beyond the engine's result window of 10,000 hits"):
        queries.body({"red": 3}, MAX_RESULT_WINDOW + 1, "image_lexicon")
    assert queries.body({"red": 3}, MAX_RESULT_WINDOW, "image_lexicon")["size"] == MAX_RESULT_WINDOW
    with pytest.raises(QueryError, match="takes a hit this search returned"):
        queries.body({"red": 3}, 10, "image_lexicon", after=SearchHit("b", 7.0))
    fast = engine_queries(fast=FastMode(1, 10))
    with pytest.raises(QueryError, match="need exact mode"):
        fast.body({"red": 3, "blue": 2}, 10, "image_lexicon", after=last)
