"""Query term weights (lexlip_es/query_weights.py): idf over reference image lexicons, applied to query rows only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lexlip_es.query_weights import QUERY_WEIGHTS_FILE, QueryWeighting, QueryWeights, idf
from lexlip_es.sparse import SparseVector, Vocabulary

VOCAB = Vocabulary(["[PAD]", "skin", "tone", "cane", "ear", "medium"])


def _weights(power: float = 1.0) -> QueryWeights:
    images = [
        SparseVector.from_pairs([(1, 0.5), (2, 0.5), (5, 0.3)]),
        SparseVector.from_pairs([(1, 0.4), (2, 0.6), (3, 0.2)]),
        SparseVector.from_pairs([(1, 0.7), (2, 0.1), (4, 0.9)]),
        SparseVector.from_pairs([(4, 0.2)]),
    ]
    return QueryWeights.from_lexicons(images, VOCAB, power=power)


def test_idf_is_bm25s() -> None:
    got = idf(10, [0, 5, 10])
    assert got == pytest.approx([math.log(22.0), math.log(2.0), math.log1p(0.5 / 10.5)])


def test_document_frequencies_count_images_holding_a_token_by_name() -> None:
    weights = _weights()
    assert weights.documents == 4
    assert dict(weights.df) == {"skin": 3, "tone": 3, "cane": 1, "ear": 2, "medium": 1}


def test_multipliers_are_idf_to_the_power_and_unheld_tokens_get_the_largest() -> None:
    m = _weights(power=0.5).multipliers(VOCAB)
    expected = idf(4, [0, 3, 3, 1, 2, 1]) ** 0.5
    assert m == pytest.approx(expected.astype(np.float32))
    assert m[0] == m.max() and m[3] > m[4] > m[1]
    assert np.all(_weights(power=0.0).multipliers(VOCAB) == 1.0)
    with pytest.raises(ValueError, match="lacks: \\['zebra'\\]"):
        QueryWeights(power=1.0, documents=4, df={"zebra": 1}).multipliers(VOCAB)


def test_weighting_moves_mass_to_rare_words_and_keeps_the_norm() -> None:
    row = np.array([0, 1.0, 1.0, 1.0, 0, 0], dtype=np.float32)  # "skin tone cane" at equal weights
    weighted = QueryWeighting(_weights(), VOCAB)(row)
    assert np.linalg.norm(weighted) == pytest.approx(np.linalg.norm(row))
    assert weighted[3] > weighted[1] == weighted[2] and weighted[0] == weighted[4] == 0
    assert weighted[3] / weighted[1] == pytest.approx(idf(4, [1])[0] / idf(4, [3])[0], rel=1e-6)
    assert QueryWeighting(None, VOCAB)(row) is row
    assert QueryWeighting(_weights(power=0.0), VOCAB)(row) is row
    assert np.all(QueryWeighting(_weights(), VOCAB)(np.zeros(6, dtype=np.float32)) == 0)


def test_files_round_trip_and_a_broken_one_is_named(tmp_path: Path) -> None:
    assert QueryWeights.load(tmp_path) is None
    weights = QueryWeights(power=0.5, documents=4, df={"skin": 3}, chosen={"split": "val"})
    weights.save(tmp_path)
    assert QueryWeights.load(tmp_path) == weights
    (tmp_path / QUERY_WEIGHTS_FILE).write_text(json.dumps({"power": 0.5, "df": {}}))
    with pytest.raises(ValueError, match=f"{QUERY_WEIGHTS_FILE} is not a query weights file"):
        QueryWeights.load(tmp_path)
    with pytest.raises(ValueError, match="outside \\[0, 4\\]"):
        QueryWeights(power=0.5, documents=4, df={"skin": 9})
    with pytest.raises(ValueError, match="power must be in"):
        QueryWeights(power=-1.0, documents=4, df={})
