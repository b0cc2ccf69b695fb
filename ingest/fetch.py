"""Safe download of image bytes from URLs, for the ingest workers.

Only http and https are fetched. Every host, the first one and each redirect target, is resolved once with
`socket.getaddrinfo`; if any of its addresses is private, loopback, link-local, reserved, multicast, unspecified or
otherwise not globally routable the URL is refused (unless `FetchPolicy.allow_private`). The connection is then made
to exactly those checked addresses, so a second DNS answer cannot point the request somewhere else, and no proxy from
the environment is used (a proxy would make the address check meaningless). urllib's redirect handling is not
installed: redirects are followed here, at most `max_redirects` of them, each target checked like the first URL.
Bodies are read to at most `max_bytes`. Every refusal is a `FetchError` whose message is one line naming the URL.

Standard library only; nothing here touches the network at import.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

from lexlip_es.errors import LexlipError

__all__ = ["DEFAULT_POLICY", "FetchError", "FetchPolicy", "fetch_image_bytes", "is_url"]

_URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_ALLOWED_SCHEMES = ("http", "https")
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_MAX_SHOWN_URL = 200
_CHUNK = 64 * 1024
_USER_AGENT = "lexlip-es-ingest/1 (+urllib)"

_Address = tuple[int, tuple[Any, ...]]  # (socket family, sockaddr) from getaddrinfo


class FetchError(LexlipError):
    """An image URL that cannot be used; the message says why (one line)."""


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one download. `timeout_s` applies to connecting and to each read; `deadline_s` to the whole
    transfer, redirects included (a source sending a byte every few seconds is cut off there, at most one read's
    timeout later)."""

    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 3
    allow_private: bool = False
    deadline_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {self.max_bytes}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, not {self.timeout_s}")
        if not self.deadline_s > 0:
            raise ValueError(f"deadline_s must be positive, not {self.deadline_s}")
        if self.max_redirects < 0:
            raise ValueError(f"max_redirects must not be negative, not {self.max_redirects}")


DEFAULT_POLICY = FetchPolicy()


def is_url(source: str) -> bool:
    """True for anything with a URL scheme (`http://`, `HTTPS://`, `ftp://`, `file://`, ...) and for `data:` URIs.

    Such sources are URLs for refusal purposes too: `fetch_image_bytes` refuses every scheme but http and https,
    so a caller must not fall back to treating `file:///etc/passwd` as a local path.
    """
    return bool(_URL_RE.match(source)) or source[:5].lower() == "data:"


def fetch_image_bytes(url: str, policy: FetchPolicy = DEFAULT_POLICY) -> bytes:
    """The body of `url`, fetched under `policy`; raises `FetchError` for anything refused or failed."""
    current = url
    redirects = 0
    deadline = time.monotonic() + policy.deadline_s
    while True:
        label = _label(url, current)
        parts, addresses = _check(current, label, policy)
        response = _open(current, parts, addresses, label, policy)
        with response:
            status = response.status
            if status in _REDIRECT_CODES:
                location = response.headers.get("Location")
                if not location:
                    raise _error(f"{label} answered HTTP {status} without a Location header")
                if redirects >= policy.max_redirects:
                    raise _error(f"{label} redirected more than {policy.max_redirects} times")
                redirects += 1
                current = urljoin(current, location.strip())
                continue
            if status >= 300:
                raise _error(f"{label} answered HTTP {status}")
            return _read_body(response, label, policy, deadline)


def _check(url: str, label: str, policy: FetchPolicy) -> tuple[SplitResult, list[_Address]]:
    """The parsed URL and the addresses to connect to, or `FetchError` if the URL or any address is refused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _error(f"{label} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _ALLOWED_SCHEMES:
        shown = scheme or "(none)"
        raise _error(f"{label}: scheme '{shown}' is not allowed (http and https only)")
    host = parts.hostname
    if not host:
        raise _error(f"{label} has no host name")
    if parts.username is not None or parts.password is not None:
        raise _error(f"{label} carries credentials, which are not allowed")
    if port is None:
        port = 443 if scheme == "https" else 80
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _error(f"{label}: host '{host}' cannot be resolved: {exc}") from None
    addresses: list[_Address] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        if not policy.allow_private:
            why = _refusal(str(sockaddr[0]))
            if why:
                raise _error(f"{label}: host '{host}' resolves to {why} address {sockaddr[0]}, which is not allowed")
        address = (int(family), tuple(sockaddr))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise _error(f"{label}: host '{host}' has no IPv4 or IPv6 address")
    return parts, addresses


def _refusal(address: str) -> str | None:
    """Why `address` must not be fetched from (an adjective), or None for a public address."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
    except ValueError:
        return "an unparsable"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a link-local"
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            ip = mapped
    checks = (
        ("an unspecified", ip.is_unspecified),
        ("a loopback", ip.is_loopback),
        ("a link-local", ip.is_link_local),
        ("a multicast", ip.is_multicast),
        ("a reserved", ip.is_reserved),
        ("a private", ip.is_private),
        ("a non-global", not ip.is_global),
    )
    for name, hit in checks:
        if hit:
            return name
    return None


def _open(
    url: str, parts: SplitResult, addresses: list[_Address], label: str, policy: FetchPolicy
) -> http.client.HTTPResponse:
    opener = urllib.request.OpenerDirector()
    if parts.scheme.lower() == "https":
        opener.add_handler(_PinnedHTTPSHandler(addresses))
    else:
        opener.add_handler(_PinnedHTTPHandler(addresses))
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, "Accept": "image/*, */*;q=0.5"})
    try:
        response = opener.open(request, timeout=policy.timeout_s)
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _timed_out(label, policy) from None
        raise _error(f"{label} unreachable: {exc.reason}") from None
    except TimeoutError:
        raise _timed_out(label, policy) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _error(f"{label} unreachable: {_describe(exc)}") from None
    if not isinstance(response, http.client.HTTPResponse):  # pragma: no cover - only our handlers are installed
        raise _error(f"{label} could not be opened")
    return response


def _read_body(response: http.client.HTTPResponse, label: str, policy: FetchPolicy, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None:
        try:
            length = int(declared.strip())
        except ValueError:
            length = -1
        if length > policy.max_bytes:
            raise _error(f"{label} is larger than {policy.max_bytes} bytes (Content-Length {length})")
    chunks: list[bytes] = []
    total = 0
    try:
        while total <= policy.max_bytes:
            chunk = response.read1(min(_CHUNK, policy.max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if time.monotonic() > deadline:
                raise _error(f"{label} took longer than {policy.deadline_s:g}s to send ({total:,} bytes so far)")
    except TimeoutError:
        raise _timed_out(label, policy) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _error(f"{label} failed while reading: {_describe(exc)}") from None
    if total > policy.max_bytes:
        raise _error(f"{label} is larger than {policy.max_bytes} bytes")
    if total == 0:
        raise _error(f"{label} returned an empty body")
    return b"".join(chunks)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to already checked addresses; the host name is used for the Host header only."""

    def __init__(self, host: str, *, addresses: list[_Address], **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self._addresses = addresses

    def connect(self) -> None:
        self.sock = _connect(self._addresses, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to already checked addresses; certificate and SNI use the host name."""

    def __init__(self, host: str, *, addresses: list[_Address], tls: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(host, context=tls, **kwargs)
        self._addresses = addresses
        self._tls = tls

    def connect(self) -> None:
        raw = _connect(self._addresses, self.port, self.timeout)
        try:
            self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise


class _PinnedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, addresses: list[_Address]) -> None:
        super().__init__()
        self._addresses = addresses

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        addresses = self._addresses

        def connection(host: str, **kwargs: Any) -> http.client.HTTPConnection:
            return _PinnedHTTPConnection(host, addresses=addresses, **kwargs)

        return self.do_open(connection, req)


class _PinnedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, addresses: list[_Address]) -> None:
        super().__init__()
        self._addresses = addresses
        self._tls = ssl.create_default_context()

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        addresses, tls = self._addresses, self._tls

        def connection(host: str, **kwargs: Any) -> http.client.HTTPConnection:
            kwargs.pop("context", None)
            kwargs.pop("check_hostname", None)
            return _PinnedHTTPSConnection(host, addresses=addresses, tls=tls, **kwargs)

        return self.do_open(connection, req)


def _connect(addresses: list[_Address], port: int, timeout: float | None) -> socket.socket:
    """A TCP socket connected to the first of `addresses` that answers, on `port`."""
    last: OSError | None = None
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect((sockaddr[0], port, *sockaddr[2:]))
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last if last is not None else OSError("no address to connect to")


def _label(original: str, current: str) -> str:
    if current == original:
        return f"image URL {_shown(original)}"
    return f"image URL {_shown(original)} (redirected to {_shown(current)})"


def _shown(url: str) -> str:
    url = "".join(ch if ch.isprintable() else "?" for ch in url)
    return url if len(url) <= _MAX_SHOWN_URL else url[:_MAX_SHOWN_URL] + "..."


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _timed_out(label: str, policy: FetchPolicy) -> FetchError:
    return _error(f"{label} timed out after {policy.timeout_s:g}s")


def _error(message: str) -> FetchError:
    return FetchError(" ".join(message.split()))
