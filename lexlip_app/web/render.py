"""HTML for the demo page, rendered on the server with no JavaScript at all.

Every caption, file name, id and token passes through `text()` (HTML-escaped, quotes included) and every id or
example query in a URL through `quote()`: a caption holding `<script>` is shown as text. The page's
Content-Security-Policy forbids scripts as a second line of defence; images may come from the page's own server or be
`data:` URLs (the re-encoded thumbnail of an uploaded image, which never leaves the page's server otherwise).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from lexlip_app.hits import HitView
from lexlip_es.backends.base import Contribution

CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f6f4;color:#222}
header{background:#223;color:#fff;padding:12px 20px}header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:16px 20px}form{display:flex;gap:8px;margin:8px 0 16px}
input[type=text]{flex:1;max-width:560px;padding:8px;font-size:16px}button{padding:8px 16px;font-size:16px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:14px}
.card{background:#fff;border-radius:6px;padding:10px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.card img,.query-image img{width:128px;height:128px;image-rendering:pixelated;border:1px solid #ddd}
.query-image img{object-fit:contain}
form.upload{align-items:center;font-size:14px;margin-top:-8px}form.upload button{font-size:14px;padding:6px 12px}
ul.examples{padding-left:18px}ul.examples li{margin:3px 0}
.meta{font-size:12px;color:#555;margin:4px 0}.caption{font-size:13px;margin:2px 0}
table.tokens{font-size:12px;border-collapse:collapse;margin-top:4px}
table.tokens td{padding:1px 6px 1px 0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.error{background:#fdd;border:1px solid #c66;padding:10px;border-radius:4px;max-width:720px}
.cloud{background:#fff;padding:14px;border-radius:6px;max-width:720px;line-height:1.5}
.cloud span{display:inline-block;margin:0 8px 0 0}
.query-image{display:flex;gap:16px;align-items:flex-start;margin-bottom:16px}
"""


def text(value: object) -> str:
    """Any value as HTML text: markup characters and quotes escaped."""
    return html.escape(str(value), quote=True)


def url_id(doc_id: str) -> str:
    return quote(doc_id, safe="")


def page(title: str, body: str, query: str = "", *, upload: bool = False, mode: str = "lexicon") -> str:
    """The whole document: header, the text search box (holding `query`, with the search `mode` chosen), the image
    upload form when the page can encode images, then `body`."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{text(title)}</title><style>{STYLE}</style></head><body>"
        '<header><a href="/">lexlip-es</a> &middot; image search by learned sparse lexicons</header><main>'
        f"{search_form(query, mode)}{upload_form() if upload else ''}{body}</main></body></html>"
    )


MODES = {
    "lexicon": "lexicon",
    "hybrid": "lexicon + words (hybrid)",
    "words": "words only (BM25)",
}
"""The page's text search modes: the learned lexicon alone, the lexicon plus a BM25 match of the query's words over
the documents' captions, or BM25 alone (for comparison)."""


def search_form(query: str = "", mode: str = "lexicon") -> str:
    options = "".join(
        f'<option value="{key}"{" selected" if key == mode else ""}>{text(label)}</option>'
        for key, label in MODES.items()
    )
    return (
        '<form method=get action="/" role=search>'
        f'<input type=text name=q id=q value="{text(query)}" placeholder="a red circle at the top" autofocus>'
        f'<select name=mode id=mode aria-label="search mode">{options}</select>'
        "<button type=submit id=go>Search</button></form>"
    )


def query_link(query: str, mode: str = "lexicon") -> str:
    link = "/?q=" + quote(query, safe="")
    return link if mode == "lexicon" else f"{link}&mode={quote(mode, safe='')}"


UPLOAD_ACTION = "/search/image"
UPLOAD_FIELD = "image"


def upload_form() -> str:
    """A multipart form posting one file to UPLOAD_ACTION. No `required`: an empty submission reaches the server,
    which answers it with a message of its own."""
    return (
        f'<form method=post action="{UPLOAD_ACTION}" enctype="multipart/form-data" class=upload id=upload-form>'
        f'<label for=upload>or search by an image of yours:</label> <input type=file name="{UPLOAD_FIELD}" id=upload '
        'accept="image/*"><button type=submit id=upload-go>Search by image</button></form>'
    )


def examples(queries: Sequence[str]) -> str:
    """Example queries as links to their result pages (nothing when there are none)."""
    if not queries:
        return ""
    items = "".join(f'<li><a href="{text(query_link(q))}">{text(q)}</a></li>' for q in queries)
    return f"<p class=meta>Try:</p><ul class=examples id=examples>{items}</ul>"


def error(message: str) -> str:
    return f"<div class=error role=alert id=error>{text(message)}</div>"


def _token_cell(c: Contribution) -> str:
    if c.part == "lexicon":
        return f"<td class=tok>{text(c.token)}</td>"
    field = text(c.part)
    return f'<td class="tok word" title="a word of the query in {field} (BM25)">{text(c.token)} &middot; {field}</td>'


def tokens_table(view: HitView, limit: int = 8) -> str:
    """The hit's score, token by token: lexicon tokens as query weight x document weight, and in a hybrid search
    the query's words matched in a text field as the BM25 clause's boost x the word's BM25 score."""
    rows = "".join(
        f"<tr class=token>{_token_cell(c)}"
        f"<td class=num>{c.query_weight:g} &times; {c.engine_weight:g}</td>"
        f"<td class=num>{c.score:g}</td></tr>"
        for c in view.contributions[:limit]
    )
    more = len(view.contributions) - limit
    tail = f"<tr><td colspan=3>and {more} more</td></tr>" if more > 0 else ""
    return f"<table class=tokens><tr><th>token</th><th>q &times; d</th><th>score</th></tr>{rows}{tail}</table>"


def card(view: HitView, captions: int = 2) -> str:
    doc = url_id(view.id)
    shown = "".join(f"<p class=caption>{text(c)}</p>" for c in view.captions[:captions])
    name = view.image.rsplit("/", 1)[-1]
    return (
        f'<div class=card data-id="{text(view.id)}">'
        f'<a href="/?image={doc}" title="search by this image">'
        f'<img src="/images/{doc}" alt="{text(name or view.id)}" loading=lazy></a>'
        f"<div class=meta>#{view.rank} &middot; <span class=doc-id>{text(view.id)}</span> &middot; "
        f'score {view.score:g} &middot; <a href="/lexicon/{doc}">lexicon</a></div>'
        f"<div class=meta>{text(name)}</div>{shown}{tokens_table(view)}</div>"
    )


def results(views: Sequence[HitView], heading: str, section: str = "results", captions: int = 2) -> str:
    """A heading and a grid of cards; `section` is the grid's id (two grids on one page need two ids)."""
    if not views:
        empty = "empty" if section == "results" else f"{section}-empty"
        return f"<h2>{text(heading)}</h2><p id={text(empty)} class=empty>No matching images.</p>"
    cards = "".join(card(v, captions) for v in views)
    return f"<h2>{text(heading)}</h2><div class=grid id={text(section)}>{cards}</div>"


def cloud(lexicon: Mapping[str, float], limit: int = 80) -> str:
    """A lexicon cloud (the paper's Figure 5): the heaviest tokens, font size and shade growing with the weight,
    in alphabetical order so that neighbours do not depend on the weights."""
    top = sorted(lexicon.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    if not top:
        return "<div class=cloud id=cloud>(empty lexicon)</div>"
    heaviest = top[0][1]
    spans = []
    for token, weight in sorted(top):
        share = math.sqrt(weight / heaviest) if heaviest > 0 else 0.0
        size = 11 + round(31 * share)
        shade = round(170 * (1 - share))
        spans.append(
            f'<span style="font-size:{size}px;color:rgb({shade},{shade},{min(255, shade + 60)})" '
            f'title="{text(token)}: {weight:g}">{text(token)}</span>'
        )
    return f"<div class=cloud id=cloud>{''.join(spans)}</div>"


def image_header(doc_id: str, source: Mapping[str, object], lexicon: Mapping[str, float]) -> str:
    captions = source.get("captions")
    listed = [str(c) for c in captions] if isinstance(captions, list) else []
    shown = "".join(f"<p class=caption>{text(c)}</p>" for c in listed[:5])
    return (
        "<div class=query-image id=query-image>"
        f'<img src="/images/{url_id(doc_id)}" alt="{text(doc_id)}">'
        f"<div><div class=meta>query image <span class=doc-id>{text(doc_id)}</span> &middot; "
        f"{len(lexicon)} tokens</div>{shown}{cloud(lexicon)}</div></div>"
    )


def upload_header(
    name: str, thumbnail_url: str, size: tuple[int, int], nbytes: int, lexicon: Mapping[str, float]
) -> str:
    """The uploaded image (its re-encoded thumbnail as a `data:` URL), what it was, and its lexicon cloud."""
    width, height = size
    return (
        "<div class=query-image id=query-image>"
        f'<img src="{text(thumbnail_url)}" alt="{text(name)}" id=uploaded>'
        f"<div><div class=meta>uploaded image <span class=file-name>{text(name)}</span> &middot; "
        f"{width}&times;{height} px &middot; {nbytes:,} bytes &middot; {len(lexicon)} tokens</div>"
        f"{cloud(lexicon)}</div></div>"
    )
