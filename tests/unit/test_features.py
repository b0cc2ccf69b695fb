from __future__ import annotations

import random

import pytest

from lexlip_es.features import (
    LUCENE_EXACT_LIMIT,
    dot,
    escape_feature,
    lucene_dot,
    lucene_feature_value,
    stored_lexicon,
    unescape_feature,
)
from lexlip_es.parity import SMOKE_VOCABULARY as VOCABULARY


@pytest.mark.parametrize(
    ("token", "escaped"),
    [
        ("red", "red"),
        (".", "%2E"),
        ("...", "%2E%2E%2E"),
        ("u.s", "u%2Es"),
        ("50%", "50%25"),
        ("%2E", "%252E"),
        ("a b", "a%20b"),
        ("tab\t", "tab%09"),
        ("café", "café"),
        ("##ing", "##ing"),
        ("[CLS]", "[CLS]"),
    ],
)
def test_escape_feature_exact(token: str, escaped: str) -> None:
    assert escape_feature(token) == escaped
    assert unescape_feature(escaped) == token


def test_escape_round_trips_random_strings_and_never_leaves_a_dot() -> None:
    rng = random.Random(0)
    alphabet = ".%#abc é\u00a0\x01\x7f\t%2E5F"
    tokens = list(VOCABULARY) + ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(5000)]
    for token in tokens:
        name = escape_feature(token)
        assert "." not in name and not any(c.isspace() or ord(c) < 0x20 for c in name)
        assert unescape_feature(name) == token


def test_escape_rejects_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        escape_feature("")


def test_lucene_keeps_integers_below_512_exactly_and_truncates_above() -> None:
    for w in range(1, LUCENE_EXACT_LIMIT):
        assert lucene_feature_value(w) == w
    assert lucene_feature_value(512) == 512
    assert lucene_feature_value(513) == 512
    assert lucene_feature_value(1023) == 1022
    assert lucene_feature_value(4095) == 4088
    for w in range(512, 70000, 7):
        kept = lucene_feature_value(w)
        assert kept <= w and w - kept < w / 256


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
def test_lucene_value_rejects_non_positive(bad: float) -> None:
    with pytest.raises(ValueError):
        lucene_feature_value(bad)


def test_dot_products() -> None:
    q = {"a": 2, "b": 3}
    d = {"a": 10, "c": 5, "b": 601}
    assert dot(q, d) == 2 * 10 + 3 * 601
    assert dot(d, q) == dot(q, d)
    assert lucene_dot(q, d) == 2 * 10 + 3 * 600
    assert dot(q, {"z": 1}) == 0


def test_stored_lexicons_come_back_keyed_by_vocabulary_token() -> None:
    assert stored_lexicon({"u%2Es": 601, "red": 3}) == {"u.s": 601.0, "red": 3.0}
    assert stored_lexicon("u%2Es|601 a%7Cb|2 50%25|7") == {"u.s": 601.0, "a|b": 2.0, "50%": 7.0}
    assert stored_lexicon(None) == {} and stored_lexicon([1, 2]) == {}
