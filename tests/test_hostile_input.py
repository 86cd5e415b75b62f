"""Hostile and odd input through the real `parity shadow` proxy, in front of a small stand-in
primary, with a copy of it as the candidate (answering alike unless a case wants them to differ):
malformed JSON in requests and answers, binary bodies, gzip/br/deflate-encoded answers and ones
that claim gzip and are not, 5 MB answers and request bodies (over the recordings' body cap),
chunked answers, HEAD, 204 and 304, header values that are not UTF-8, a 16 KB query string, and
an HTTP/2 client over TLS. For each, the client gets the primary's answer unchanged (status, body
bytes as framed on the wire, the headers that matter), the proxy keeps serving and logs no
complaint, and the exchange is recorded, none lost, with a sensible verdict: `match` where the
answers agree, `incomparable` with a reason where they cannot be compared.

And secrets end to end: hypothesis sends requests carrying secrets in headers, query strings,
form and nested JSON bodies (reflected in the answers, and differently by primary and candidate
so they land in the recorded differences too); no secret reaches the recordings, the proxy's log
or the HTML report built from them."""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import json
import re
import socket
import ssl
import string
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import brotli
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import Shadow, make_pki

from harness.store.reader import iter_records

# Unsafe methods are mirrored only where a route allows it: POST /echo/... is declared "always".
CONFIG = """
[[routes]]
method = "POST"
path = "/echo/{rest:path}"
group = "other"
comparator = "json"
mirror = "always"
"""
BIG = 5 * 1024 * 1024  # over the recordings' 1 MiB body cap
DOCUMENT = json.dumps({"symbol": "BTC-USDT", "candles": [[1_700_000_000 + i * 3600, 42000.5 + i,
                                                          42100.25, 41900.0, 42050.75, 12.5]
                                                         for i in range(200)]}).encode()
BINARY = bytes(range(256)) * 16
ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "br": brotli.compress,
    "deflate": zlib.compress,
}


class StandIn(http.server.BaseHTTPRequestHandler):
    """Answers whatever each case needs, by path. `server.name` is "primary" or "candidate"."""

    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes = b"", headers: tuple[tuple[str, str], ...] = (),
              *, content_type: str | None = "application/json", length: bool = True) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("content-type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        if length:
            self.send_header("content-length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    @property
    def _primary(self) -> bool:
        return self.server.name == "primary"  # type: ignore[attr-defined]

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/health":
            self._send(200, b'{"status":"ok"}')
        elif path == "/json/broken":
            self._send(200, b'{"price": 42000.5, "symbol": "BTC-US')
        elif path == "/json/broken-differently":  # each side broken its own way
            self._send(200, b'{"price": 42000.5, "symbol": "BTC-US' if self._primary else b"[1, 2")
        elif path == "/encoded/either":  # the same document, br from one side and gzip from other
            encoding = "br" if self._primary else "gzip"
            self._send(200, ENCODERS[encoding](DOCUMENT), (("content-encoding", encoding),))
        elif path == "/encoded/broken-alike":  # says gzip, is not: the same bytes both sides
            self._send(200, b"not gzip at all", (("content-encoding", "gzip"),))
        elif path == "/encoded/broken":  # says gzip, is not; each side sends other bytes
            self._send(200, b"not gzip at all" if self._primary else b"\x1f\x8b\x08junk",
                       (("content-encoding", "gzip"),))
        elif path == "/binary":
            self._send(200, BINARY, content_type="application/octet-stream")
        elif path.startswith("/encoded/"):
            encoding = path.rsplit("/", 1)[1]
            self._send(200, ENCODERS[encoding](DOCUMENT), (("content-encoding", encoding),
                                                           ("vary", "accept-encoding")))
        elif path == "/big":
            self._send(200, b'{"blob": "' + b"x" * (BIG - 12) + b'"}')
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for start in range(0, len(DOCUMENT), 1000):
                piece = DOCUMENT[start:start + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/document":
            self._send(200, DOCUMENT, (("etag", '"v1"'),))
        elif path == "/no-content":
            self._send(204, content_type=None, length=False)
        elif path == "/cached":
            if self.headers.get("if-none-match") == '"v1"':
                self._send(304, headers=(("etag", '"v1"'),), content_type=None, length=False)
            else:
                self._send(200, DOCUMENT, (("etag", '"v1"'),))
        elif path in ("/header-echo", "/header-echo/utf-8"):
            # http.server decodes header values as latin-1; sent back as the same bytes.
            value = self.headers.get("x-name", "")
            body = json.dumps({"x-name": value}).encode()
            self._send(200, body, (("x-echo", value),))
        elif path in ("/long", "/long/odd"):
            query = urlsplit(self.path).query
            self._send(200, json.dumps({"length": len(query),
                                        "sha256": hashlib.sha256(query.encode()).hexdigest()})
                       .encode())
        elif path == "/reflect":
            self._reflect(b"")
        else:
            self._send(404, b'{"detail":"Not Found"}')

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        body = self._body()
        if urlsplit(self.path).path == "/echo/reflect":
            self._reflect(body)
            return
        summary = {"length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                   "content-type": self.headers.get("content-type")}
        self._send(200, json.dumps(summary).encode())

    def _reflect(self, body: bytes) -> None:
        """The request as JSON, as a careless app would echo it. The candidate writes header
        names in lower case and the query's parameters in reverse order, so its answer differs
        where the secrets are (and they land in the recorded differences)."""
        name = self.server.name  # type: ignore[attr-defined]
        query = urlsplit(self.path).query
        if name == "candidate":
            query = "&".join(reversed(query.split("&")))
        headers = {(k.lower() if name == "candidate" else k.title()): v
                   for k, v in self.headers.items()
                   if k.lower() not in ("host", "content-length", "accept-encoding",
                                        "connection", "user-agent", "accept")}
        reflected = {"query": query, "headers": headers,
                     "body": body.decode("utf-8", "replace"), "by": name}
        extra = []
        cookie = self.headers.get("cookie")
        if cookie:  # the session cookie (the last one) renewed
            extra.append(("set-cookie", f"{cookie.split(';')[-1].strip()}; Path=/; HttpOnly"))
        self._send(200, json.dumps(reflected).encode(), tuple(extra))

    def log_message(self, *args) -> None:
        pass


def serve(name: str) -> tuple[str, Callable[[], None]]:
    """A stand-in on a free port: its URL and how to stop it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    server.daemon_threads = True
    server.request_queue_size = 128
    server.name = name  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server.shutdown


@pytest.fixture(scope="module")
def stand_in() -> Iterator[tuple[str, str]]:
    """(primary URL, candidate URL): two copies of the stand-in."""
    primary, stop_primary = serve("primary")
    candidate, stop_candidate = serve("candidate")
    yield primary, candidate
    stop_primary()
    stop_candidate()


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "parity.toml"
    path.write_text(CONFIG)
    return path


# --- a raw HTTP/1.1 client: bytes in, the answer as framed on the wire out ----------------------


@dataclass
class Raw:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes  # the payload with the framing (Content-Length, chunks) undone, nothing else
    chunked: bool = False

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


def _read_exactly(sock: socket.socket, buffer: bytearray, size: int) -> bytes:
    while len(buffer) < size:
        data = sock.recv(1 << 20)
        if not data:
            raise ConnectionError(f"closed after {len(buffer)} of {size} bytes")
        buffer += data
    taken = bytes(buffer[:size])
    del buffer[:size]
    return taken


def _read_line(sock: socket.socket, buffer: bytearray) -> bytes:
    while b"\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed inside a line")
        buffer += data
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


def raw_request(base: str, request: bytes) -> Raw:
    """Send `request` (complete bytes; it should say Connection: close) to `base` and read one
    answer."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(request)
        buffer = bytearray()
        status_line = _read_line(sock, buffer)
        headers = []
        while line := _read_line(sock, buffer):
            name, _, value = line.partition(b":")
            headers.append((name.strip(), value.strip()))
        answer = Raw(int(status_line.split()[1]), headers, b"")
        if request.startswith(b"HEAD ") or answer.status in (204, 304):
            return answer
        if (answer.header(b"transfer-encoding") or b"").lower() == b"chunked":
            answer.chunked = True
            body = bytearray()
            while size := int(_read_line(sock, buffer).split(b";")[0], 16):
                body += _read_exactly(sock, buffer, size + 2)[:-2]
            while _read_line(sock, buffer):  # trailers
                pass
            answer.body = bytes(body)
        elif answer.header(b"content-length") is not None:
            answer.body = _read_exactly(sock, buffer, int(answer.header(b"content-length")))
        else:
            while data := sock.recv(1 << 20):
                buffer += data
            answer.body = bytes(buffer)
        return answer


def http_request(method: str, target: str, headers: tuple[tuple[bytes, bytes], ...] = (),
                 body: bytes | None = None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1",
             b"Connection: close", *(name + b": " + value for name, value in headers)]
    if body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


COMPARED_HEADERS = (b"content-type", b"content-encoding", b"content-length", b"etag", b"x-echo",
                    b"vary", b"set-cookie")


def complaints(log: str) -> list[str]:
    """The proxy's log lines that report a problem (the summary's "candidate errors 0" aside)."""
    return [line for line in log.splitlines()
            if re.search(r"traceback|error|warn|critical|exception",
                         line.replace("candidate errors", ""), re.IGNORECASE)]


def same_answer(through: Raw, direct: Raw) -> None:
    """`through` (via the proxy) is the primary's answer `direct`, unchanged."""
    assert through.status == direct.status
    assert through.body == direct.body
    assert through.chunked == direct.chunked
    for name in COMPARED_HEADERS:
        assert through.header(name) == direct.header(name), name


# --- the cases -----------------------------------------------------------------------------


@dataclass
class Case:
    request: bytes
    path: str  # the recorded request path
    verdict: str = "match"
    reason: str | None = None  # a regular expression the recorded reason matches
    check: Callable[[Raw, dict], None] | None = None  # (answer, record) -> asserts


def _body_recorded_as(text: str | None = None, b64: bytes | None = None, *, side: str,
                      size: int | None = None, truncated: bool = False):
    def check(answer: Raw, record: dict) -> None:
        body = record["request"]["body"] if side == "request" else record[side]["body"]
        if text is not None:
            assert body["text"] == text
        if b64 is not None:
            assert base64.b64decode(body["b64"]) == b64
        if size is not None:
            assert body["size"] == size
        assert bool(body.get("truncated")) is truncated
    return check


def _decoded_document(answer: Raw, record: dict) -> None:
    # Recorded decoded (compared on content), the client got the encoded bytes.
    assert answer.body != DOCUMENT
    assert json.loads(record["primary"]["body"]["text"]) == json.loads(DOCUMENT)
    assert not record["primary"]["body"].get("decode_error")


def _kept_raw(answer: Raw, record: dict) -> None:
    for side in ("primary", "candidate"):
        body = record[side]["body"]
        assert body["text"] == answer.body.decode() and "gzip" in body["decode_error"], body


def _big_answer(answer: Raw, record: dict) -> None:
    assert len(answer.body) == BIG
    body = record["primary"]["body"]
    assert body["size"] == BIG and body["truncated"] and len(body["text"]) <= 1024 * 1024
    assert body["sha256"] == hashlib.sha256(answer.body).hexdigest()


def _big_request(answer: Raw, record: dict) -> None:
    assert json.loads(answer.body)["length"] == BIG
    body = record["request"]["body"]
    assert body["size"] == BIG and body["truncated"]


def _latin1_header(answer: Raw, record: dict) -> None:
    assert answer.header(b"x-echo") == b"caf\xe9 \xff\xfe"
    assert ["X-Name", "caf\xe9 \xff\xfe"] in record["request"]["headers"]


# 16 KB of parameters with escapes (/long: primary and candidate answer the digest of the query
# as they got it, so the candidate must get the client's exact bytes).
LONG_QUERY = "&".join(f"k{i}=a+b%2Bc%C3%A9-{i}" for i in range(16 * 1024 // 20))
MALFORMED = b'{"symbol": "BTC-USDT", "amount": 0.5, "tags": ["a", '
CASES: dict[str, Case] = {
    "malformed JSON answer": Case(http_request("GET", "/json/broken"), "/json/broken"),
    "malformed JSON answers, each its own way": Case(
        http_request("GET", "/json/broken-differently"), "/json/broken-differently",
        "incomparable", r".*(JSON|json).*"),
    "br answer from the primary, gzip from the candidate": Case(
        http_request("GET", "/encoded/either", ((b"Accept-Encoding", b"gzip, br"),)),
        "/encoded/either", check=_decoded_document),
    "the same answer claiming gzip and not being it, from both": Case(
        http_request("GET", "/encoded/broken-alike", ((b"Accept-Encoding", b"gzip"),)),
        "/encoded/broken-alike", check=_kept_raw),
    "answers that claim gzip and are not": Case(
        http_request("GET", "/encoded/broken", ((b"Accept-Encoding", b"gzip"),)),
        "/encoded/broken", "incomparable", r"primary body: (broken|truncated) gzip body.*"),
    "malformed JSON request body": Case(
        http_request("POST", "/echo/malformed",
                     ((b"Content-Type", b"application/json"),), MALFORMED),
        "/echo/malformed", check=_body_recorded_as(MALFORMED.decode(), side="request")),
    "binary answer": Case(http_request("GET", "/binary"), "/binary",
                          check=_body_recorded_as(b64=BINARY, side="primary")),
    "binary request body": Case(
        http_request("POST", "/echo/binary",
                     ((b"Content-Type", b"application/octet-stream"),), BINARY),
        "/echo/binary", check=_body_recorded_as(b64=BINARY, side="request")),
    **{f"{encoding} answer": Case(
        http_request("GET", f"/encoded/{encoding}", ((b"Accept-Encoding", b"gzip, br, deflate"),)),
        f"/encoded/{encoding}", check=_decoded_document) for encoding in ENCODERS},
    "5 MB answer": Case(http_request("GET", "/big"), "/big", check=_big_answer),
    "5 MB request body": Case(
        http_request("POST", "/echo/big", ((b"Content-Type", b"text/plain"),), b"y" * BIG),
        "/echo/big", check=_big_request),
    "chunked answer": Case(http_request("GET", "/chunked"), "/chunked",
                           check=_body_recorded_as(DOCUMENT.decode(), side="primary")),
    "HEAD": Case(http_request("HEAD", "/document"), "/document",
                 check=_body_recorded_as(size=0, side="primary")),
    "204 No Content": Case(http_request("GET", "/no-content"), "/no-content"),
    "304 Not Modified": Case(http_request("GET", "/cached", ((b"If-None-Match", b'"v1"'),)),
                             "/cached"),
    "non-UTF-8 header value": Case(
        http_request("GET", "/header-echo", ((b"X-Name", b"caf\xe9 \xff\xfe"),)),
        "/header-echo", verdict="skipped",
        reason=r"request header x-name is not UTF-8: it cannot be mirrored unchanged",
        check=_latin1_header),
    "UTF-8 header value": Case(
        http_request("GET", "/header-echo/utf-8", ((b"X-Name", "café ✓".encode()),)),
        "/header-echo/utf-8"),
    "16 KB query string": Case(http_request("GET", "/long?" + LONG_QUERY), "/long"),
    "query escapes a re-encoding would change": Case(
        http_request("GET", "/long/odd?a=%7E&b&c=%ZZ&d=a%20b&e=x;y&f=%2f&g=caf%C3%A9+x"),
        "/long/odd"),
}


def wait_recorded(shadow: Shadow, path: str, timeout_s: float = 30.0) -> dict:
    """Poll the proxy's recordings (flushed line by line) until an exchange for `path` is
    there; returns it."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = list(iter_records([shadow.recordings])) if shadow.recordings.exists() else []
        found = [r for r in records if r["request"]["path"] == path]
        if found:
            (record,) = found
            return record
        assert time.monotonic() < deadline, (path, len(records), shadow.log())
        time.sleep(0.05)


@dataclass
class SharedProxy:
    """One proxy for the cases that run in this process; `sent` counts what went through it."""

    shadow: Shadow
    sent: int = 1  # the launcher's health check
    skipped: int = 0  # cases the proxy may not mirror (counted skipped, still recorded)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, stand_in, config) -> Iterator[SharedProxy]:
    """A proxy shared by the cases (one per test process). At the end: a clean exit, every
    exchange recorded, none dropped, nothing complained about in the log."""
    primary, candidate = stand_in
    shared = SharedProxy(Shadow(tmp_path_factory.mktemp("shadow"), primary, candidate,
                                "--config", str(config)))
    yield shared
    records = shared.shadow.stop()
    log = shared.shadow.log()
    assert not complaints(log), log
    final = next(line for line in log.splitlines() if line.endswith("(final)"))
    assert f"captured {shared.sent}, mirrored {shared.sent - shared.skipped}" in final, final
    assert "dropped 0" in final and "failed-in-worker 0" in final, final
    assert len(records) == shared.sent, final


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_reaches_the_client_unchanged_and_is_recorded(proxy, stand_in, name):
    case, shadow = CASES[name], proxy.shadow
    through = raw_request(shadow.url, case.request)
    proxy.sent += 1
    proxy.skipped += case.verdict == "skipped"
    same_answer(through, raw_request(stand_in[0], case.request))
    # Waiting also keeps the cases apart: the proxy hands a 5 MB exchange to the worker in
    # pieces and drops (and counts) what comes in meanwhile.
    record = wait_recorded(shadow, case.path)
    assert httpx.get(shadow.url + "/health").json() == {"status": "ok"}  # still serving
    proxy.sent += 1
    assert not complaints(shadow.log()), shadow.log()
    assert record["verdict"] == case.verdict, (record["verdict"], record["reason"],
                                               record["differences"][:3])
    if case.reason:
        assert re.fullmatch(case.reason, record["reason"]), record["reason"]
    assert record["primary"]["status"] == through.status
    if case.check:
        case.check(through, record)


def test_requests_right_behind_a_5_mb_exchange_are_recorded_or_counted_dropped_never_lost(
        tmp_path, stand_in, config):
    primary, candidate = stand_in
    shadow = Shadow(tmp_path, primary, candidate, "--config", str(config))
    try:
        assert len(raw_request(shadow.url, CASES["5 MB answer"].request).body) == BIG
        with httpx.Client(base_url=shadow.url) as client:
            for _ in range(20):
                assert client.get("/health").json() == {"status": "ok"}
    finally:
        records = shadow.stop()
    final = next(line for line in shadow.log().splitlines() if line.endswith("(final)"))
    dropped = int(re.search(r"dropped (\d+)", final).group(1))
    assert len(records) + dropped == 1 + 1 + 20, final  # the launcher's health check, the big one
    assert "/big" in {r["request"]["path"] for r in records}
    assert {r["verdict"] for r in records} == {"match"}


# --- HTTP/2 --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA and a 127.0.0.1 certificate it signed."""
    return make_pki(tmp_path_factory.mktemp("pki"))


class H2First(ssl.SSLContext):
    """Offers h2 before http/1.1, as browsers do. httpx offers http/1.1 first, and mitmproxy
    takes the client's first choice; forcing h2 without ALPN (`http1=False`) makes mitmproxy read
    the HTTP/2 preface as an HTTP/1 request."""

    def set_alpn_protocols(self, protocols) -> None:
        super().set_alpn_protocols(["h2", "http/1.1"])


def test_an_http2_client_over_tls_gets_the_primarys_answers_and_they_are_recorded(
        tmp_path, stand_in, config, pki):
    pytest.importorskip("h2")
    primary, candidate = stand_in
    shadow = Shadow(tmp_path, primary, candidate, "--config", str(config),
                    "--certs", f"*={pki / 'server.pem'}")
    shadow_tls = shadow.url.replace("http://", "https://")
    trust = H2First(ssl.PROTOCOL_TLS_CLIENT)
    trust.load_verify_locations(cafile=str(pki / "ca.pem"))
    try:
        with httpx.Client(http2=True, verify=trust, base_url=shadow_tls) as client:
            for path in ("/document", "/binary", "/encoded/br"):
                answer = client.get(path, headers={"accept-encoding": "br"})
                assert answer.http_version == "HTTP/2"
                direct = httpx.get(primary + path, headers={"accept-encoding": "br"})
                assert (answer.status_code, answer.content) == (direct.status_code,
                                                                direct.content)
                assert answer.headers.get("content-encoding") == \
                    direct.headers.get("content-encoding")
            posted = client.post("/echo/h2", content=MALFORMED,
                                 headers={"content-type": "application/json"})
            assert posted.json()["sha256"] == hashlib.sha256(MALFORMED).hexdigest()
    finally:
        records = shadow.stop()
    # The launcher's health check is plain HTTP/1.1 (mitmproxy serves both on one port).
    recorded = {r["request"]["path"]: r for r in records}
    assert sorted(recorded) == ["/binary", "/document", "/echo/h2", "/encoded/br", "/health"]
    assert {r["verdict"] for r in records} == {"match"}, [
        (r["request"]["path"], r["verdict"], r["reason"]) for r in records]
    assert not complaints(shadow.log()), shadow.log()


# --- secrets end to end --------------------------------------------------------------------

MARKER = "Qz9vSeKr"  # every secret holds it; it occurs nowhere else
URL_SAFE = string.ascii_letters + string.digits + "-_"
secret_values = st.text(URL_SAFE, min_size=12, max_size=32).map(lambda tail: MARKER + tail)


def any_case(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flips: "".join(c.upper() if f else c for c, f in zip(word, flips, strict=True)))


@dataclass
class SecretRequest:
    method: str
    path: str
    params: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes | None
    secrets: list[str]


@st.composite
def secret_requests(draw: st.DrawFn) -> SecretRequest:
    secrets: list[str] = []

    def secret() -> str:
        value = draw(secret_values)
        secrets.append(value)
        return value

    headers: dict[str, str] = {}
    for kind in draw(st.sets(st.sampled_from(["bearer", "api-key", "cookie"]), min_size=1)):
        if kind == "bearer":
            headers[draw(any_case("authorization"))] = f"Bearer {secret()}"
        elif kind == "api-key":
            headers[draw(any_case("x-api-key"))] = secret()
        else:
            headers[draw(any_case("cookie"))] = f"theme=dark; session={secret()}"
    params = [("symbol", "BTC-USDT")]
    for key in draw(st.sets(st.sampled_from(["api_key", "token", "password"]))):
        params.append((draw(any_case(key)), secret()))
    body_kind = draw(st.sampled_from(["none", "form", "json"]))
    body = None
    if body_kind == "form":
        headers["content-type"] = "application/x-www-form-urlencoded"
        body = f"username=demo&{draw(any_case('password'))}={secret()}&remember=1".encode()
    elif body_kind == "json":
        headers["content-type"] = "application/json"
        key = draw(any_case(draw(st.sampled_from(["password", "api_secret", "token",
                                                  "private_key", "client_secret"]))))
        node: object = {key: secret(), "amount": 0.5}
        for wrapper in draw(st.lists(st.sampled_from(["a", "data", "credentials_info", "user"]),
                                     max_size=3)):
            node = {wrapper: node} if draw(st.booleans()) else {wrapper: [1, node]}
        body = json.dumps(node).encode()
    method, path = ("GET", "/reflect") if body is None else ("POST", "/echo/reflect")
    return SecretRequest(method, path, params, headers, body, secrets)


def _recorded_bytes(directory: Path) -> bytes:
    out = b""
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            out += gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return out


@pytest.mark.parametrize("examples", [25, pytest.param(300, marks=pytest.mark.slow)])
def test_secrets_reach_neither_the_recordings_nor_the_log_nor_the_report(tmp_path, stand_in,
                                                                          config, examples):
    primary, candidate = stand_in
    shadow = Shadow(tmp_path, primary, candidate, "--config", str(config))
    sent: list[SecretRequest] = []

    @settings(max_examples=examples, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(request=secret_requests())
    def send(request: SecretRequest) -> None:
        answer = httpx.request(request.method, shadow.url + request.path, params=request.params,
                               headers=request.headers, content=request.body)
        direct = httpx.request(request.method, primary + request.path, params=request.params,
                               headers=request.headers, content=request.body)
        assert answer.status_code == 200 and answer.content == direct.content
        reflected = json.loads(answer.content)
        assert all(s in answer.text for s in request.secrets), reflected  # really sent
        sent.append(request)

    try:
        send()
    finally:
        records = shadow.stop()
    assert len(records) == len(sent) + 1  # and the launcher's health check
    assert {r["verdict"] for r in records if r["request"]["path"] != "/health"} == {"mismatch"}
    report = tmp_path / "report.html"
    built = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", str(shadow.recordings), "--out",
         str(report), "--json", str(tmp_path / "report.json")], capture_output=True, timeout=120)
    assert built.returncode == 0, built.stderr.decode()
    places = {
        "recordings": _recorded_bytes(shadow.recordings),
        "proxy log": shadow.process.log_path.read_bytes(),
        "report": report.read_bytes() + (tmp_path / "report.json").read_bytes()
        + built.stdout + built.stderr,
    }
    assert b"redacted:sha256:" in places["recordings"] and b"redacted:sha256:" in places["report"]
    for place, data in places.items():
        if MARKER.encode() in data:
            at = data.index(MARKER.encode())
            leaked = data[max(0, at - 300):at + 60].decode("utf-8", "replace")
            pytest.fail(f"a secret leaked into the {place}: ...{leaked}")
