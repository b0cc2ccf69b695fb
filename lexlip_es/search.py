"""LexSearch: text, image or vector queries against a LexLIP index on the caller's cluster, with explanations.

    from opensearchpy import OpenSearch
    from lexlip_es import LexSearch, load_encoder

    search = LexSearch(OpenSearch("https://search.internal:9200", http_auth=...), "images",
                       text_encoder=load_encoder("checkpoints/small"))
    for hit in search.search_text("a red circle at the top left", k=10, filters=[{"term": {"shop": "eu"}}]):
        print(hit.id, hit.score, search.explain(hit)[:3])

The index's `_meta` says which model wrote it, with which scale and top-K; a query is encoded with the same scale,
cut to what the cluster's clause limit allows, and filtered to documents of that model only.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from lexlip_es.backends.base import Contribution, SearchHit
from lexlip_es.backends.engine import AsyncEngineBackend, EngineBackend, EngineQueries
from lexlip_es.clients import clause_limit_from, engine_errors, flavor_of, max_clause_count
from lexlip_es.errors import EmptyQueryError, MappingError, QueryError
from lexlip_es.fast import FastMode
from lexlip_es.hybrid import Hybrid
from lexlip_es.indices import layout_from_mapping, read_layout
from lexlip_es.mapping import CAPTION_FIELD, IMAGE_FIELD, LexiconLayout
from lexlip_es.query_weights import QueryWeights
from lexlip_es.sparse import SparseVector, Vocabulary

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


class QueryTextEncoder(Protocol):
    """What `LexSearch` needs of a text encoder (`LexLIPEncoder`, `OnnxTextEncoder`): query texts to lexicons,
    with the checkpoint's query term weights where it has them."""

    model_id: str

    @property
    def vocab(self) -> Vocabulary: ...

    def encode_queries(
        self, texts: Sequence[str], scale: float | None = None, top_k: int | None = None
    ) -> list[SparseVector]: ...


class QueryImageEncoder(Protocol):
    """What `LexSearch` needs of an image encoder (`LexLIPEncoder`)."""

    model_id: str

    @property
    def vocab(self) -> Vocabulary: ...

    def encode_images(
        self, images: Sequence[Any], scale: float | None = None, top_k: int | None = None
    ) -> list[SparseVector]: ...


class SearchClient(Protocol):
    """What `LexSearch` needs of a client: opensearch-py's `OpenSearch` or elasticsearch-py's `Elasticsearch`
    (`AsyncLexSearch`: their async twins), configured by the caller (hosts, auth, TLS, retries)."""

    @property
    def indices(self) -> Any: ...

    @property
    def cluster(self) -> Any: ...

    def search(self, *args: Any, **kwargs: Any) -> Any: ...

    def get(self, *args: Any, **kwargs: Any) -> Any: ...

    def mget(self, *args: Any, **kwargs: Any) -> Any: ...


def _model_id(encoder: QueryTextEncoder | QueryImageEncoder | None) -> str | None:
    return getattr(encoder, "model_id", None)


class _LexSearchBase:
    def __init__(
        self,
        client: SearchClient,
        index: str,
        *,
        text_encoder: QueryTextEncoder | None = None,
        image_encoder: QueryImageEncoder | None = None,
        layout: LexiconLayout | None = None,
        max_query_terms: int | None = None,
        max_query_chars: int = DEFAULT_MAX_QUERY_CHARS,
        source: bool | Sequence[str] | Mapping[str, Any] = True,
        tie_break: bool = True,
        fast: FastMode | None = None,
        hybrid: Hybrid | None = None,
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
        self.hybrid = hybrid

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
        fast = self._fast
        if fast is not None:
            weights = getattr(self.text_encoder, "query_weights", None)
            fast = fast.with_shares(weights.shares() if isinstance(weights, QueryWeights) else None)
        return EngineQueries(self.flavor, self.index, layout, max_terms, self._tie_break, self._source, fast)

    def _text_vector(self, layout: LexiconLayout, text: object) -> dict[str, float]:
        if self.text_encoder is None:
            raise QueryError("search_text needs a text encoder (LexLIPEncoder or OnnxTextEncoder)")
        cleaned = check_text(text, self.max_query_chars)
        vector = self.text_encoder.encode_queries([cleaned], scale=layout.scale, top_k=layout.top_k_text)[0]
        return self._features(vector, f"the text {cleaned[:60]!r}", self.text_encoder)

    def _text_query(
        self, layout: LexiconLayout, text: object, hybrid: Hybrid | None
    ) -> tuple[dict[str, float], dict[str, Any] | None]:
        """The query lexicon and, in a hybrid search, the BM25 clause (then an empty lexicon is no error: the
        words may still match)."""
        hybrid = hybrid if hybrid is not None else self.hybrid
        if hybrid is None:
            return self._text_vector(layout, text), None
        cleaned = check_text(text, self.max_query_chars)
        text_clause = hybrid.text_clause(cleaned, layout.scale)
        if hybrid.lexicon_weight == 0:
            return {}, text_clause
        try:
            vector = self._text_vector(layout, cleaned)
        except EmptyQueryError:
            if text_clause is None:
                raise
            vector = {}
        return hybrid.lexicon(vector), text_clause

    def _image_vector(self, layout: LexiconLayout, image: Any) -> dict[str, float]:
        if self.image_encoder is None:
            raise QueryError("search_image needs an image encoder (LexLIPEncoder)")
        vector = self.image_encoder.encode_images([image], scale=layout.scale, top_k=layout.top_k_image)[0]
        return self._features(vector, "the image", self.image_encoder)

    def _vector_features(self, vector: Mapping[str, float] | SparseVector) -> Mapping[str, float]:
        if not isinstance(vector, SparseVector):
            return vector
        encoder = self.text_encoder or self.image_encoder
        if encoder is None:
            raise QueryError("a SparseVector query needs an encoder for its vocabulary; pass {token: weight}")
        features: dict[str, float] = vector.to_features(encoder.vocab, escape=False)
        return features

    @staticmethod
    def _features(vector: SparseVector, what: str, encoder: QueryTextEncoder | QueryImageEncoder) -> dict[str, float]:
        features: dict[str, float] = vector.to_features(encoder.vocab, escape=False)
        if not features:
            raise EmptyQueryError(f"{what} encodes to an empty lexicon: no term carries weight after quantization")
        return features


class LexSearch(_LexSearchBase):
    """Search a LexLIP index through a sync opensearch-py or elasticsearch client.

    Args:
        client: your `OpenSearch` or `Elasticsearch` client (hosts, auth, TLS and retries are yours).
        index: the index or alias (its `_meta` names the model, scale and top-K: see `create_index`).
        text_encoder: encodes query texts (`load_encoder(path)`: ONNX or torch); needed by `search_text`.
        image_encoder: encodes query images (`LexLIPEncoder`); needed by `search_image`.
        layout: the index's layout, when known (else read from the index once).
        max_query_terms: keep at most this many query terms (default: the cluster's clause limit allows).
        max_query_chars: longer query texts are refused.
        source: `_source` filtering for the hits (True, a list of fields, or an includes/excludes mapping).
        tie_break: order equal scores by id, as Anserini and the exact scorer do (needed for `after=` pages).
        fast: `FastMode()` retrieves with the heaviest query terms (the rare ones, by the text encoder's checkpoint)
            and rescores a window with its other heavy terms; None (default) is exact mode, hit for hit Anserini's,
            with pages. `fast_mode_for(text_encoder)` gives fast mode where the checkpoint has the shares.
        hybrid: `Hybrid()` adds a BM25 match of the query text over the documents' own text fields (captions,
            titles, your metadata) to `search_text`'s lexicon score; each call may pass its own.

    Raises:
        MappingError: an encoder of another model than the index's (at the first search).
    """

    _backend: EngineBackend | None = None

    def layout(self) -> LexiconLayout:
        """The index's layout (model id, scale, top-K, field type), read from its `_meta` once."""
        if self._layout is None:
            self._layout = read_layout(self.client, self.index)
        return self._layout

    def backend(self) -> EngineBackend:
        """The query builder and runner for this index and cluster (clause limit read once)."""
        if self._backend is None:
            layout = self.layout()
            limit = max_clause_count(self.client) if layout.field_type != "sparse_vector" else 0
            self._backend = EngineBackend(self.client, self._queries(layout, limit))
        return self._backend

    def search_vector(
        self,
        vector: Mapping[str, float] | SparseVector,
        k: int = 10,
        *,
        field: str = IMAGE_FIELD,
        filters: Sequence[Mapping[str, Any]] = (),
        min_score: float | None = None,
        after: SearchHit | None = None,
    ) -> list[SearchHit]:
        """Top-k documents by the dot product of `vector` with their `field` lexicon.

        Args:
            vector: {token: weight} (tokens unescaped), or a `SparseVector` of this search's encoder vocabulary.
            k: hits to return (at most 10,000 a page: the engines' result window).
            field: `image_lexicon` (default) or `caption_lexicon`.
            filters: query clauses that restrict without scoring, e.g. `{"term": {"shop": "eu"}}`.
            min_score: leave out hits scoring below it.
            after: the last hit of the previous page, for the next page (exact mode).

        Returns:
            Hits, best first (ties by id), each with `score`, `source` and the query that produced it.

        Raises:
            QueryError: a bad vector, k, field, filter or `after`; EngineError (and its IndexNotFoundError,
            EngineUnavailableError) for what the cluster answers.
        """
        return self.backend().search(self._vector_features(vector), k, field, filters, min_score, after)

    def search_text(
        self,
        text: str,
        k: int = 10,
        filters: Sequence[Mapping[str, Any]] = (),
        min_score: float | None = None,
        *,
        after: SearchHit | None = None,
        hybrid: Hybrid | None = None,
    ) -> list[SearchHit]:
        """Images for a text: the text's lexicon against the image lexicons (and, hybrid, its words by BM25).

        Args:
            text: the query (at most `max_query_chars`; no control characters).
            k, filters, min_score, after: as in `search_vector`.
            hybrid: this call's `Hybrid` (default: the one this search was made with, if any).

        Returns:
            Hits, best first; `explain(hit)` splits a score into its tokens (and, hybrid, its matched words).

        Raises:
            QueryError: no text encoder, or a bad text; EmptyQueryError: a text whose lexicon is empty (and no
            words to match); MappingError: an encoder of another model than the index's; EngineError: the
            cluster's answer.
        """
        vector, text_clause = self._text_query(self.layout(), text, hybrid)
        return self.backend().search(vector, k, IMAGE_FIELD, filters, min_score, after, text_clause)

    def search_image(
        self,
        image: Any,
        k: int = 10,
        filters: Sequence[Mapping[str, Any]] = (),
        min_score: float | None = None,
        *,
        after: SearchHit | None = None,
    ) -> list[SearchHit]:
        """Captioned documents for an image: its lexicon against the caption lexicons.

        Args:
            image: a path, bytes or a PIL image (decoded as ingest decodes).
            k, filters, min_score, after: as in `search_vector`.

        Returns:
            Hits, best first.

        Raises:
            QueryError: no image encoder; ImageDecodeError: an unusable image; EngineError: the cluster's answer.
        """
        return self.backend().search(
            self._image_vector(self.layout(), image), k, CAPTION_FIELD, filters, min_score, after
        )

    def explain(self, hit: SearchHit) -> list[Contribution]:
        """The hit's score split by token, largest first; the contributions sum to the engine's score (from the
        stored lexicon, or the engine's `_explain` when lexicons are left out of `_source`)."""
        return self.backend().contributions(hit)


class AsyncLexSearch(_LexSearchBase):
    """The same API for AsyncOpenSearch / AsyncElasticsearch; encoding runs in a worker thread."""

    _backend: AsyncEngineBackend | None = None

    async def layout(self) -> LexiconLayout:
        """The index's layout (model id, scale, top-K, field type), read from its `_meta` once."""
        if self._layout is None:
            with engine_errors(f"reading the mapping of {self.index!r}", self.index):
                response = await self.client.indices.get_mapping(index=self.index)
            self._layout = layout_from_mapping(dict(response), self.index)
        return self._layout

    async def backend(self) -> AsyncEngineBackend:
        """The query builder and runner for this index and cluster (clause limit read once)."""
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
        vector: Mapping[str, float] | SparseVector,
        k: int = 10,
        *,
        field: str = IMAGE_FIELD,
        filters: Sequence[Mapping[str, Any]] = (),
        min_score: float | None = None,
        after: SearchHit | None = None,
    ) -> list[SearchHit]:
        """`LexSearch.search_vector`, awaited."""
        return await (await self.backend()).search(self._vector_features(vector), k, field, filters, min_score, after)

    async def search_text(
        self,
        text: str,
        k: int = 10,
        filters: Sequence[Mapping[str, Any]] = (),
        min_score: float | None = None,
        *,
        after: SearchHit | None = None,
        hybrid: Hybrid | None = None,
    ) -> list[SearchHit]:
        """`LexSearch.search_text`, awaited (the text is encoded in a worker thread)."""
        layout = await self.layout()
        vector, text_clause = await asyncio.to_thread(self._text_query, layout, text, hybrid)
        return await (await self.backend()).search(vector, k, IMAGE_FIELD, filters, min_score, after, text_clause)

    async def search_image(
        self,
        image: Any,
        k: int = 10,
        filters: Sequence[Mapping[str, Any]] = (),
        min_score: float | None = None,
        *,
        after: SearchHit | None = None,
    ) -> list[SearchHit]:
        """`LexSearch.search_image`, awaited (the image is encoded in a worker thread)."""
        layout = await self.layout()
        vector = await asyncio.to_thread(self._image_vector, layout, image)
        return await (await self.backend()).search(vector, k, CAPTION_FIELD, filters, min_score, after)

    async def explain(self, hit: SearchHit) -> list[Contribution]:
        """`LexSearch.explain`, awaited."""
        return await (await self.backend()).contributions(hit)
