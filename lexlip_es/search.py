"""LexSearch: text, image or vector queries against a LexLIP index on the caller's cluster, with explanations.

    from opensearchpy import OpenSearch
    from lexlip_es.search import LexSearch
    from lexlip_es.encoders.onnx_text import OnnxTextEncoder

    search = LexSearch(OpenSearch("https://search.internal:9200", http_auth=...), "images",
                       text_encoder=OnnxTextEncoder("checkpoints/small"))
    for hit in search.search_text("a red circle at the top left", k=10, filters=[{"term": {"shop": "eu"}}]):
        print(hit.id, hit.score, search.explain(hit)[:3])

The index's `_meta` says which model wrote it, with which scale and top-K; a query is encoded with the same scale,
cut to what the cluster's clause limit allows, and filtered to documents of that model only.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from lexlip_es.backends.base import Contribution, SearchHit
from lexlip_es.backends.engine import AsyncEngineBackend, EngineBackend, EngineQueries, FastMode
from lexlip_es.clients import clause_limit_from, engine_errors, flavor_of, max_clause_count
from lexlip_es.errors import EmptyQueryError, MappingError, QueryError
from lexlip_es.indices import layout_from_mapping, read_layout
from lexlip_es.mapping import CAPTION_FIELD, IMAGE_FIELD, LexiconLayout
from lexlip_es.sparse import SparseVector

DEFAULT_MAX_QUERY_CHARS = 1000
_ALLOWED_CONTROLS = {"\t", "\n", "\r"}


def check_text(text: object, max_chars: int = DEFAULT_MAX_QUERY_CHARS) -> str:
    """The query text with whitespace runs collapsed; refuses non-strings, empty, over-long and control characters."""
    if not isinstance(text, str):
        raise QueryError(f"the query must be a str, got {type(text).__name__}")
    for position, char in enumerate(text):
        if unicodedata.category(char) == "Cc" and char not in _ALLOWED_CONTROLS:
            raise QueryError(f"the query holds the control character U+{ord(char):04X} at position {position}")
    if len(text) > max_chars:
        raise QueryError(f"the query is {len(text):,} characters long; the limit is {max_chars:,}")
    cleaned = " ".join(text.split())
    if not cleaned:
        raise EmptyQueryError("the query text is empty")
    return cleaned


def _model_id(encoder: Any) -> str | None:
    return getattr(encoder, "model_id", None)


class _LexSearchBase:
    def __init__(
        self,
        client: Any,
        index: str,
        *,
        text_encoder: Any = None,
        image_encoder: Any = None,
        layout: LexiconLayout | None = None,
        max_query_terms: int | None = None,
        max_query_chars: int = DEFAULT_MAX_QUERY_CHARS,
        source: bool | Sequence[str] | Mapping[str, Any] = True,
        tie_break: bool = True,
        fast: FastMode | None = None,
    ) -> None:
        self.client = client
        self.index = index
        self.flavor = flavor_of(client)
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.max_query_chars = max_query_chars
        self._layout = layout
        self._max_query_terms = max_query_terms
        self._source = source
        self._tie_break = tie_break
        self._fast = fast

    def _queries(self, layout: LexiconLayout, clause_limit: int) -> EngineQueries:
        for encoder in (self.text_encoder, self.image_encoder):
            model = _model_id(encoder)
            if encoder is not None and model is not None and model != layout.model_id:
                raise MappingError(
                    f"{self.index!r} holds vectors of model {layout.model_id!r}; this encoder is {model!r}: "
                    "queries never mix checkpoints"
                )
        # One clause goes to the model filter; the caller's filters are few and counted by the engine.
        limits = [self._max_query_terms, clause_limit - 1 if layout.field_type != "sparse_vector" else None]
        max_terms = min((x for x in limits if x is not None), default=None)
        return EngineQueries(self.flavor, self.index, layout, max_terms, self._tie_break, self._source, self._fast)

    def _text_vector(self, layout: LexiconLayout, text: object) -> dict[str, float]:
        if self.text_encoder is None:
            raise QueryError("search_text needs a text encoder (LexLIPEncoder or OnnxTextEncoder)")
        cleaned = check_text(text, self.max_query_chars)
        vector = self.text_encoder.encode_texts([cleaned], scale=layout.scale, top_k=layout.top_k_text)[0]
        return self._features(vector, f"the text {cleaned[:60]!r}", self.text_encoder)

    def _image_vector(self, layout: LexiconLayout, image: Any) -> dict[str, float]:
        if self.image_encoder is None:
            raise QueryError("search_image needs an image encoder (LexLIPEncoder)")
        vector = self.image_encoder.encode_images([image], scale=layout.scale, top_k=layout.top_k_image)[0]
        return self._features(vector, "the image", self.image_encoder)

    @staticmethod
    def _features(vector: SparseVector, what: str, encoder: Any) -> dict[str, float]:
        features: dict[str, float] = vector.to_features(encoder.vocab, escape=False)
        if not features:
            raise EmptyQueryError(f"{what} encodes to an empty lexicon: no term carries weight after quantization")
        return features


class LexSearch(_LexSearchBase):
    """Search a LexLIP index through a sync opensearch-py or elasticsearch client."""

    _backend: EngineBackend | None = None

    @property
    def layout(self) -> LexiconLayout:
        if self._layout is None:
            self._layout = read_layout(self.client, self.index)
        return self._layout

    @property
    def backend(self) -> EngineBackend:
        if self._backend is None:
            limit = max_clause_count(self.client) if self.layout.field_type != "sparse_vector" else 0
            self._backend = EngineBackend(self.client, self._queries(self.layout, limit))
        return self._backend

    def search_vector(
        self,
        vector: Mapping[str, float] | SparseVector,
        k: int = 10,
        *,
        field: str = IMAGE_FIELD,
        filters: Sequence[Mapping[str, Any]] = (),
        min_score: float | None = None,
    ) -> list[SearchHit]:
        """Top-k documents by the dot product of `vector` ({token: weight}, unescaped) with their `field` lexicon."""
        if isinstance(vector, SparseVector):
            if self.text_encoder is None and self.image_encoder is None:
                raise QueryError("a SparseVector query needs an encoder for its vocabulary; pass {token: weight}")
            vector = vector.to_features((self.text_encoder or self.image_encoder).vocab, escape=False)
        return self.backend.search(vector, k, field, filters, min_score)

    def search_text(
        self, text: str, k: int = 10, filters: Sequence[Mapping[str, Any]] = (), min_score: float | None = None
    ) -> list[SearchHit]:
        """Images for a text: the text's lexicon against the image lexicons."""
        return self.backend.search(self._text_vector(self.layout, text), k, IMAGE_FIELD, filters, min_score)

    def search_image(
        self, image: Any, k: int = 10, filters: Sequence[Mapping[str, Any]] = (), min_score: float | None = None
    ) -> list[SearchHit]:
        """Captioned documents for an image (path, bytes or PIL image): its lexicon against the caption lexicons."""
        return self.backend.search(self._image_vector(self.layout, image), k, CAPTION_FIELD, filters, min_score)

    def explain(self, hit: SearchHit) -> list[Contribution]:
        """The hit's score split by token, largest first; the contributions sum to the engine's score."""
        return self.backend.contributions(hit)


class AsyncLexSearch(_LexSearchBase):
    """The same API for AsyncOpenSearch / AsyncElasticsearch; encoding runs in a worker thread."""

    _backend: AsyncEngineBackend | None = None

    async def layout(self) -> LexiconLayout:
        if self._layout is None:
            with engine_errors(f"reading the mapping of {self.index!r}", self.index):
                response = await self.client.indices.get_mapping(index=self.index)
            self._layout = layout_from_mapping(dict(response), self.index)
        return self._layout

    async def backend(self) -> AsyncEngineBackend:
        if self._backend is None:
            layout = await self.layout()
            limit = 0
            if layout.field_type != "sparse_vector":
                with engine_errors("reading the cluster settings"):
                    settings = await self.client.cluster.get_settings(include_defaults=True, flat_settings=True)
                limit = clause_limit_from(settings)
            self._backend = AsyncEngineBackend(self.client, self._queries(layout, limit))
        return self._backend

    async def search_vector(
        self,
        vector: Mapping[str, float],
        k: int = 10,
        *,
        field: str = IMAGE_FIELD,
        filters: Sequence[Mapping[str, Any]] = (),
        min_score: float | None = None,
    ) -> list[SearchHit]:
        return await (await self.backend()).search(vector, k, field, filters, min_score)

    async def search_text(
        self, text: str, k: int = 10, filters: Sequence[Mapping[str, Any]] = (), min_score: float | None = None
    ) -> list[SearchHit]:
        layout = await self.layout()
        vector = await asyncio.to_thread(self._text_vector, layout, text)
        return await (await self.backend()).search(vector, k, IMAGE_FIELD, filters, min_score)

    async def search_image(
        self, image: Any, k: int = 10, filters: Sequence[Mapping[str, Any]] = (), min_score: float | None = None
    ) -> list[SearchHit]:
        layout = await self.layout()
        vector = await asyncio.to_thread(self._image_vector, layout, image)
        return await (await self.backend()).search(vector, k, CAPTION_FIELD, filters, min_score)

    async def explain(self, hit: SearchHit) -> list[Contribution]:
        return await (await self.backend()).contributions(hit)
