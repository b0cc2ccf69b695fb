from __future__ import annotations

import numpy as np
import pytest

from lexlip_es.features import escape_feature, unescape_feature
from lexlip_es.sparse import SparseVector, Vocabulary


def test_quantize_floors_and_drops_non_positive() -> None:
    v = SparseVector(np.array([1, 4, 9]), np.array([0.004, 0.29, 1.2345], np.float32))
    q = v.quantize()
    assert q.indices.tolist() == [4, 9] and q.values.tolist() == [28, 123] and q.is_quantized
    assert v.quantize(1000).values.tolist() == [4, 289, 1234]  # float32 0.29 is 0.28999999...


def test_top_k_keeps_the_largest_and_breaks_ties_by_id() -> None:
    v = SparseVector(np.array([3, 5, 7, 8]), np.array([10, 30, 30, 20], np.int32))
    assert v.top_k(2) == SparseVector(np.array([5, 7]), np.array([30, 30], np.int32))
    assert v.top_k(3).indices.tolist() == [5, 7, 8]
    assert v.top_k(1).indices.tolist() == [5]
    assert v.top_k(None) is v and v.top_k(10) is v


def test_dot_is_exact_on_integers() -> None:
    a = SparseVector(np.array([1, 2, 5]), np.array([3, 700, 2], np.int32))
    b = SparseVector(np.array([2, 5, 6]), np.array([1000, 9, 1], np.int32))
    assert a.dot(b) == 700_000 + 18 and isinstance(a.dot(b), int)
    assert a.dot(SparseVector.empty()) == 0


def test_validation() -> None:
    with pytest.raises(ValueError, match="increasing"):
        SparseVector(np.array([2, 1]), np.array([1, 1]))
    with pytest.raises(ValueError, match="positive"):
        SparseVector(np.array([1]), np.array([0]))
    assert SparseVector.from_dense([0, 0.5, 0, 2.0]).indices.tolist() == [1, 3]


def test_features_round_trip_with_escaped_names() -> None:
    vocab = Vocabulary(["[PAD]", "a", ".", "u.s", "50%", "[unused3]", "[CLS]"])
    v = SparseVector(np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8], np.int32))
    features = v.to_features(vocab)
    assert features == {"a": 5, "%2E": 6, "u%2Es": 7, "50%25": 8}
    assert SparseVector.from_features(features, vocab) == v
    assert SparseVector.from_features(v.to_features(vocab, escape=False), vocab, escaped=False) == v
    assert vocab.special_ids() == [0, 5, 6]
    with pytest.raises(KeyError, match="not a token"):
        SparseVector.from_features({"zzz": 1}, vocab)


def test_every_token_of_the_bert_vocabulary_round_trips_and_stays_distinct(bert_vocab: Vocabulary) -> None:
    names = [escape_feature(t) for t in bert_vocab.tokens]
    assert len(set(names)) == len(bert_vocab) == 30522
    assert all("." not in n for n in names)
    assert [unescape_feature(n) for n in names] == list(bert_vocab.tokens)
    dotted = {t for t in bert_vocab.tokens if "." in t}
    assert dotted == {".", "...", "##."}  # the tokens engines would mangle
    assert "%" in bert_vocab.ids  # and the escape character itself
