"""lexlip-es: image search by learned sparse lexicons on Elasticsearch and OpenSearch.

The public API, flat (open_clip style):

    from lexlip_es import LexSearch, create_index, LexiconLayout, IndexOptions, load_encoder

Importing this package never imports torch, an engine client or Celery: every name below is loaded on first use
(PEP 562), so `import lexlip_es` stays cheap for a service that only builds queries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lexlip_es.errors import EngineError, EngineStartError, LexlipError
from lexlip_es.settings import Settings
from lexlip_es.sparse import SparseVector, Vocabulary

if TYPE_CHECKING:
    from lexlip_es.bulk import BulkWriter, LexiconDocument
    from lexlip_es.documents import encode_documents
    from lexlip_es.encoders.lexlip import LexLIPEncoder
    from lexlip_es.encoders.loading import load_encoder
    from lexlip_es.fast import FastMode
    from lexlip_es.hybrid import Hybrid
    from lexlip_es.indices import create_index
    from lexlip_es.mapping import IndexOptions, LexiconLayout
    from lexlip_es.query_weights import QueryWeights
    from lexlip_es.search import AsyncLexSearch, LexSearch

__version__ = "0.1.0"

_LAZY = {
    "LexSearch": "lexlip_es.search",
    "AsyncLexSearch": "lexlip_es.search",
    "FastMode": "lexlip_es.fast",
    "Hybrid": "lexlip_es.hybrid",
    "create_index": "lexlip_es.indices",
    "LexiconLayout": "lexlip_es.mapping",
    "IndexOptions": "lexlip_es.mapping",
    "BulkWriter": "lexlip_es.bulk",
    "LexiconDocument": "lexlip_es.bulk",
    "encode_documents": "lexlip_es.documents",
    "LexLIPEncoder": "lexlip_es.encoders.lexlip",
    "load_encoder": "lexlip_es.encoders.loading",
    "QueryWeights": "lexlip_es.query_weights",
}

__all__ = [
    "AsyncLexSearch",
    "BulkWriter",
    "EngineError",
    "EngineStartError",
    "FastMode",
    "Hybrid",
    "IndexOptions",
    "LexLIPEncoder",
    "LexSearch",
    "LexiconDocument",
    "LexiconLayout",
    "LexlipError",
    "QueryWeights",
    "Settings",
    "SparseVector",
    "Vocabulary",
    "__version__",
    "create_index",
    "encode_documents",
    "load_encoder",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lexlip_es' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
