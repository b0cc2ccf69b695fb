from __future__ import annotations

import pytest

from lexlip_es.errors import MappingError
from lexlip_es.mapping import IndexOptions, LexiconLayout, index_body, template_body


def test_index_body_is_exact() -> None:
    layout = LexiconLayout("small-0123456789ab", scale=100.0, top_k_image=128, top_k_text=48)
    options = IndexOptions(shards=2, replicas=0, metadata_properties={"caption": {"type": "text"}})
    assert index_body(layout, options, flavor="opensearch") == {
        "settings": {"index": {"number_of_shards": 2, "number_of_replicas": 0}},
        "mappings": {
            "_meta": {
                "lexlip": {
                    "layout": 1,
                    "model_id": "small-0123456789ab",
                    "scale": 100.0,
                    "top_k_image": 128,
                    "top_k_text": 48,
                    "field_type": "rank_features",
                    "exclude_lexicons_from_source": False,
                }
            },
            "properties": {
                "caption": {"type": "text"},
                "image_lexicon": {"type": "rank_features"},
                "caption_lexicon": {"type": "rank_features"},
                "lexlip_model": {"type": "constant_keyword", "value": "small-0123456789ab"},
                "lexlip_id": {"type": "keyword", "index": False},
            },
        },
    }


def test_lexicons_can_be_left_out_of_source_and_elasticsearch_gets_sparse_vector() -> None:
    layout = LexiconLayout("m", field_type="sparse_vector", exclude_lexicons_from_source=True)
    mappings = index_body(layout, flavor="elasticsearch")["mappings"]
    assert mappings["_source"] == {"excludes": ["image_lexicon", "caption_lexicon"]}
    assert mappings["properties"]["image_lexicon"] == {"type": "sparse_vector"}
    assert mappings["properties"]["lexlip_model"] == {"type": "keyword"}  # our node has no constant_keyword


def test_layout_round_trips_through_meta() -> None:
    layout = LexiconLayout("m", scale=50.0, top_k_image=None)
    assert LexiconLayout.from_meta(index_body(layout, flavor="opensearch")["mappings"]["_meta"]) == layout
    with pytest.raises(MappingError, match="not created by lexlip-es"):
        LexiconLayout.from_meta({}, "other")


def test_template_body() -> None:
    body = template_body(["images-*"], LexiconLayout("m"), IndexOptions(replicas=2), priority=7, flavor="opensearch")
    assert body["index_patterns"] == ["images-*"] and body["priority"] == 7
    assert body["template"]["settings"]["index"]["number_of_replicas"] == 2
    assert body["_meta"]["lexlip"]["model_id"] == "m"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_id": ""}, "model id"),
        ({"model_id": "m", "scale": 0}, "scale"),
        ({"model_id": "m", "top_k_text": 0}, "top_k_text"),
        ({"model_id": "m", "field_type": "dense_vector"}, "field_type"),
    ],
)
def test_bad_layouts_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        LexiconLayout(**kwargs)  # type: ignore[arg-type]


def test_metadata_cannot_take_our_fields() -> None:
    with pytest.raises(MappingError, match="clash"):
        options = IndexOptions(metadata_properties={"lexlip_model": {"type": "text"}})
        index_body(LexiconLayout("m"), options, flavor="opensearch")
