"""The index layout for LexLIP documents: field names, the mapping, `_meta`, settings and index templates.

One document per image: its lexicon (`image_lexicon`), the merged lexicon of its captions (`caption_lexicon`), the
model that wrote them (`lexlip_model`), the caller's item id (`lexlip_id`, the tie-breaker) and the caller's own
metadata fields, which this module never touches. OpenSearch stores lexicons as `rank_features`; Elasticsearch as
`sparse_vector` (8.11+), or `rank_features` where the cluster has mapper-extras and the caller asks for it.

`impact` (OpenSearch) stores each lexicon as a text field whose terms carry the weights as term frequencies (the
`delimited_term_freq` token filter) and scores them with a scripted similarity, `boost x frequency`: exact integer
dot products with no 9-bit truncation, and postings as small as Anserini's impact index.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lexlip_es.errors import MappingError
from lexlip_es.sparse import DEFAULT_SCALE

Flavor = Literal["opensearch", "elasticsearch"]
FieldType = Literal["rank_features", "sparse_vector", "impact"]
FIELD_TYPES = ("rank_features", "sparse_vector", "impact")
IMPACT_ANALYZER = "lexlip_impact"
IMPACT_SIMILARITY = "lexlip_dot"

IMAGE_FIELD = "image_lexicon"
CAPTION_FIELD = "caption_lexicon"
MODEL_FIELD = "lexlip_model"
ID_FIELD = "lexlip_id"
LEXICON_FIELDS = (IMAGE_FIELD, CAPTION_FIELD)
LAYOUT_VERSION = 1
ID_PROPERTY = {"type": "keyword", "index": False}
"""The document id again, as doc values only: exact mode sorts ties by it; lookups go through `_id`. Left out of the
terms dictionary, which held every id a second time (benchmarks/results/table2-*.md: the `tim` bytes)."""


@dataclass(frozen=True)
class LexiconLayout:
    """What a LexLIP index records about the vectors it holds; written into the mapping's `_meta`."""

    model_id: str
    scale: float = DEFAULT_SCALE
    top_k_image: int | None = 128
    top_k_text: int | None = 48
    field_type: FieldType = "rank_features"
    exclude_lexicons_from_source: bool = False

    def __post_init__(self) -> None:
        if not self.model_id or not isinstance(self.model_id, str):
            raise MappingError("a LexLIP index needs a non-empty model id")
        if not self.scale > 0:
            raise MappingError(f"scale must be positive, got {self.scale!r}")
        for name in ("top_k_image", "top_k_text"):
            k = getattr(self, name)
            if k is not None and (not isinstance(k, int) or k <= 0):
                raise MappingError(f"{name} must be a positive integer or None, got {k!r}")
        if self.field_type not in FIELD_TYPES:
            raise MappingError(f"field_type must be one of {', '.join(FIELD_TYPES)}, got {self.field_type!r}")

    def meta(self) -> dict[str, Any]:
        return {"lexlip": {"layout": LAYOUT_VERSION, **asdict(self)}}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None, index: str = "the index") -> LexiconLayout:
        data = (meta or {}).get("lexlip")
        if not isinstance(data, Mapping):
            raise MappingError(f"{index} has no lexlip entry in its mapping's _meta: it was not created by lexlip-es")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class IndexOptions:
    """Index-level choices passed through to the engine."""

    shards: int = 1
    replicas: int = 1
    refresh_interval: str | None = None
    metadata_properties: Mapping[str, Any] = field(default_factory=dict)
    """The caller's own field mappings (e.g. {"caption": {"type": "text"}}), added as given."""


ENGINE_FIELD_TYPES: dict[Flavor, tuple[FieldType, ...]] = {
    "opensearch": ("rank_features", "impact"),
    "elasticsearch": ("sparse_vector", "rank_features"),
}


def check_field_type(flavor: Flavor, layout: LexiconLayout) -> None:
    """Refuse, before any request, a field type the engine does not have: `impact` needs OpenSearch's
    `delimited_term_freq` filter and scripted similarity; `sparse_vector` is Elasticsearch's."""
    supported = ENGINE_FIELD_TYPES[flavor]
    if layout.field_type not in supported:
        raise MappingError(
            f"field type {layout.field_type!r} is not available on {flavor}: use one of {', '.join(supported)}"
        )


def model_property(flavor: Flavor, model_id: str) -> dict[str, Any]:
    """The checkpoint's id on every document. OpenSearch's `constant_keyword` refuses a document of another model at
    write time and makes every search's model filter free (it matches all or none of a shard, where a `keyword`
    filter is walked beside the lexicon's postings: half the cost of a search: README, OpenSearch quickstart).
    The Elasticsearch node we test on lacks the x-pack module that holds `constant_keyword`: a `keyword` there."""
    if flavor == "opensearch":
        return {"type": "constant_keyword", "value": model_id}
    return {"type": "keyword"}


def lexicon_properties(layout: LexiconLayout, flavor: Flavor) -> dict[str, Any]:
    lexicon: dict[str, Any] = {"type": layout.field_type}
    if layout.field_type == "impact":
        lexicon = {
            "type": "text",
            "analyzer": IMPACT_ANALYZER,
            "index_options": "freqs",
            "norms": False,
            "similarity": IMPACT_SIMILARITY,
        }
    return {
        IMAGE_FIELD: dict(lexicon),
        CAPTION_FIELD: dict(lexicon),
        MODEL_FIELD: model_property(flavor, layout.model_id),
        ID_FIELD: dict(ID_PROPERTY),
    }


def mappings(layout: LexiconLayout, options: IndexOptions | None = None, *, flavor: Flavor) -> dict[str, Any]:
    options = options or IndexOptions()
    owned = lexicon_properties(layout, flavor)
    clash = set(options.metadata_properties) & set(owned)
    if clash:
        raise MappingError(f"metadata fields {sorted(clash)} clash with the fields lexlip-es owns")
    body: dict[str, Any] = {
        "_meta": layout.meta(),
        "properties": {**options.metadata_properties, **owned},
    }
    if layout.exclude_lexicons_from_source:
        body["_source"] = {"excludes": list(LEXICON_FIELDS)}
    return body


IMPACT_SETTINGS = {
    "analysis": {
        "analyzer": {IMPACT_ANALYZER: {"type": "custom", "tokenizer": "whitespace", "filter": ["lexlip_weight"]}},
        "filter": {"lexlip_weight": {"type": "delimited_term_freq", "delimiter": "|"}},
    },
    "similarity": {IMPACT_SIMILARITY: {"type": "scripted", "script": {"source": "return query.boost * doc.freq;"}}},
}


def index_settings(options: IndexOptions | None = None, layout: LexiconLayout | None = None) -> dict[str, Any]:
    options = options or IndexOptions()
    if options.shards < 1 or options.replicas < 0:
        raise MappingError(f"shards must be >= 1 and replicas >= 0, got {options.shards} and {options.replicas}")
    index: dict[str, Any] = {"number_of_shards": options.shards, "number_of_replicas": options.replicas}
    if options.refresh_interval is not None:
        index["refresh_interval"] = options.refresh_interval
    if layout is not None and layout.field_type == "impact":
        index.update(IMPACT_SETTINGS)
    return {"index": index}


def index_body(layout: LexiconLayout, options: IndexOptions | None = None, *, flavor: Flavor) -> dict[str, Any]:
    """The body of `PUT /<index>` on that engine."""
    return {"settings": index_settings(options, layout), "mappings": mappings(layout, options, flavor=flavor)}


def template_body(
    patterns: list[str],
    layout: LexiconLayout,
    options: IndexOptions | None = None,
    priority: int = 100,
    *,
    flavor: Flavor,
) -> dict[str, Any]:
    """The body of `PUT /_index_template/<name>`: every new index matching `patterns` gets the LexLIP layout."""
    if not patterns:
        raise MappingError("an index template needs at least one index pattern")
    return {
        "index_patterns": list(patterns),
        "priority": priority,
        "template": index_body(layout, options, flavor=flavor),
        "_meta": layout.meta(),
    }
