"""The demo page against a real OpenSearch node, served by uvicorn, loaded in Debian's headless Chromium (Selenium).

The indexed lexicons are built from the query's own lexicon with falling weights, so the order of the hits is known
in advance; the first image's caption is hostile markup that must show as text.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opensearchpy import OpenSearch

from lexlip_app.demo import held_out
from lexlip_app.web.app import create_app, serve
from lexlip_es.bulk import BulkWriter, LexiconDocument
from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.indices import create_index
from lexlip_es.local.ports import free_port
from lexlip_es.mapping import IndexOptions, LexiconLayout
from lexlip_es.search import LexSearch
from lexlip_es.settings import Settings
from trainer.data.shapes import generate_shapes

INDEX = "lexlip-web-test"
QUERY = "a red circle at the top"
LOCAL = "http://127.0.0.1"  # the page answers to loopback Host names only
HOSTILE = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


class Site:
    def __init__(self, url: str, ids: list[str], top_tokens: list[str], engine: str, checkpoint: Path) -> None:
        self.url, self.ids, self.top_tokens, self.engine, self.checkpoint = url, ids, top_tokens, engine, checkpoint


@pytest.fixture(scope="module")
def site(opensearch_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("web-shapes")
    checkpoint = LexLIPEncoder.from_config("tiny", seed=0).save_pretrained(folder / "checkpoint")
    encoder = LexLIPEncoder.from_pretrained(checkpoint)
    rows = held_out(generate_shapes(folder, 0, 0, 6, seed=5))
    rows[0]["captions"] = [HOSTILE, 'a caption with & and "quotes"']
    query = encoder.encode_texts([QUERY], scale=100.0, top_k=48)[0].to_features(encoder.vocab, escape=False)
    heads = [t for t, _ in sorted(query.items(), key=lambda kv: (-kv[1], kv[0]))[:8]]
    client = OpenSearch(opensearch_url, timeout=30)
    if client.indices.exists(index=INDEX):
        client.indices.delete(index=INDEX)
    layout = LexiconLayout(encoder.model_id)
    create_index(client, INDEX, layout, IndexOptions(replicas=0))
    docs = []
    for rank, row in enumerate(rows):
        lexicon = {t: 400 - 40 * rank - 3 * j for j, t in enumerate(heads)}
        metadata = {"captions": row["captions"], "image": row["image"]}
        docs.append(LexiconDocument(row["id"], image=lexicon, captions=lexicon, metadata=metadata))
    outside = LexiconDocument("outside", image={heads[-1]: 1}, metadata={"image": "/etc/passwd"})
    report = BulkWriter(client, INDEX, layout).write([*docs, outside])
    assert not report.errors
    client.indices.refresh(index=INDEX)

    search = LexSearch(client, INDEX, text_encoder=encoder)
    port = free_port()
    server = serve(create_app(search, folder), "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the page server did not start"
        time.sleep(0.05)
    try:
        yield Site(url, [r["id"] for r in rows], heads, opensearch_url, Path(checkpoint))
    finally:
        server.should_exit = True
        thread.join(10)
        client.indices.delete(index=INDEX)


def test_text_search_page_lists_hits_in_score_order_with_tokens(site: Site) -> None:
    response = httpx.get(f"{site.url}/", params={"q": QUERY})
    assert response.status_code == 200
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = response.text
    order = [page.index(f'data-id="{i}"') for i in site.ids]
    assert order == sorted(order)
    assert "<script>window.__xss" not in page
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in page
    assert f"<td class=tok>{site.top_tokens[0]}</td>" in page or f"<td class=tok>{site.top_tokens[0]}" in page


def test_api_search_sums_contributions_to_the_score(site: Site) -> None:
    hits = httpx.get(f"{site.url}/api/search", params={"q": QUERY}).json()["hits"]
    assert [h["id"] for h in hits[: len(site.ids)]] == site.ids
    for hit in hits:
        assert sum(t["score"] for t in hit["tokens"]) == pytest.approx(hit["score"], rel=1e-6)
    assert hits[0]["captions"][0] == HOSTILE


def test_images_are_served_only_from_under_the_root(site: Site) -> None:
    image = httpx.get(f"{site.url}/images/{site.ids[0]}")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert httpx.get(f"{site.url}/images/outside").status_code == 404
    assert httpx.get(f"{site.url}/images/no-such-image").status_code == 404


def test_bad_input_gets_a_message_not_a_stack_trace(site: Site) -> None:
    for params, status, message in [
        ({"q": "   "}, 400, "the query text is empty"),
        ({"q": "x" * 5000}, 400, "the limit is"),
        ({"q": "red\x00circle"}, 400, "control character"),
        ({"image": "no-such-image"}, 404, "no image &#x27;no-such-image&#x27;"),
    ]:
        response = httpx.get(f"{site.url}/", params=params)
        assert response.status_code == status, params
        assert message in response.text and "Traceback" not in response.text
    assert httpx.get(f"{site.url}/lexicon/no-such-image").status_code == 404
    for path in ("/lexicon/", "/lexicon/%20", "/images/"):  # an empty id: a message and the headers, not a 500
        response = httpx.get(f"{site.url}{path}")
        assert response.status_code == 404, path
        assert response.headers["X-Content-Type-Options"] == "nosniff" and "Content-Security-Policy" in response.headers


def test_a_page_on_another_site_cannot_read_the_loopback_page_through_dns_rebinding(site: Site) -> None:
    port = site.url.rsplit(":", 1)[1]
    for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.nip.example:{port}"):
        response = httpx.get(f"{site.url}/api/search", params={"q": QUERY}, headers={"Host": host})
        assert response.status_code == 400 and "answers only to" in response.text, host
        assert "hits" not in response.text and response.headers["Referrer-Policy"] == "no-referrer"
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert httpx.get(f"{site.url}/api/search", params={"q": QUERY}, headers={"Host": host}).status_code == 200


def test_terminal_search_prints_the_same_hits_as_the_page(site: Site) -> None:
    command = [sys.executable, "-m", "lexlip_app.cli", "search", QUERY, "--index", INDEX, "--url", site.engine]
    result = subprocess.run(
        [*command, "--checkpoint", str(site.checkpoint), "-k", "12", "--tokens", "3"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["rank", "score", "id"]
    printed = [line.split()[2] for line in lines[1:]]
    page = httpx.get(f"{site.url}/api/search", params={"q": QUERY}).json()["hits"]
    assert printed == [h["id"] for h in page]
    assert lines[1].split()[3] == site.top_tokens[0]


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("Chromium and chromedriver are needed for the browser test: `make deps` installs them (apt-get)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    flags = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900")
    for flag in flags:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def test_browser_runs_a_query_sees_images_tokens_and_searches_by_image(site: Site, tmp_path: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser()
    try:
        browser.get(f"{site.url}/")
        box = browser.find_element(By.ID, "q")
        box.send_keys(QUERY)
        browser.find_element(By.ID, "go").click()
        WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "results")))
        cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")
        assert [c.get_attribute("data-id") for c in cards[: len(site.ids)]] == site.ids
        images = [c.find_element(By.TAG_NAME, "img") for c in cards[: len(site.ids)]]  # not the one outside the root
        WebDriverWait(browser, 20).until(
            lambda b: all(b.execute_script("return arguments[0].complete", i) for i in images)
        )
        widths = [browser.execute_script("return arguments[0].naturalWidth", i) for i in images]
        assert widths and all(w > 0 for w in widths), widths
        top = cards[0]
        tokens = [t.text for t in top.find_elements(By.CSS_SELECTOR, "tr.token td.tok")]
        assert tokens[0] == site.top_tokens[0] and len(tokens) == len(site.top_tokens)
        assert top.find_elements(By.CSS_SELECTOR, "p.caption")[0].text == HOSTILE
        assert browser.execute_script("return window.__xss === undefined")
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018
        browser.save_screenshot(str(tmp_path / "results.png"))

        top.find_element(By.CSS_SELECTOR, "a[title='search by this image']").click()
        WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "query-image")))
        cloud = browser.find_elements(By.CSS_SELECTOR, "#cloud span")
        assert {s.text for s in cloud} == set(site.top_tokens)
        first = browser.find_elements(By.CSS_SELECTOR, "#results .card")[0]
        assert first.get_attribute("data-id") == site.ids[0]
        assert browser.execute_script("return window.__xss === undefined")
    finally:
        browser.quit()


def test_search_by_image_on_an_impact_index_with_dotted_tokens_and_slashed_ids(
    opensearch_url: str, tmp_path: Path
) -> None:
    """Stored lexicons come back from `_source` escaped (rank_features) or as `token|weight` text (impact): searching
    by an image must use its real tokens, and ids holding `/` must still reach their image and cloud."""
    from fastapi.testclient import TestClient

    encoder = LexLIPEncoder.from_config("tiny", seed=0)
    rows = held_out(generate_shapes(tmp_path, 0, 0, 2, seed=6))
    client = OpenSearch(opensearch_url, timeout=30)
    index = "lexlip-web-impact"
    if client.indices.exists(index=index):
        client.indices.delete(index=index)
    layout = LexiconLayout(encoder.model_id, field_type="impact")
    create_index(client, index, layout, IndexOptions(replicas=0))
    lexicon = {"u.s": 600, "50%": 200, "a|b": 90}
    docs = [
        LexiconDocument("set/one", image=lexicon, captions=lexicon, metadata={"image": rows[0]["image"]}),
        LexiconDocument("set/two", image={"u.s": 5}, captions={"u.s": 5}, metadata={"image": rows[1]["image"]}),
    ]
    assert not BulkWriter(client, index, layout).write(docs).errors
    client.indices.refresh(index=index)
    try:
        page = TestClient(create_app(LexSearch(client, index, text_encoder=encoder), tmp_path), base_url=LOCAL)
        found = page.get("/", params={"image": "set/one"})
        assert found.status_code == 200, found.text
        assert [card.split('"')[0] for card in found.text.split('data-id="')[1:]] == ["set/one", "set/two"]
        cloud = found.text[found.text.index("id=cloud") :]
        for token in ("u.s", "50%", "a|b"):
            assert f">{token}<" in cloud, token
        assert "u%2Es" not in found.text and "%7C" not in cloud
        assert page.get("/lexicon/set%2Fone").status_code == 200
        image = page.get("/images/set%2Ftwo")
        assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
        assert page.get("/", params={"image": ""}).status_code == 400
    finally:
        client.indices.delete(index=index)


def test_a_missing_index_is_a_503_with_its_name_not_a_stack_trace(opensearch_url: str) -> None:
    from fastapi.testclient import TestClient

    encoder = LexLIPEncoder.from_config("tiny", seed=0)
    search = LexSearch(OpenSearch(opensearch_url, timeout=30), "lexlip-web-no-such-index", text_encoder=encoder)
    page = TestClient(create_app(search, "."), raise_server_exceptions=False, base_url=LOCAL)
    for path, params in [("/", {"q": QUERY}), ("/", {"image": "x"}), ("/lexicon/x", {}), ("/api/search", {"q": "red"})]:
        response = page.get(path, params=params)
        assert response.status_code == 503, (path, response.text)
        assert "lexlip-web-no-such-index" in response.text and "Traceback" not in response.text
    assert page.get("/images/x").status_code == 503


UPLOAD_INDEX = "lexlip-web-upload"
EXAMPLES = ("a small blue star at the bottom left", "a large red circle in the middle")


class UploadSite:
    def __init__(self, url: str, rows: list[dict[str, Any]], files: dict[str, Path], max_bytes: int) -> None:
        self.url, self.rows, self.files, self.max_bytes = url, rows, files, max_bytes


def _noise_png(path: Path, nbytes: int) -> Path:
    """A real PNG of random pixels (incompressible), at least `nbytes` long."""
    import numpy as np
    from PIL import Image

    side = math.isqrt(nbytes // 3) + 64
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG", compress_level=1)
    assert path.stat().st_size > nbytes
    return path


@pytest.fixture(scope="module")
def upload_site(
    opensearch_url: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UploadSite]:
    """The shapes images through the ingest pipeline (decode, encode, quantize, bulk) into an index of their own,
    and a page that encodes uploads with the same encoder under the same limits (LEXLIP_MAX_IMAGE_BYTES, the
    encoder's pixel limit)."""
    from PIL import Image

    from ingest.pipeline import process_batch

    folder = tmp_path_factory.mktemp("web-upload")
    encoder = LexLIPEncoder.from_config("tiny", seed=0)
    rows = held_out(generate_shapes(folder, 0, 0, 8, seed=7))
    rows[1]["captions"] = [HOSTILE, *rows[1]["captions"]]
    client = OpenSearch(opensearch_url, timeout=30)
    if client.indices.exists(index=UPLOAD_INDEX):
        client.indices.delete(index=UPLOAD_INDEX)
    layout = LexiconLayout(encoder.model_id)
    create_index(client, UPLOAD_INDEX, layout, IndexOptions(replicas=0))
    writer = BulkWriter(client, UPLOAD_INDEX, layout)
    result = process_batch(rows, encoder, layout, writer, lambda url: b"", settings.max_image_bytes)
    assert not result.failed and len(result.indexed) == len(rows)
    client.indices.refresh(index=UPLOAD_INDEX)

    files = folder / "uploads"
    files.mkdir()
    (files / "notes.png").write_text("these are notes, not a picture\n")
    (files / "empty.png").write_bytes(b"")
    side = math.isqrt(encoder.max_pixels) + 1
    Image.new("1", (side, side)).save(files / "wide.png", format="PNG")  # a few KB, over the pixel limit
    _noise_png(files / "heavy.png", settings.max_image_bytes + 256 * 1024)
    named = {p.stem: p for p in files.iterdir()}

    search = LexSearch(client, UPLOAD_INDEX, text_encoder=encoder, image_encoder=encoder)
    port = free_port()
    server = serve(create_app(search, folder, examples=EXAMPLES), "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the page server did not start"
        time.sleep(0.05)
    try:
        yield UploadSite(f"http://127.0.0.1:{port}", rows, named, settings.max_image_bytes)
    finally:
        server.should_exit = True
        thread.join(10)
        client.indices.delete(index=UPLOAD_INDEX)


def _navigation_status(browser: Any) -> int:
    """The HTTP status of the page the browser is showing, as the browser received it."""
    return int(browser.execute_script("return performance.getEntriesByType('navigation')[0].responseStatus"))


def _replaced(old: Any) -> Any:
    """A wait condition: the page that held `old` is gone. Selenium's `staleness_of`, plus Chromium's other answer
    for a node of a page being replaced ("Node with given id does not belong to the document", an unknown error
    instead of a stale reference), which otherwise fails the wait half-way through a navigation."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    def gone(_browser: Any) -> bool:
        try:
            old.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            if "does not belong to the document" in str(error):
                return True
            raise
        return False

    return gone


def _upload(browser: Any, site: UploadSite, path: Path | None) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{site.url}/")
    if path is not None:
        browser.find_element(By.ID, "upload").send_keys(str(path))
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, "upload-go").click()
    WebDriverWait(browser, 60).until(_replaced(old))
    WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.ID, "query-image") or b.find_elements(By.ID, "error"))


def test_browser_uploads_a_png_and_sees_similar_images_and_captions_explained_in_words(
    upload_site: UploadSite, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    site = upload_site
    browser = _browser()
    try:
        browser.get(f"{site.url}/")
        links = browser.find_elements(By.CSS_SELECTOR, "#examples a")
        assert [a.text for a in links] == list(EXAMPLES)
        links[0].click()
        assert browser.find_element(By.ID, "q").get_attribute("value") == EXAMPLES[0]
        assert _navigation_status(browser) == 200

        _upload(browser, site, Path(site.rows[1]["image"]))
        assert _navigation_status(browser) == 200
        thumbnail = browser.find_element(By.ID, "uploaded")
        assert thumbnail.get_attribute("src").startswith("data:image/png;base64,")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", thumbnail) > 0
        cloud = {s.text for s in browser.find_elements(By.CSS_SELECTOR, "#cloud span")}
        assert cloud

        similar = browser.find_elements(By.CSS_SELECTOR, "#similar .card")
        assert site.rows[1]["id"] in [c.get_attribute("data-id") for c in similar]
        for card in similar:
            words = [t.text for t in card.find_elements(By.CSS_SELECTOR, "tr.token td.tok")]
            assert words and all(w.strip() for w in words), card.get_attribute("data-id")
        own = next(c for c in similar if c.get_attribute("data-id") == site.rows[1]["id"])
        assert own.find_elements(By.CSS_SELECTOR, "p.caption")[0].text == HOSTILE

        captioned = browser.find_elements(By.CSS_SELECTOR, "#captioned .card")
        assert captioned
        for card in captioned:
            assert card.find_elements(By.CSS_SELECTOR, "p.caption")
            assert card.find_elements(By.CSS_SELECTOR, "tr.token td.tok")
        assert browser.execute_script("return window.__xss === undefined")
        browser.save_screenshot(str(tmp_path / "upload.png"))
    finally:
        browser.quit()

    with open(site.rows[1]["image"], "rb") as f:
        response = httpx.post(f"{site.url}/search/image", files={"image": ("shape.png", f, "image/png")}, timeout=60)
    assert response.status_code == 200
    assert "<script>window.__xss" not in response.text and "&lt;script&gt;window.__xss" in response.text


BAD_UPLOADS = [
    ("notes", 415, "not a recognised image format"),
    ("heavy", 413, "-byte limit for an image"),
    ("wide", 413, "exceeds the limit of"),
    ("empty", 400, "is empty (0 bytes)"),
    (None, 400, "choose an image file to upload first"),
]


def test_browser_bad_uploads_get_a_message_and_a_4xx(upload_site: UploadSite) -> None:
    from selenium.webdriver.common.by import By

    site = upload_site
    browser = _browser()
    try:
        for name, status, message in BAD_UPLOADS:
            _upload(browser, site, site.files[name] if name else None)
            assert message in browser.find_element(By.ID, "error").text, name
            assert _navigation_status(browser) == status, name
            assert "Traceback" not in browser.page_source
            assert browser.find_elements(By.ID, "upload"), "the page still offers the upload form"
    finally:
        browser.quit()


def test_bad_uploads_over_plain_http(upload_site: UploadSite) -> None:
    site = upload_site
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"image": ("", b"", "application/octet-stream")}, 400, "choose an image file"),
        ({"image": ("empty.png", b"", "image/png")}, 400, "is empty (0 bytes)"),
        ({"image": ("notes.png", b"not a picture", "image/png")}, 415, "not a recognised image format"),
        ({"image": ("one-over.png", b"\x89PNG" + bytes(site.max_bytes - 3), "image/png")}, 413, "-byte limit"),
    ]
    for name in ("heavy", "wide"):
        cases.append(({"image": (f"{name}.png", site.files[name].read_bytes(), "image/png")}, 413, "limit"))
    for files, status, message in cases:
        response = httpx.post(f"{site.url}/search/image", files=files, timeout=120)
        assert response.status_code == status, (files["image"][0], response.text[-300:])
        assert message in response.text and "Traceback" not in response.text
