"""The demo page's HTML: everything a document or a person supplies is rendered as text, never as markup."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import pytest

from lexlip_app.hits import HitView, table
from lexlip_app.web import render
from lexlip_es.backends.base import Contribution

HOSTILE = '<script>window.__xss = 1</script><img src=x onerror="alert(1)">'


class Elements(HTMLParser):
    """Every start tag and its attributes, and the page's text, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    return parser


def view(doc_id: str = "doc-1", caption: str = HOSTILE, token: str = "<b>red</b>") -> HitView:
    return HitView(
        rank=1,
        id=doc_id,
        score=6300.0,
        contributions=[Contribution(token, 70.0, 60.0, 60.0), Contribution("circle", 30.0, 70.0, 70.0)],
        captions=[caption],
        image=f"/data/images/{HOSTILE}.png",
    )


def test_hostile_caption_token_and_file_name_render_as_text() -> None:
    page = render.page("demo", render.results([view()], "Images for 'x'"), query=HOSTILE)
    found = parse(page)
    tags = [t for t, _ in found.tags]
    assert "script" not in tags
    assert tags.count("img") == 1  # the hit's own thumbnail, not the caption's <img>
    assert not any(k.startswith("on") for _, attrs in found.tags for k in attrs)
    text = "".join(found.text)
    assert HOSTILE in text  # the caption, shown as the characters it holds
    assert "<b>red</b>" in text
    assert "&lt;script&gt;window.__xss" in page


def test_query_echoed_into_the_search_box_stays_inside_its_attribute() -> None:
    form = parse(render.search_form('"><script>alert(1)</script>'))
    inputs = [attrs for tag, attrs in form.tags if tag == "input"]
    assert inputs[0]["value"] == '"><script>alert(1)</script>'
    assert "script" not in [t for t, _ in form.tags]


def test_ids_are_quoted_in_urls() -> None:
    page = render.card(view(doc_id='a/../b?c=1&d="e"'))
    hrefs = [attrs.get("href") or attrs.get("src") for _, attrs in parse(page).tags if {"href", "src"} & set(attrs)]
    assert "/?image=a%2F..%2Fb%3Fc%3D1%26d%3D%22e%22" in hrefs
    assert "/images/a%2F..%2Fb%3Fc%3D1%26d%3D%22e%22" in hrefs


def test_tokens_table_shows_each_contribution() -> None:
    html = render.tokens_table(view())
    rows = re.findall(r"<tr class=token>(.*?)</tr>", html)
    assert len(rows) == 2
    assert "70 &times; 60" in rows[0] and "<td class=num>4200</td>" in rows[0]
    assert "30 &times; 70" in rows[1] and "<td class=num>2100</td>" in rows[1]


def test_cloud_sizes_grow_with_weight_and_tokens_are_text() -> None:
    html = render.cloud({"red": 100.0, "<i>x</i>": 25.0, "blue": 1.0})
    found = parse(html)
    spans = [attrs for tag, attrs in found.tags if tag == "span"]
    sizes = {
        attrs["title"].rsplit(":", 1)[0]: int(re.search(r"font-size:(\d+)px", attrs["style"] or "")[1])
        for attrs in spans
    }  # type: ignore[index, union-attr]
    assert sizes["red"] > sizes["<i>x</i>"] > sizes["blue"]
    assert "i" not in [t for t, _ in found.tags]
    assert "".join(found.text) == "<i>x</i>bluered"  # alphabetical, as text


def test_cloud_keeps_the_heaviest_tokens() -> None:
    lexicon = {f"t{i:03d}": float(i + 1) for i in range(200)}
    shown = parse(render.cloud(lexicon, limit=80)).text
    assert len(shown) == 80 and "t199" in shown and "t119" not in shown


def test_security_headers_forbid_scripts() -> None:
    assert "default-src 'none'" in render.CSP and "script-src" not in render.CSP


def test_terminal_table_lists_tokens_in_order() -> None:
    lines = table([view(token="red")], tokens=2)
    assert lines[1].split()[:3] == ["1", "6300.0", "doc-1"]
    assert lines[1].endswith("red 4200, circle 2100")


def test_examples_are_links_to_their_result_pages_and_text() -> None:
    html = render.examples(["a small blue star at the bottom left", HOSTILE, "50% & more"])
    found = parse(html)
    links = [attrs["href"] for tag, attrs in found.tags if tag == "a"]
    assert links == [
        "/?q=a%20small%20blue%20star%20at%20the%20bottom%20left",
        "/?q=" + quote(HOSTILE, safe=""),
        "/?q=50%25%20%26%20more",
    ]
    assert "script" not in [t for t, _ in found.tags] and [t for t, _ in found.tags].count("img") == 0
    assert HOSTILE in "".join(found.text) and "50% & more" in "".join(found.text)
    assert render.examples([]) == ""


def test_upload_form_posts_one_file_as_multipart_only_when_asked_for() -> None:
    with_form = parse(render.page("demo", "", upload=True))
    forms = [attrs for tag, attrs in with_form.tags if tag == "form"]
    assert {"method": "post", "action": "/search/image", "enctype": "multipart/form-data"}.items() <= forms[1].items()
    inputs = [attrs for tag, attrs in with_form.tags if tag == "input" and attrs.get("type") == "file"]
    assert len(inputs) == 1 and inputs[0]["name"] == "image" and "required" not in inputs[0]
    without = parse(render.page("demo", ""))
    assert [attrs.get("method") for tag, attrs in without.tags if tag == "form"] == ["get"]


def test_hostile_uploaded_file_name_and_captions_render_as_text() -> None:
    thumbnail = "data:image/png;base64,iVBORw0KGgo="
    body = render.upload_header(HOSTILE + ".png", thumbnail, (64, 48), 1234, {"<b>red</b>": 50.0, "star": 40.0})
    body += render.results([view()], "Images like the uploaded one", section="similar")
    body += render.results([view(doc_id="d2")], "Captions", section="captioned", captions=5)
    found = parse(render.page("demo", body, upload=True))
    tags = [t for t, _ in found.tags]
    assert "script" not in tags and "b" not in tags
    assert not any(k.startswith("on") for _, attrs in found.tags for k in attrs)
    images = [attrs for tag, attrs in found.tags if tag == "img"]
    assert images[0] == {"src": thumbnail, "alt": HOSTILE + ".png", "id": "uploaded"}
    assert len(images) == 3  # the thumbnail and one per card: never the file name's or the caption's <img>
    text = "".join(found.text)
    assert HOSTILE + ".png" in text and "64\u00d748 px" in text and "1,234 bytes" in text and "2 tokens" in text
    grids = [attrs["id"] for tag, attrs in found.tags if tag == "div" and attrs.get("class") == "grid"]
    assert grids == ["similar", "captioned"]


def test_captions_section_shows_every_caption_of_a_hit() -> None:
    many = HitView(1, "d", 1.0, [], [f"caption {i}" for i in range(6)], "d.png")
    shown = re.findall(r"<p class=caption>(.*?)</p>", render.results([many], "x", captions=5))
    assert shown == [f"caption {i}" for i in range(5)]
    assert "id=captioned-empty" in render.results([], "x", section="captioned")


def test_csp_allows_data_urls_for_images_only() -> None:
    directives = dict(d.strip().split(" ", 1) for d in render.CSP.split(";"))
    assert directives["img-src"] == "'self' data:"
    assert directives["default-src"] == "'none'"
    assert all("data:" not in v for k, v in directives.items() if k != "img-src")


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def test_each_refusal_of_the_ingest_decoder_has_its_status() -> None:
    from lexlip_app.web.app import decode_status
    from lexlip_es.encoders.images import ImageDecodeError, load_image

    cases = [
        (b"", 400, None),
        (b"this is text, not a PNG", 415, None),
        (_png((64, 64))[:60], 422, None),
        (_png((101, 100), "1"), 413, 10_000),  # over the pixel limit it is given
        (_png((15000, 15000), "1"), 413, None),  # over Pillow's own bomb limit
    ]
    for data, status, max_pixels in cases:
        with pytest.raises(ImageDecodeError) as caught:
            load_image(data, 0, max_pixels or 1 << 40)
        assert decode_status(caught.value) == status, caught.value.reason


def test_thumbnail_is_a_small_png_data_url() -> None:
    from PIL import Image

    from lexlip_app.web.app import thumbnail_url

    url = thumbnail_url(Image.new("RGB", (640, 320), (200, 10, 10)))
    assert url.startswith("data:image/png;base64,")
    small = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert small.format == "PNG" and small.size == (128, 64)


@pytest.fixture(scope="module")
def refusing_page() -> Any:
    """The real app with the tiny encoder and a client for a port nothing listens on: every upload below is refused
    before any request to an engine (a request would be a 503 and fail the test)."""
    from fastapi.testclient import TestClient
    from opensearchpy import OpenSearch

    from lexlip_app.web.app import create_app
    from lexlip_es.encoders.lexlip import LexLIPEncoder
    from lexlip_es.search import LexSearch

    encoder = LexLIPEncoder.from_config("tiny", seed=0)
    search = LexSearch(OpenSearch("http://127.0.0.1:9", timeout=1), "nowhere", text_encoder=encoder)
    app = create_app(search, ".", image_encoder=encoder, max_image_bytes=10_000, examples=["cat", "red heart"])
    return TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1")


@pytest.mark.parametrize(
    ("files", "status", "message"),
    [
        ({"image": ("", b"", "application/octet-stream")}, 400, "choose an image file to upload first"),
        ({"other": ("a.png", _png((8, 8)), "image/png")}, 400, "choose an image file to upload first"),
        ({"image": ("zero.png", b"", "image/png")}, 400, "the uploaded file &#x27;zero.png&#x27; is empty (0 bytes)"),
        ({"image": ("notes.png", b"plain text", "image/png")}, 415, "not a recognised image format"),
        ({"image": ("cut.png", _png((64, 64))[:60], "image/png")}, 422, "corrupt or truncated"),
        ({"image": ("big.png", b"\x89PNG" + bytes(10_000), "image/png")}, 413, "10,004 bytes, over the 10,000-byte"),
        ({"image": ("huge.png", bytes(200_000), "image/png")}, 413, "bytes, over the 10,000-byte limit for an image"),
        ({"image": ("wide.png", _png((8001, 8001), "1"), "image/png")}, 413, "exceeds the limit of 64,000,000"),
        ({"image": (HOSTILE, b"GIF89a", "image/gif")}, 415, "&lt;script&gt;window.__xss = 1&lt;/script&gt;"),
    ],
)
def test_uploads_are_refused_with_a_message_and_a_4xx(
    refusing_page: Any, files: dict[str, tuple[str, bytes, str]], status: int, message: str
) -> None:
    response = refusing_page.post("/search/image", files=files)
    assert response.status_code == status, response.text
    assert message in response.text and "Traceback" not in response.text
    assert "<script>" not in response.text
    assert parse(response.text).tags.count(("div", {"class": "error", "role": "alert", "id": "error"})) == 1


def test_a_request_that_is_no_multipart_form_is_refused(refusing_page: Any) -> None:
    response = refusing_page.post("/search/image", content=b"image=x", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "multipart/form-data" in response.text


def test_the_empty_page_offers_the_examples_and_the_upload_form(refusing_page: Any) -> None:
    page = refusing_page.get("/")
    assert page.status_code == 200
    found = parse(page.text)
    assert [a["href"] for t, a in found.tags if t == "a" and (a.get("href") or "").startswith("/?q=")] == [
        "/?q=cat",
        "/?q=red%20heart",
    ]
    assert any(t == "input" and a.get("type") == "file" for t, a in found.tags)


def test_host_names_are_read_without_their_ports() -> None:
    from lexlip_app.web.app import host_name, page_hosts
    from lexlip_es.settings import Settings

    assert host_name("LocalHost:8765") == "localhost"
    assert host_name("[::1]:8765") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"
    assert host_name("evil.example:80") == "evil.example"
    settings = Settings.from_env({"LEXLIP_DEMO_HOST": "0.0.0.0", "LEXLIP_DEMO_ALLOWED_HOSTS": "search.corp, x.lan"})
    assert page_hosts(settings) == ("127.0.0.1", "localhost", "::1", "0.0.0.0", "search.corp", "x.lan")
