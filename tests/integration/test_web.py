"""The demo page against a real OpenSearch node, served by uvicorn, loaded in Debian's headless Chromium (Selenium).

The indexed lexicons are built from the query's own lexicon with falling weights, so the order of the hits is known
in advance; the first image's caption is hostile markup that must show as text.
"""

from __future__ import annotations

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

from lexlip_es.bulk import BulkWriter, LexiconDocument
from lexlip_es.demo import held_out
from lexlip_es.encoders.lexlip import LexLIPEncoder
from lexlip_es.indices import create_index
from lexlip_es.local.ports import free_port
from lexlip_es.mapping import IndexOptions, LexiconLayout
from lexlip_es.search import LexSearch
from lexlip_es.web.app import create_app, serve
from trainer.data.shapes import generate_shapes

INDEX = "lexlip-web-test"
QUERY = "a red circle at the top"
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


def test_terminal_search_prints_the_same_hits_as_the_page(site: Site) -> None:
    command = [sys.executable, "-m", "lexlip_es.cli", "search", QUERY, "--index", INDEX, "--url", site.engine]
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
        page = TestClient(create_app(LexSearch(client, index, text_encoder=encoder), tmp_path))
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
    page = TestClient(create_app(search, "."), raise_server_exceptions=False)
    for path, params in [("/", {"q": QUERY}), ("/", {"image": "x"}), ("/lexicon/x", {}), ("/api/search", {"q": "red"})]:
        response = page.get(path, params=params)
        assert response.status_code == 503, (path, response.text)
        assert "lexlip-web-no-such-index" in response.text and "Traceback" not in response.text
    assert page.get("/images/x").status_code == 503
