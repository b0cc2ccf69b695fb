"""The demo page's HTML: everything a document or a person supplies is rendered as text, never as markup."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from lexlip_es.backends.base import Contribution
from lexlip_es.hits import HitView, table
from lexlip_es.web import render

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
