"""The demo page (FastAPI): search by text, click an image to search by that image, see each hit's tokens and an
image's lexicon cloud. The browser only ever talks to this server; the server talks to the engine.

    GET /?q=TEXT        images for a text, each with the tokens that matched and their contributions
    GET /?image=ID      captioned images for the image ID's lexicon (image to caption), with its lexicon cloud
    GET /lexicon/ID     an image's lexicon cloud
    GET /images/ID      the image file, only from under `image_root` (a relative path is taken from there)
    GET /api/search?q=  the text search as JSON
    GET /healthz        {"status": "ok", "index": ...} without touching the engine

Errors are pages (or JSON) with one line: 400 for a query the library refuses, 404 for an unknown image, 503 when
the engine is unreachable or the index is missing or not made for this model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from lexlip_es.clients import error_detail, error_status, is_client_error, translate
from lexlip_es.errors import EngineError, LexlipError, QueryError
from lexlip_es.features import stored_lexicon
from lexlip_es.hits import HitView, hit_views
from lexlip_es.mapping import CAPTION_FIELD, IMAGE_FIELD
from lexlip_es.search import LexSearch
from lexlip_es.web import render

if TYPE_CHECKING:
    import uvicorn


class NotFound(LookupError):
    pass


def failure(exc: Exception) -> tuple[str, int]:
    """The one-line message and HTTP status for an error a route turns into a response."""
    if isinstance(exc, NotFound):
        return str(exc), 404
    if isinstance(exc, QueryError):
        return str(exc), 400
    if isinstance(exc, EngineError):
        return f"the search engine could not answer: {exc}", 503
    return str(exc), 503  # a missing index, or one not made for this model: the server's setup, not the request


def create_app(search: LexSearch, image_root: str | Path, *, k: int = 12, title: str = "lexlip-es demo") -> FastAPI:
    """The page for one LexLIP index. `search` needs a text encoder; images are served only from under
    `image_root` (resolved, so `..` and symbolic links cannot leave it)."""
    root = Path(image_root).resolve()
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def security_headers(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        for name, value in render.SECURITY_HEADERS.items():
            response.headers[name] = value
        return response

    def document(doc_id: str) -> Mapping[str, Any]:
        try:
            response = search.client.get(index=search.index, id=doc_id)
        except Exception as exc:
            if not is_client_error(exc):
                raise
            if error_status(exc) == 404 and error_detail(exc)[0] != "index_not_found_exception":
                raise NotFound(f"no image {doc_id!r} in {search.index!r}") from exc
            raise translate(exc, f"reading {doc_id!r}", search.index) from exc
        if not response.get("found"):
            raise NotFound(f"no image {doc_id!r} in {search.index!r}")
        return dict(response.get("_source") or {})

    def html_page(body: str, query: str = "", status: int = 200) -> HTMLResponse:
        return HTMLResponse(render.page(title, body, query), status_code=status)

    def text_search(q: str) -> list[HitView]:
        return hit_views(search, search.search_text(q, k=k))

    def image_path(source: Mapping[str, Any]) -> Path:
        path = Path(str(source.get("image") or ""))
        return (path if path.is_absolute() else root / path).resolve()

    @app.get("/", response_class=HTMLResponse)
    def home(q: str | None = Query(None), image: str | None = Query(None)) -> HTMLResponse:
        try:
            if image is not None:
                if not image.strip():
                    raise QueryError("give the id of an image to search by")
                source = document(image)
                lexicon = stored_lexicon(source.get(IMAGE_FIELD))
                if not lexicon:
                    return html_page(render.error(f"{image!r} has no stored image lexicon to search with"))
                hits = search.search_vector(lexicon, k, field=CAPTION_FIELD)
                return html_page(
                    render.image_header(image, source, lexicon)
                    + render.results(hit_views(search, hits), "Captioned images for this image")
                )
            if q is None:
                return html_page("<p class=meta>Type what you are looking for; click an image to search by it.</p>")
            return html_page(render.results(text_search(q), f"Images for {q!r}"), q)
        except (NotFound, LexlipError) as exc:
            message, status = failure(exc)
            return html_page(render.error(message), q or "", status)

    @app.get("/lexicon/{doc_id:path}", response_class=HTMLResponse)
    def lexicon(doc_id: str) -> HTMLResponse:
        try:
            source = document(doc_id)
        except (NotFound, LexlipError) as exc:
            message, status = failure(exc)
            return html_page(render.error(message), status=status)
        return html_page(render.image_header(doc_id, source, stored_lexicon(source.get(IMAGE_FIELD))))

    @app.get("/images/{doc_id:path}")
    def image(doc_id: str) -> Response:
        try:
            path = image_path(document(doc_id))
        except (NotFound, LexlipError) as exc:
            return Response(status_code=failure(exc)[1])
        if not path.is_relative_to(root) or not path.is_file():
            return Response(status_code=404)
        return FileResponse(path)

    @app.get("/api/search")
    def api_search(q: str = Query(...)) -> JSONResponse:
        try:
            views = text_search(q)
        except LexlipError as exc:
            message, status = failure(exc)
            return JSONResponse({"error": message}, status_code=status)
        return JSONResponse(
            {
                "query": q,
                "hits": [
                    {
                        "rank": v.rank,
                        "id": v.id,
                        "score": v.score,
                        "captions": v.captions,
                        "tokens": [{"token": c.token, "score": c.score} for c in v.contributions],
                    }
                    for v in views
                ],
            }
        )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "index": search.index}

    return app


def serve(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for `app` (not yet started): `.run()` blocks; `.should_exit = True` stops it."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
