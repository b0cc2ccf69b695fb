"""The caller's own opensearch-py or elasticsearch client: which engine it speaks to, and its errors made ours.

Nothing here builds a client: hosts, auth and TLS stay the caller's. Both libraries' sync and async clients work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from lexlip_es.errors import EngineError, EngineUnavailableError, IndexNotFoundError, LexlipError, QueryError
from lexlip_es.mapping import Flavor

_UNREACHABLE = {"ConnectionError", "ConnectionTimeout", "SSLError", "TimeoutError"}


def flavor_of(client: Any) -> Flavor:
    """'opensearch' for opensearch-py clients, 'elasticsearch' for the elasticsearch client (sync or async)."""
    module = type(client).__module__
    if module.startswith("opensearchpy"):
        return "opensearch"
    if module.startswith("elasticsearch"):
        return "elasticsearch"
    raise TypeError(f"expected an opensearch-py or elasticsearch client, got {type(client).__module__}.{type(client)}")


def error_status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "meta", None), "status", None)
    return status if isinstance(status, int) else None


def error_detail(exc: BaseException) -> tuple[str, str]:
    """(error type, reason) from the engine's JSON error body, as far as the exception carries one."""
    body = getattr(exc, "info", None)
    if not isinstance(body, Mapping):
        body = getattr(exc, "body", None)
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        root = (error.get("root_cause") or [error])[0]
        return str(root.get("type", error.get("type", ""))), str(root.get("reason", error.get("reason", "")))
    if isinstance(error, str):
        return error, str(exc)
    return "", str(exc)


def translate(exc: Exception, what: str, index: str | None = None) -> LexlipError:
    """Map a client exception to ours: unreachable cluster, unknown index, refused query, other engine errors."""
    if isinstance(exc, LexlipError):
        return exc
    name = type(exc).__name__
    status = error_status(exc)
    if name in _UNREACHABLE or (status is None and isinstance(exc, OSError)):
        return EngineUnavailableError(f"{what}: the search cluster cannot be reached ({name}: {_short(exc)})")
    kind, reason = error_detail(exc)
    if status in (502, 503, 504):
        return EngineUnavailableError(f"{what}: the search cluster is not ready (HTTP {status}: {kind} {reason})")
    if status == 404 and (kind == "index_not_found_exception" or name == "NotFoundError"):
        target = f"index {index!r}" if index else "the index"
        return IndexNotFoundError(f"{what}: {target} does not exist ({reason or kind})")
    if status == 400:
        return QueryError(f"{what}: the engine refused the request: {kind}: {reason}")
    return EngineError(f"{what}: the engine answered {status if status is not None else name}: {kind} {reason}".strip())


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_client_error(exc: BaseException) -> bool:
    """Raised by a search client or its HTTP layer (not a bug of ours)."""
    return type(exc).__module__.split(".")[0] in (
        "opensearchpy",
        "elasticsearch",
        "elastic_transport",
        "urllib3",
        "aiohttp",
    )


@contextlib.contextmanager
def engine_errors(what: str, index: str | None = None) -> Iterator[None]:
    try:
        yield
    except LexlipError:
        raise
    except Exception as exc:
        if not is_client_error(exc):
            raise
        raise translate(exc, what, index) from exc


def max_clause_count(client: Any, default: int = 1024) -> int:
    """`indices.query.bool.max_clause_count` as the cluster reports it (explicit settings first, then defaults)."""
    with engine_errors("reading the cluster settings"):
        settings = client.cluster.get_settings(include_defaults=True, flat_settings=True)
    return clause_limit_from(settings, default)


def clause_limit_from(settings: Mapping[str, Any], default: int = 1024) -> int:
    key = "indices.query.bool.max_clause_count"
    for scope in ("transient", "persistent", "defaults"):
        value = (settings.get(scope) or {}).get(key)
        if value is not None:
            return int(value)
    return default


def mget_request(client: Any, index: str, ids: list[str], fields: list[str] | None = None) -> dict[str, Any]:
    """Keyword arguments for `client.mget` of these ids (only `fields` of `_source` when given), in the client's
    dialect: opensearch-py takes a body, the elasticsearch client the ids."""
    if flavor_of(client) == "opensearch":
        request: dict[str, Any] = {"index": index, "body": {"ids": ids}}
        return request | ({"_source_includes": fields} if fields is not None else {})
    return {"index": index, "ids": ids} | ({"source_includes": fields} if fields is not None else {})
