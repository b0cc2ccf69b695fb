"""Fast mode's head: the heaviest terms, the rare ones when document shares are known, exact when none is rare."""

from __future__ import annotations

import pytest
from opensearchpy import OpenSearch

from lexlip_es.errors import QueryError
from lexlip_es.fast import FastMode
from lexlip_es.mapping import LexiconLayout
from lexlip_es.query_weights import QueryWeights
from lexlip_es.search import LexSearch
from lexlip_es.sparse import SparseVector, Vocabulary

QUERY = {"rocket": 90.0, "people": 80.0, "body": 70.0, "space": 40.0, "astronaut": 30.0, "red": 5.0}
SHARES = {"people": 0.57, "body": 0.58, "rocket": 0.004, "space": 0.01, "astronaut": 0.002, "red": 0.09}


def test_head_by_weight_without_shares() -> None:
    assert FastMode(terms=2).head(QUERY) == {"rocket": 90.0, "people": 80.0}


def test_head_keeps_common_terms_out_when_shares_are_known() -> None:
    fast = FastMode(terms=3, shares=SHARES)
    assert fast.head(QUERY) == {"rocket": 90.0, "space": 40.0, "astronaut": 30.0}
    assert FastMode(terms=3, max_share=0.005, shares=SHARES).head(QUERY) == {"rocket": 90.0, "astronaut": 30.0}
    # the shares describe image lexicons: a caption-field search (an image query) is exact
    assert fast.head(QUERY, image_field=False) == QUERY
    assert FastMode(terms=3).head(QUERY, image_field=False) == {"rocket": 90.0, "people": 80.0, "body": 70.0}


def test_a_query_without_a_rare_term_is_searched_exactly() -> None:
    common = {"people": 80.0, "body": 70.0, "skin": 60.0, "tone": 50.0, "person": 40.0}
    shares = {"people": 0.57, "body": 0.58, "skin": 0.45, "tone": 0.45, "person": 0.46}
    assert FastMode(terms=2, shares=shares).head(common) == common
    assert FastMode(terms=8, shares=shares).head({"rocket": 1.0}) == {"rocket": 1.0}


def test_fast_mode_is_checked_and_ignores_shares_in_equality() -> None:
    with pytest.raises(QueryError, match="max_share"):
        FastMode(max_share=0.0)
    assert FastMode(shares=SHARES) == FastMode()
    assert "shares" not in repr(FastMode(shares=SHARES))
    assert FastMode(shares=SHARES).with_shares({"x": 1.0}).shares is SHARES


def test_the_rescore_keeps_the_heaviest_terms_and_every_head_term() -> None:
    fast = FastMode(terms=2, max_share=0.05, rescore_terms=3, shares=SHARES)
    head, tail = fast.split(QUERY)
    assert head == {"rocket": 90.0, "space": 40.0}
    assert tail == {"people": 80.0, "body": 70.0}  # "astronaut" and "red" are lighter than the 3 heaviest
    assert fast.scored(QUERY, head) == {**head, **tail}
    assert FastMode(terms=2, rescore_terms=None).split(QUERY)[1] == {
        t: QUERY[t] for t in ("body", "space", "astronaut", "red")
    }
    assert FastMode(terms=8).split(QUERY) == (QUERY, {})  # a short query is exact: nothing to rescore
    with pytest.raises(QueryError, match="rescore_terms must be more than its head's 4 terms"):
        FastMode(rescore_terms=4)


def test_fast_hits_carry_the_terms_that_scored_them() -> None:
    from lexlip_es.backends.engine import EngineQueries

    queries = EngineQueries("opensearch", "images", LexiconLayout("m1"), fast=FastMode(terms=1, rescore_terms=2))
    body = queries.body({"a": 9.0, "b": 7.0, "c": 3.0}, 10, "image_lexicon")
    assert [c["rank_feature"]["field"] for c in body["rescore"]["query"]["rescore_query"]["bool"]["should"]] == [
        "image_lexicon.b"
    ]
    response = {"hits": {"hits": [{"_id": "x", "_score": 25.0}]}}
    (hit,) = queries.hits(response, "image_lexicon", {"a": 9.0, "b": 7.0, "c": 3.0})
    assert hit.query == {"a": 9.0, "b": 7.0}  # what explain() splits the score over


class WeightedEncoder:
    model_id = "m1"

    def __init__(self) -> None:
        self._vocab = Vocabulary(["rocket", "people"])
        self.query_weights = QueryWeights(power=0.0, documents=200, df={"people": 114, "rocket": 1})

    @property
    def vocab(self) -> Vocabulary:
        return self._vocab

    def encode_queries(self, texts: list[str], scale: float | None = None, top_k: int | None = None) -> list:
        return [SparseVector.empty()]


def test_lex_search_takes_the_shares_from_its_text_encoders_checkpoint() -> None:
    search = LexSearch(
        OpenSearch("http://127.0.0.1:9"),
        "images",
        text_encoder=WeightedEncoder(),
        layout=LexiconLayout("m1"),
        fast=FastMode(terms=1),
    )
    queries = search._queries(search.layout(), clause_limit=1024)
    assert queries.fast is not None and queries.fast.shares == {"people": 0.57, "rocket": 0.005}
    body = queries.body({"people": 9.0, "rocket": 3.0}, 10, "image_lexicon")
    head = body["query"]["bool"]["must"][0]["bool"]["should"]
    assert [c["rank_feature"]["field"] for c in head] == ["image_lexicon.rocket"]
    assert body["rescore"]["window_size"] == 100
    exact = LexSearch(
        OpenSearch("http://127.0.0.1:9"), "images", text_encoder=WeightedEncoder(), layout=LexiconLayout("m1")
    )
    assert exact._queries(exact.layout(), clause_limit=1024).fast is None


def test_fast_mode_for_an_encoder_needs_its_checkpoints_shares() -> None:
    from lexlip_es.fast import fast_mode_for

    mode = fast_mode_for(WeightedEncoder())
    assert mode == FastMode() and mode is not None and mode.shares == {"people": 0.57, "rocket": 0.005}
    assert fast_mode_for(object()) is None
