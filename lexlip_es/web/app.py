"""The demo page (FastAPI): search by text, click an image to search by that image, see each hit's tokens and an
image's lexicon cloud. The browser only ever talks to this server; the server talks to the engine.

    GET /?q=TEXT        images for a text, each with the tokens that matched and their contributions
    GET /?image=ID      captioned images for the image ID's lexicon (image to caption), with its lexicon cloud
    GET /lexicon/ID     an image's lexicon cloud
    GET /images/ID      the image file, only from under `image_root`
    GET /api/search?q=  the text search as JSON
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from lexlip_es.clients import error_detail, error_status, is_client_error, translate
from lexlip_es.errors import EngineError, IndexNotFoundError, QueryError
from lexlip_es.hits import HitView, hit_views
from lexlip_es.mapping import CAPTION_FIELD, IMAGE_FIELD
from lexlip_es.search import LexSearch
from lexlip_es.web import render


class NotFound(LookupError):
    pass


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

    @app.get("/", response_class=HTMLResponse)
    def home(q: str | None = Query(None), image: str | None = Query(None)) -> HTMLResponse:
        try:
            if image is not None:
                source = document(image)
                lexicon = source.get(IMAGE_FIELD) or {}
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
        except NotFound as exc:
            return html_page(render.error(str(exc)), q or "", 404)
        except QueryError as exc:
            return html_page(render.error(str(exc)), q or "", 400)
        except IndexNotFoundError as exc:
            return html_page(render.error(str(exc)), q or "", 503)
        except EngineError as exc:
            return html_page(render.error(f"the search engine did not answer: {exc}"), q or "", 503)

    @app.get("/lexicon/{doc_id}", response_class=HTMLResponse)
    def lexicon(doc_id: str) -> HTMLResponse:
        try:
            source = document(doc_id)
        except NotFound as exc:
            return html_page(render.error(str(exc)), status=404)
        except EngineError as exc:
            return html_page(render.error(f"the search engine did not answer: {exc}"), status=503)
        return html_page(render.image_header(doc_id, source, source.get(IMAGE_FIELD) or {}))

    @app.get("/images/{doc_id}")
    def image(doc_id: str) -> Response:
        try:
            path = Path(str(document(doc_id).get("image") or "")).resolve()
        except NotFound:
            return Response(status_code=404)
        except EngineError:
            return Response(status_code=503)
        if not path.is_relative_to(root) or not path.is_file():
            return Response(status_code=404)
        return FileResponse(path)

    @app.get("/api/search")
    def api_search(q: str = Query(...)) -> JSONResponse:
        try:
            views = text_search(q)
        except QueryError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except EngineError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
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


def serve(app: FastAPI, host: str, port: int) -> Any:
    """A uvicorn server for `app` (not yet started): `.run()` blocks; `.should_exit = True` stops it."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
