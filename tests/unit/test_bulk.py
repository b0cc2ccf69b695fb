"""The exact NDJSON the bulk writer sends, and what it does with refusals, 429s and lost connections.

The opensearch-py client runs for real; only its connection class is replaced by one that records each request
and answers from a script (no server).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from opensearchpy import OpenSearch
from opensearchpy.connection import Connection
from opensearchpy.exceptions import ConnectionError as OSConnectionError

from lexlip_es.bulk import BulkWriter, LexiconDocument, document_source
from lexlip_es.mapping import LexiconLayout

LAYOUT = LexiconLayout("m1", top_k_image=3)
Answer = Callable[[list[dict[str, Any]]], list[dict[str, Any]] | Exception]


class ScriptedConnection(Connection):
    def __init__(self, *args: Any, answers: list[Answer] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answers = answers or []
        self.bodies: list[str] = []

    def perform_request(
        self, method: str, url: str, params: Any = None, body: Any = None, *args: Any, **kwargs: Any
    ) -> tuple[int, dict[str, str], str]:
        text = body.decode() if isinstance(body, bytes) else body
        self.bodies.append(text)
        headers = [json.loads(line) for line in text.splitlines()[::2]]
        answer = self.answers.pop(0) if self.answers else _all_ok
        result = answer(headers)
        if isinstance(result, Exception):
            raise result
        return 200, {"content-type": "application/json"}, json.dumps({"took": 1, "errors": True, "items": result})


def _all_ok(headers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"index": {"_index": h["index"]["_index"], "_id": h["index"]["_id"], "status": 201}} for h in headers]


def _client(*answers: Answer) -> tuple[OpenSearch, ScriptedConnection]:
    client = OpenSearch("http://127.0.0.1:1", connection_class=ScriptedConnection, answers=list(answers), max_retries=0)
    return client, client.transport.connection_pool.connections[0]


def _writer(client: OpenSearch, **kwargs: Any) -> BulkWriter:
    return BulkWriter(client, "images", LAYOUT, sleep=lambda s: None, **kwargs)


def test_the_ndjson_sent_is_exact() -> None:
    client, connection = _client()
    docs = [
        LexiconDocument("a", image={"red": 12, "u.s": 3}, captions={"circle": 40}, metadata={"file": "a.png"}),
        LexiconDocument("b", captions={"star": 7}),
    ]
    report = _writer(client, refresh="wait_for").write(docs)
    assert report.indexed == 2 and report.ok and report.rounds == 1
    assert connection.bodies == [
        '{"index":{"_id":"a","_index":"images"}}\n'
        '{"file":"a.png","lexlip_id":"a","lexlip_model":"m1","image_lexicon":{"red":12,"u%2Es":3},'
        '"caption_lexicon":{"circle":40}}\n'
        '{"index":{"_id":"b","_index":"images"}}\n'
        '{"lexlip_id":"b","lexlip_model":"m1","caption_lexicon":{"star":7}}\n'
    ]


def test_refused_items_are_returned_and_the_rest_indexed() -> None:
    def one_refused(headers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items = _all_ok(headers)
        items[1] = {
            "index": {"_id": "b", "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "bad value"}}
        }
        return items

    client, _ = _client(one_refused)
    report = _writer(client).write(LexiconDocument(i, image={"x": 1}) for i in "abc")
    assert report.indexed == 2
    assert [(e.id, e.status, e.reason) for e in report.errors] == [("b", 400, "mapper_parsing_exception: bad value")]


def test_429_and_lost_connections_are_retried_until_they_pass() -> None:
    def throttle_b(headers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        throttled = {"_id": "b", "status": 429, "error": {"type": "es_rejected_execution_exception"}}
        return [{"index": throttled} if i["index"]["_id"] == "b" else i for i in _all_ok(headers)]

    # streaming_bulk retries the 429 itself (3 times), then our round sends it again after a lost connection.
    client, connection = _client(
        throttle_b, throttle_b, throttle_b, throttle_b, lambda h: OSConnectionError("N/A", "refused", None)
    )
    report = _writer(client).write(LexiconDocument(i, image={"x": 1}) for i in "abc")
    assert report.ok and report.indexed == 3 and report.rounds == 3
    assert [len(b.splitlines()) // 2 for b in connection.bodies] == [3, 1, 1, 1, 1, 1]


def test_items_that_never_pass_are_reported_not_dropped() -> None:
    client, _ = _client(*[lambda h: OSConnectionError("N/A", "refused", None)] * 10)
    report = _writer(client, retry_rounds=2).write([LexiconDocument("a", image={"x": 1})])
    assert report.indexed == 0 and report.rounds == 3
    assert len(report.errors) == 1 and "still failing after 2 retry rounds" in report.errors[0].reason


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (LexiconDocument("", image={"x": 1}), "non-empty"),
        (LexiconDocument("a" * 600, image={"x": 1}), "longer than 512 bytes"),
        (LexiconDocument("a", image={"x": 0}), "positive integer"),
        (LexiconDocument("a", image={"x": 1.5}), "positive integer"),  # type: ignore[dict-item]
        (LexiconDocument("a", image={"x": 1, "y": 1, "z": 1, "w": 1}), "at most 3"),
        (LexiconDocument("a"), "neither"),
        (LexiconDocument("a", image={"x": 1}, metadata={"lexlip_model": "other"}), "reserved"),
    ],
)
def test_bad_documents_fail_alone(doc: LexiconDocument, message: str) -> None:
    client, connection = _client()
    report = _writer(client).write([doc, LexiconDocument("good", image={"x": 1})])
    assert report.indexed == 1 and len(report.errors) == 1 and message in report.errors[0].reason
    assert '"_id":"good"' in connection.bodies[0]


def test_source_keeps_metadata_untouched() -> None:
    source = document_source(LexiconDocument("a", image={"x": 2}, metadata={"tags": ["a", "b"], "n": 1}), LAYOUT)
    assert source == {"tags": ["a", "b"], "n": 1, "lexlip_id": "a", "lexlip_model": "m1", "image_lexicon": {"x": 2}}
