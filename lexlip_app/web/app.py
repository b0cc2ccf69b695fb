"""The demo page (FastAPI): search by text, click an image to search by that image, see each hit's tokens and an
image's lexicon cloud. The browser only ever talks to this server; the server talks to the engine.

    GET /                the search box, the upload form and the example queries (links to /?q=...)
    GET /?q=TEXT         images for a text, each with the tokens that matched and their contributions;
                         &mode=hybrid adds a BM25 match of its words over the captions, &mode=words is BM25 alone
    GET /?image=ID       captioned images for the image ID's lexicon (image to caption), with its lexicon cloud
    POST /search/image   an uploaded image (multipart field `image`): decoded like ingest decodes (same decoder,
                         byte limit and pixel limit), encoded, then its lexicon against the image lexicons (similar
                         images) and against the caption lexicons (the documents whose captions fit it best)
    GET /lexicon/ID     an image's lexicon cloud
    GET /images/ID      the image file, only from under `image_root` (a relative path is taken from there)
    GET /api/search?q=  the text search as JSON
    GET /healthz        {"status": "ok", "index": ...} without touching the engine

Errors are pages (or JSON) with one line: 400 for a query the library refuses, 404 for an unknown image, 503 when
the engine is unreachable or the index is missing or not made for this model. An upload is refused with 400 (no
file, an empty file, a malformed form), 413 (over the byte or pixel limit), 415 (not an image, or not a multipart
form), 422 (a corrupt image, or one that encodes to an empty lexicon) or 503 (the page has no image encoder).
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response

from lexlip_app.hits import HitView, hit_views
from lexlip_app.web import render
from lexlip_es.clients import error_detail, error_status, is_client_error, translate
from lexlip_es.encoders.images import DEFAULT_MAX_PIXELS, ImageDecodeError, load_image
from lexlip_es.errors import EmptyQueryError, EngineError, LexlipError, MappingError, QueryError
from lexlip_es.features import stored_lexicon
from lexlip_es.hybrid import Hybrid
from lexlip_es.mapping import CAPTION_FIELD, IMAGE_FIELD
from lexlip_es.search import LexSearch
from lexlip_es.settings import Settings

if TYPE_CHECKING:
    import uvicorn
    from PIL import Image as PILImage

MULTIPART_SLACK = 64 * 1024
"""Bytes a multipart body may hold beyond the image itself (boundaries, part headers, the file name)."""
THUMBNAIL_SIZE = 128


class NotFound(LookupError):
    pass


class UploadRefused(Exception):
    """An upload the page answers with `status` and this one-line message."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def decode_status(exc: ImageDecodeError) -> int:
    """The HTTP status for an upload the ingest decoder refused (its reasons are those of `load_image`)."""
    reason = exc.reason
    if reason.startswith("empty"):
        return 400
    if "exceeds the limit" in reason or reason.startswith("decompression bomb"):
        return 413
    if reason.startswith("corrupt"):
        return 422
    return 415  # not a recognised image format


def thumbnail_url(img: PILImage.Image, size: int = THUMBNAIL_SIZE) -> str:
    """A small PNG re-encoded from the decoded pixels, as a `data:` URL: the upload's own bytes are never echoed."""
    small = img.copy()
    small.thumbnail((size, size))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def failure(exc: Exception) -> tuple[str, int]:
    """The one-line message and HTTP status for an error a route turns into a response."""
    if isinstance(exc, NotFound):
        return str(exc), 404
    if isinstance(exc, QueryError):
        return str(exc), 400
    if isinstance(exc, EngineError):
        return f"the search engine could not answer: {exc}", 503
    return str(exc), 503  # a missing index, or one not made for this model: the server's setup, not the request


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
"""The Host names the page answers to unless told more (`LEXLIP_DEMO_ALLOWED_HOSTS`)."""


def create_app(
    search: LexSearch,
    image_root: str | Path,
    *,
    k: int = 12,
    title: str = "lexlip-es demo",
    examples: Sequence[str] = (),
    image_encoder: Any = None,
    max_image_bytes: int | None = None,
    allowed_hosts: Sequence[str] = LOOPBACK_NAMES,
    hybrid: Hybrid | None = None,
    mode: str = "lexicon",
) -> FastAPI:
    """The page for one LexLIP index. `search` needs a text encoder; images are served only from under
    `image_root` (resolved, so `..` and symbolic links cannot leave it). `examples` are queries the empty page
    offers as links. Uploads are encoded by `image_encoder` (default `search.image_encoder`; without one the page
    has no upload form) and refused over `max_image_bytes` (default: LEXLIP_MAX_IMAGE_BYTES, ingest's limit) or over
    the encoder's `max_pixels` (ingest's pixel limit). Requests whose Host header names none of `allowed_hosts`
    (loopback names by default) are refused with 400, so a page on another site cannot read this one through DNS
    rebinding. Text searches run in `mode` unless the request names another: "lexicon", "hybrid" (`hybrid`, default
    `Hybrid()`: the lexicon plus BM25 over the captions) or "words" (BM25 alone, for comparison)."""
    root = Path(image_root).resolve()
    modes = search_modes(hybrid or Hybrid())
    if mode not in modes:
        raise QueryError(f"mode must be one of {', '.join(modes)}, got {mode!r}")
    default_mode = mode
    examples = tuple(examples)
    encoder = image_encoder if image_encoder is not None else search.image_encoder
    max_bytes = Settings.from_env().max_image_bytes if max_image_bytes is None else max_image_bytes
    max_pixels: int = getattr(encoder, "max_pixels", DEFAULT_MAX_PIXELS)
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    hosts = {h.lower().strip("[]") for h in allowed_hosts}

    @app.middleware("http")
    async def guard(request: Any, call_next: Any) -> Any:
        """The Host check, a plain 500 page for anything a route did not turn into a response, and the security
        headers on every answer."""
        if host_name(request.headers.get("host", "")) not in hosts:
            response: Any = PlainTextResponse("this page answers only to " + ", ".join(sorted(hosts)), 400)
        else:
            try:
                response = await call_next(request)
            except Exception as exc:  # a bug: the message, never a stack trace
                response = html_page(render.error(f"the page failed: {type(exc).__name__}"), status=500)
        for name, value in render.SECURITY_HEADERS.items():
            response.headers[name] = value
        return response

    def document(doc_id: str) -> Mapping[str, Any]:
        if not doc_id.strip():
            raise NotFound("give the id of an image")
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

    def html_page(body: str, query: str = "", status: int = 200, mode: str = default_mode) -> HTMLResponse:
        page = render.page(title, body, query, upload=encoder is not None, mode=mode)
        return HTMLResponse(page, status_code=status)

    def chosen_mode(mode: str | None) -> str:
        if mode is None or mode == "":
            return default_mode
        if mode not in modes:
            raise QueryError(f"the search mode must be one of {', '.join(modes)}, got {mode[:40]!r}")
        return mode

    def text_search(q: str, mode: str) -> list[HitView]:
        return hit_views(search, search.search_text(q, k=k, hybrid=modes[mode]))

    def image_path(source: Mapping[str, Any]) -> Path:
        path = Path(str(source.get("image") or ""))
        return (path if path.is_absolute() else root / path).resolve()

    @app.get("/", response_class=HTMLResponse)
    def home(
        q: str | None = Query(None), image: str | None = Query(None), mode: str | None = Query(None)
    ) -> HTMLResponse:
        shown = mode if mode in modes else default_mode
        try:
            chosen = chosen_mode(mode)
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
                upload = ", upload an image of yours" if encoder is not None else ""
                return html_page(
                    f"<p class=meta>Type what you are looking for{upload}; click an image to search by it.</p>"
                    + render.examples(examples)
                )
            heading = f"Images for {q!r}" + ("" if chosen == "lexicon" else f" ({render.MODES[chosen]})")
            return html_page(render.results(text_search(q, chosen), heading), q, mode=chosen)
        except (NotFound, LexlipError) as exc:
            message, status = failure(exc)
            return html_page(render.error(message), q or "", status, shown)

    async def read_upload(request: Request) -> tuple[str, bytes]:
        """The uploaded file's name and bytes. The body is read to its end whatever happens (a browser shown a
        response before it has sent its body may report a reset connection instead), but never more than the byte
        limit and the multipart slack is kept: nothing is spooled to disk."""
        from starlette.datastructures import UploadFile
        from starlette.formparsers import MultiPartException, MultiPartParser

        cap = max_bytes + MULTIPART_SLACK
        body = bytearray()
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total <= cap:
                body += chunk
        if encoder is None:
            raise UploadRefused("this page has no image encoder: search by text, or click an image", 503)
        if total > cap:
            raise UploadRefused(f"the upload is {total:,} bytes, over the {max_bytes:,}-byte limit for an image", 413)
        content_type = request.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "multipart/form-data":
            raise UploadRefused("send the image as multipart/form-data (the page's upload form)", 415)

        async def replay() -> AsyncGenerator[bytes, None]:
            yield bytes(body)

        try:
            form = await MultiPartParser(request.headers, replay(), max_files=1, max_fields=8).parse()
        except MultiPartException as exc:
            raise UploadRefused(f"the upload form could not be read: {exc.message}", 400) from None
        try:
            upload = form.get(render.UPLOAD_FIELD)
            if not isinstance(upload, UploadFile) or (not upload.filename and not upload.size):
                raise UploadRefused("choose an image file to upload first", 400)
            name = upload.filename or "the upload"
            data = await upload.read()
        finally:
            await form.close()
        if not data:
            raise UploadRefused(f"the uploaded file {name!r} is empty (0 bytes)", 400)
        if len(data) > max_bytes:
            raise UploadRefused(f"{name!r} is {len(data):,} bytes, over the {max_bytes:,}-byte limit", 413)
        return name, data

    def upload_lexicon(img: PILImage.Image) -> dict[str, float]:
        """The image's lexicon as ingest writes it: the index's scale and image top-K, from the index's model."""
        layout = search.layout()
        if encoder is None:  # the page has no upload form then
            raise QueryError("this page has no image encoder: uploads are off")
        model = getattr(encoder, "model_id", None)
        if model is not None and model != layout.model_id:
            raise MappingError(
                f"{search.index!r} holds vectors of model {layout.model_id!r}; the page's image encoder is "
                f"{model!r}: queries never mix checkpoints"
            )
        vector = encoder.encode_images([img], scale=layout.scale, top_k=layout.top_k_image)[0]
        features: dict[str, float] = vector.to_features(encoder.vocab, escape=False)
        if not features:
            raise EmptyQueryError("the image encodes to an empty lexicon: no term carries weight after quantization")
        return features

    def upload_results(name: str, data: bytes) -> str:
        try:
            img = load_image(data, 0, max_pixels)
        except ImageDecodeError as exc:
            raise UploadRefused(f"{name!r} is not a usable image: {exc.reason}", decode_status(exc)) from None
        try:
            lexicon = upload_lexicon(img)
        except EmptyQueryError as exc:
            raise UploadRefused(f"{name!r}: {exc}", 422) from None
        similar = hit_views(search, search.search_vector(lexicon, k, field=IMAGE_FIELD))
        captioned = hit_views(search, search.search_vector(lexicon, k, field=CAPTION_FIELD))
        return (
            render.upload_header(name, thumbnail_url(img), img.size, len(data), lexicon)
            + render.results(similar, "Images like the uploaded one", section="similar")
            + render.results(
                captioned,
                "Captions for the uploaded image (images whose captions' lexicon fits its lexicon best)",
                section="captioned",
                captions=5,
            )
        )

    @app.post(render.UPLOAD_ACTION, response_class=HTMLResponse)
    async def search_by_upload(request: Request) -> HTMLResponse:
        try:
            name, data = await read_upload(request)
            return html_page(await run_in_threadpool(upload_results, name, data))
        except UploadRefused as exc:
            return html_page(render.error(str(exc)), status=exc.status)
        except (NotFound, LexlipError) as exc:
            message, status = failure(exc)
            return html_page(render.error(message), status=status)

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
    def api_search(q: str = Query(...), mode: str | None = Query(None)) -> JSONResponse:
        try:
            views = text_search(q, chosen_mode(mode))
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
                        "tokens": [{"token": c.token, "part": c.part, "score": c.score} for c in v.contributions],
                    }
                    for v in views
                ],
            }
        )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "index": search.index}

    return app


def search_modes(hybrid: Hybrid) -> dict[str, Hybrid]:
    """The page's text search modes as `search_text`'s `hybrid=`: the lexicon alone, `hybrid`, and its BM25 part
    alone."""
    words = replace(hybrid, weight=hybrid.weight or 1.0, lexicon_weight=0.0)
    return {"lexicon": Hybrid(weight=0.0, fields=hybrid.fields), "hybrid": hybrid, "words": words}


def page_hosts(settings: Settings) -> tuple[str, ...]:
    """Loopback names, the host the page is served on, and LEXLIP_DEMO_ALLOWED_HOSTS."""
    extra = [h.strip() for h in settings.demo_allowed_hosts.split(",") if h.strip()]
    return tuple(dict.fromkeys([*LOOPBACK_NAMES, settings.demo_host, *extra]))


def host_name(header: str) -> str:
    """The host of a Host header, without its port: `[::1]:8765` -> `::1`, `Example.org:80` -> `example.org`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def serve(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for `app` (not yet started): `.run()` blocks; `.should_exit = True` stops it."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
