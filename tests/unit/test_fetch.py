from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import ingest.fetch as fetch_module
from ingest.fetch import FetchError, FetchPolicy, fetch_image_bytes, is_url
from lexlip_es.errors import LexlipError

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
SMALL = 1000  # max_bytes for the size tests; /big* serve more than this
BIG = b"x" * 5000
SLOW_S = 1.0
SHORT_TIMEOUT_S = 0.2
LOCAL = FetchPolicy(allow_private=True, timeout_s=2.0)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits[self.path] += 1
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self._send(302, headers={"Location": location})

    def _route(self) -> None:
        path = self.path
        if path == "/ok.png":
            self._send(200, PNG, {"Content-Type": "image/png"})
        elif path == "/big":
            self._send(200, BIG)
        elif path == "/big-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(BIG), 700):
                piece = BIG[start : start + 700]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/big-nolength":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(BIG)
            self.close_connection = True
        elif path == "/empty":
            self._send(200)
        elif path == "/missing":
            self._send(404, b"not here")
        elif path == "/slow":
            time.sleep(SLOW_S)
            self._send(200, PNG)
        elif path == "/trickle":  # one byte every 0.1 s: never a read timeout, only the whole-transfer deadline
            self.send_response(200)
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            for byte in PNG:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.1)
        elif path == "/redirect-ok":
            self._redirect("/ok.png")
        elif path == "/redirect-absolute":
            self._redirect(f"http://127.0.0.1:{self.server.server_port}/ok.png")
        elif path == "/redirect-chain":
            self._redirect("/redirect-ok")
        elif path == "/redirect-file":
            self._redirect("file:///etc/passwd")
        elif path == "/redirect-ftp":
            self._redirect("ftp://127.0.0.1/ok.png")
        elif path == "/redirect-loop":
            self._redirect("/redirect-loop")
        elif path == "/redirect-nowhere":
            self._send(302)
        elif path == "/redirect-private":
            self._redirect("http://10.1.2.3/ok.png")
        elif path == "/redirect-loopback":
            self._redirect(f"http://127.0.0.1:{self.server.server_port}/ok.png")
        else:
            self._send(404)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: Counter[str] = Counter()


@dataclass
class Served:
    server: _Server

    @property
    def port(self) -> int:
        return self.server.server_port

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
def served() -> Iterator[Served]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Served(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


def _fails(url: str, policy: FetchPolicy = LOCAL) -> str:
    with pytest.raises(FetchError) as info:
        fetch_image_bytes(url, policy)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_fetch_error_is_a_lexlip_error() -> None:
    assert issubclass(FetchError, LexlipError)


def test_allow_private_fetches_exact_bytes(served: Served) -> None:
    assert fetch_image_bytes(served.url("/ok.png"), LOCAL) == PNG


def test_default_policy_refuses_loopback_address(served: Served) -> None:
    url = served.url("/ok.png")
    message = _fails(url, FetchPolicy())
    assert "127.0.0.1" in message
    assert "loopback" in message
    assert url in message
    assert served.server.hits["/ok.png"] == 0


def test_default_policy_refuses_localhost(served: Served) -> None:
    message = _fails(served.url("/ok.png", host="localhost"), FetchPolicy())
    assert "localhost" in message
    assert "loopback" in message
    assert served.server.hits["/ok.png"] == 0


@pytest.mark.parametrize(
    ("url", "word"),
    [
        ("http://10.1.2.3/a.png", "private"),
        ("http://192.168.0.10/a.png", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://0.0.0.0/a.png", "unspecified"),
        ("http://224.0.0.1/a.png", "multicast"),
        ("http://240.0.0.1/a.png", "reserved"),
        ("http://100.64.0.1/a.png", "non-global"),
        ("http://[::1]/a.png", "loopback"),
        ("http://[::ffff:127.0.0.1]/a.png", "loopback"),
        ("http://[fe80::1]/a.png", "link-local"),
        ("http://[fc00::1]/a.png", "private"),
    ],
)
def test_default_policy_refuses_non_public_addresses(url: str, word: str) -> None:
    message = _fails(url, FetchPolicy())
    assert word in message
    assert "not allowed" in message


def test_any_private_answer_among_public_ones_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        assert host == "images.example"
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    message = _fails("https://images.example/cat.png", FetchPolicy())
    assert "images.example" in message
    assert "10.0.0.7" in message
    assert "private" in message


def test_connects_to_the_checked_address_without_resolving_again(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo
    calls: list[str] = []

    def fake_getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(host)
        if host == "images.example":
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    assert fetch_image_bytes(served.url("/ok.png", host="images.example"), LOCAL) == PNG
    assert calls == ["images.example"]


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("ftp://127.0.0.1/a.png", "ftp"),
        ("file:///etc/passwd", "file"),
        ("FILE:///etc/passwd", "file"),
        ("data:image/png;base64,iVBORw0KGgo=", "data"),
        ("gopher://127.0.0.1/", "gopher"),
    ],
)
def test_other_schemes_are_refused(url: str, scheme: str) -> None:
    message = _fails(url, LOCAL)
    assert f"scheme '{scheme}' is not allowed (http and https only)" in message


@pytest.mark.parametrize("url", ["http:///a.png", "http://", "https://:80/a.png"])
def test_missing_host_is_refused(url: str) -> None:
    assert "host" in _fails(url, LOCAL)


def test_invalid_url_is_refused() -> None:
    assert "not a valid URL" in _fails("http://127.0.0.1:99999/a.png", LOCAL)


def test_credentials_in_url_are_refused() -> None:
    assert "credentials" in _fails("http://user:secret@127.0.0.1/a.png", LOCAL)


@pytest.mark.parametrize("path", ["/big", "/big-chunked", "/big-nolength"])
def test_too_large_body_is_refused(served: Served, path: str) -> None:
    message = _fails(served.url(path), FetchPolicy(allow_private=True, max_bytes=SMALL))
    assert f"larger than {SMALL} bytes" in message


def test_declared_length_is_refused_before_reading(served: Served) -> None:
    message = _fails(served.url("/big"), FetchPolicy(allow_private=True, max_bytes=SMALL))
    assert f"Content-Length {len(BIG)}" in message


def test_body_of_exactly_max_bytes_is_accepted(served: Served) -> None:
    policy = FetchPolicy(allow_private=True, max_bytes=len(BIG))
    for path in ("/big", "/big-chunked", "/big-nolength"):
        assert fetch_image_bytes(served.url(path), policy) == BIG


def test_empty_body_is_refused(served: Served) -> None:
    assert "empty body" in _fails(served.url("/empty"))


def test_http_error_status_is_refused(served: Served) -> None:
    url = served.url("/missing")
    message = _fails(url)
    assert "answered HTTP 404" in message
    assert url in message


def test_slow_server_times_out(served: Served) -> None:
    started = time.monotonic()
    message = _fails(served.url("/slow"), FetchPolicy(allow_private=True, timeout_s=SHORT_TIMEOUT_S))
    assert f"timed out after {SHORT_TIMEOUT_S:g}s" in message
    assert time.monotonic() - started < SLOW_S


def test_a_trickling_server_is_cut_off_at_the_transfer_deadline(served: Served) -> None:
    started = time.monotonic()
    message = _fails(served.url("/trickle"), FetchPolicy(allow_private=True, timeout_s=1.0, deadline_s=0.5))
    assert "took longer than 0.5s to send" in message
    assert time.monotonic() - started < 2.0


def test_closed_port_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert "unreachable" in _fails(f"http://127.0.0.1:{port}/ok.png")


@pytest.mark.parametrize("path", ["/redirect-ok", "/redirect-absolute", "/redirect-chain"])
def test_redirects_are_followed(served: Served, path: str) -> None:
    assert fetch_image_bytes(served.url(path), LOCAL) == PNG


@pytest.mark.parametrize(("path", "scheme"), [("/redirect-file", "file"), ("/redirect-ftp", "ftp")])
def test_redirect_to_another_scheme_is_refused(served: Served, path: str, scheme: str) -> None:
    message = _fails(served.url(path))
    assert f"scheme '{scheme}' is not allowed" in message
    assert "redirected to" in message


def test_redirect_loop_stops_at_max_redirects(served: Served) -> None:
    message = _fails(served.url("/redirect-loop"), FetchPolicy(allow_private=True, max_redirects=2))
    assert "redirected more than 2 times" in message
    assert served.server.hits["/redirect-loop"] == 3


def test_no_redirects_allowed(served: Served) -> None:
    message = _fails(served.url("/redirect-ok"), FetchPolicy(allow_private=True, max_redirects=0))
    assert "redirected more than 0 times" in message
    assert served.server.hits["/ok.png"] == 0


def test_redirect_without_location_is_refused(served: Served) -> None:
    assert "without a Location header" in _fails(served.url("/redirect-nowhere"))


@pytest.mark.parametrize(
    ("path", "word", "address"), [("/redirect-private", "private", "10.1.2.3"), ("/redirect-loopback", "loopback", "")]
)
def test_redirect_target_address_is_checked_again(
    served: Served, monkeypatch: pytest.MonkeyPatch, path: str, word: str, address: str
) -> None:
    """A public host (faked: resolves to a public address, connected to the local server) redirecting inwards."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = fetch_module._connect

    def fake_getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        if host == "images.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    def fake_connect(addresses: Any, port: int, timeout: float | None) -> socket.socket:
        assert addresses == [(socket.AF_INET, ("93.184.215.14", port))]
        return real_connect([(socket.AF_INET, ("127.0.0.1", port))], port, timeout)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(fetch_module, "_connect", fake_connect)
    public = FetchPolicy(timeout_s=2.0)
    assert fetch_image_bytes(served.url("/ok.png", host="images.example"), public) == PNG
    message = _fails(served.url(path, host="images.example"), public)
    assert word in message
    assert (address or "127.0.0.1") in message
    assert served.server.hits["/ok.png"] == 1


def test_long_urls_are_truncated_in_messages() -> None:
    url = "ftp://example.com/" + "a" * 500
    message = _fails(url)
    assert url[:200] in message
    assert url not in message
    assert len(message) < 400


def test_policy_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        FetchPolicy(max_bytes=0)
    with pytest.raises(ValueError):
        FetchPolicy(timeout_s=0)
    with pytest.raises(ValueError):
        FetchPolicy(max_redirects=-1)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("http://example.com/a.png", True),
        ("https://example.com/a.png", True),
        ("HTTPS://EXAMPLE.COM/A.PNG", True),
        ("Http://example.com", True),
        ("ftp://example.com/a.png", True),
        ("file:///etc/passwd", True),
        ("s3+https://bucket/key", True),
        ("data:image/png;base64,iVBORw0KGgo=", True),
        ("/data/images/a.png", False),
        ("images/a.png", False),
        ("a.png", False),
        ("C:\\images\\a.png", False),
        ("C:/images/a.png", False),
        ("://example.com", False),
        ("1http://example.com", False),
        ("", False),
    ],
)
def test_is_url(source: str, expected: bool) -> None:
    assert is_url(source) is expected
