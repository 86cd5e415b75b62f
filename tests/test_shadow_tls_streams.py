"""The shadow proxy as production has it: TLS towards clients with the operator's certificate,
HTTPS to the primary and the candidate verified against a CA bundle (verification on by default,
an explicit switch to turn it off), and streams (server-sent events, WebSocket upgrades) passed
through as they come, not mirrored. The CA and certificates are made here."""

from __future__ import annotations

import http.server
import json
import ssl
import sys
import threading
import time

import httpx
import pytest
from support import make_pki

from harness.processes import ManagedProcess, free_port
from harness.store.reader import iter_records


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA and a 127.0.0.1/localhost certificate it signed; PEM files in a directory."""
    return make_pki(tmp_path_factory.mktemp("pki"))


class _Json(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class _Events(_Json):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        for number in range(3):
            self.wfile.write(f"data: tick {number}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.2)
        self.close_connection = True


@pytest.fixture
def servers(pki):
    """Start small HTTP(S) servers on demand; all are shut down after the test."""
    started = []

    def serve(handler: type, tls: bool = False) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(pki / "cert.pem", pki / "key.pem")
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in started:
        server.shutdown()


def shadow(tmp_path, primary: str, candidate: str, *extra: str) -> tuple[ManagedProcess, int]:
    port = free_port()
    proxy = ManagedProcess(
        [sys.executable, "-m", "harness.cli", "shadow", "--primary", primary, "--candidate",
         candidate, "--listen", f"127.0.0.1:{port}", "--recordings", str(tmp_path / "rec"),
         *extra],
        log_path=tmp_path / "shadow.log").start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # no health URL: the client side may speak TLS
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    return proxy, port


def records_after(proxy: ManagedProcess, tmp_path) -> list[dict]:
    assert proxy.stop(timeout=60) == 0, proxy.log_tail()
    return [r for r in iter_records([tmp_path / "rec"]) if r["request"]["path"] != "/"]


def test_tls_to_clients_and_verified_https_to_primary_and_candidate(tmp_path, pki, servers):
    primary, candidate = servers(_Json, tls=True), servers(_Json, tls=True)
    proxy, port = shadow(tmp_path, primary, candidate, "--certs", f"*={pki / 'server.pem'}",
                         "--ca-bundle", str(pki / "ca.pem"))
    trust = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    answer = httpx.get(f"https://127.0.0.1:{port}/health", verify=trust)
    assert answer.json() == {"status": "ok", "path": "/health"}
    (record,) = records_after(proxy, tmp_path)
    assert record["verdict"] == "match", record


def test_the_candidates_certificate_is_verified_by_default(tmp_path, servers):
    primary, candidate = servers(_Json), servers(_Json, tls=True)
    proxy, port = shadow(tmp_path, primary, candidate)
    assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    (record,) = records_after(proxy, tmp_path)
    assert record["verdict"] == "candidate-error" and "tls" in record["reason"].lower(), record


def test_server_sent_events_stream_through_and_are_not_mirrored(tmp_path, servers):
    primary, candidate = servers(_Events), servers(_Json)
    proxy, port = shadow(tmp_path, primary, candidate)
    arrivals = []
    with httpx.stream("GET", f"http://127.0.0.1:{port}/ws/stream") as events:
        for line in events.iter_lines():
            if line:
                arrivals.append((line, time.perf_counter()))
    assert [line for line, _ in arrivals] == ["data: tick 0", "data: tick 1", "data: tick 2"]
    assert arrivals[-1][1] - arrivals[0][1] > 0.3  # each event as it came, not all at the end
    assert records_after(proxy, tmp_path) == []
    assert "streams 2" in proxy.log_tail()  # the start-up probe saw the stream too


def test_websocket_streams_pass_through_both_ways_and_are_not_mirrored(tmp_path,
                                                                        reference_factory):
    from websockets.sync.client import connect

    primary, candidate = reference_factory("docker"), reference_factory("native")
    proxy, port = shadow(tmp_path, primary.base_url, candidate.base_url)
    path = "/ws/ohlcv/binance/BTC-USDT/1h?limit=3"

    def session(base: str) -> list:
        with connect(base + path, open_timeout=10) as socket:
            candles = [json.loads(socket.recv(timeout=10)) for _ in range(3)]
            socket.send("ping")
            return [*candles, json.loads(socket.recv(timeout=10))]

    direct = session(primary.base_url.replace("http://", "ws://"))
    through = session(f"ws://127.0.0.1:{port}")
    assert through == direct  # the primary's stream, frame for frame, and the client's message
    assert [frame.get("timeframe") for frame in through[:3]] == ["1h"] * 3
    assert through[-1] == {"echo": "ping"}
    assert records_after(proxy, tmp_path) == []  # upgrades are counted, not mirrored
    assert "streams 1" in proxy.log_tail()
