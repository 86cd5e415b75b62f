"""The shadow proxy as production has it: TLS towards clients with the operator's certificate,
HTTPS to the candidate verified against a CA bundle, server-sent events passed through untouched
and not mirrored, and a slow candidate that costs clients nothing."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import ssl
import sys
import threading
import time

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness.processes import ManagedProcess, free_port
from harness.store.reader import iter_records


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA and a 127.0.0.1/localhost server certificate signed by it, made here."""
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("parity test CA"))
          .issuer_name(_name("parity test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(key_pem + cert.public_bytes(pem))
    (directory / "cert.pem").write_bytes(cert.public_bytes(pem))
    (directory / "key.pem").write_bytes(key_pem)
    return directory


class _Handler(http.server.BaseHTTPRequestHandler):
    delay = 0.0

    def do_GET(self) -> None:
        time.sleep(self.delay)
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def serve(handler: type, tls_dir=None) -> tuple[str, http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    scheme = "http"
    if tls_dir is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_dir / "cert.pem", tls_dir / "key.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"{scheme}://127.0.0.1:{server.server_address[1]}", server


def shadow(tmp_path, primary: str, candidate: str, *extra: str):
    port = free_port()
    recordings = tmp_path / f"rec-{port}"
    proxy = ManagedProcess(
        [sys.executable, "-m", "harness.cli", "shadow", "--primary", primary, "--candidate",
         candidate, "--listen", f"127.0.0.1:{port}", "--recordings", str(recordings), *extra],
        log_path=tmp_path / f"shadow-{port}.log",
    ).start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket_to(port):
                break
        except OSError:
            time.sleep(0.05)
    return proxy, port, recordings


def socket_to(port: int):
    import socket

    return socket.create_connection(("127.0.0.1", port), timeout=1)


def test_tls_to_clients_and_verified_https_to_the_candidate(tmp_path, pki, docker_pair):
    primary = docker_pair[0]
    candidate, server = serve(_Handler, tls_dir=pki)
    try:
        proxy, port, recordings = shadow(
            tmp_path, primary.base_url, candidate, "--certs", f"*={pki / 'server.pem'}",
            "--ca-bundle", str(pki / "ca.pem"))
        trust = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        answer = httpx.get(f"https://127.0.0.1:{port}/health", verify=trust)
        assert answer.json() == {"status": "ok"}
        assert proxy.stop(timeout=60) == 0, proxy.log_tail()
        (record,) = list(iter_records([recordings]))
        assert record["verdict"] == "match", record
        # Without the CA bundle the candidate's certificate is not trusted: a candidate error.
        proxy, port, recordings = shadow(tmp_path, primary.base_url, candidate)
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        assert proxy.stop(timeout=60) == 0
        (record,) = list(iter_records([recordings]))
        assert record["verdict"] == "candidate-error" and "tls" in record["reason"].lower()
    finally:
        server.shutdown()


class _SSE(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for number in range(3):
            self.wfile.write(f"data: tick {number}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.05)

    def log_message(self, *args) -> None:
        pass


def test_server_sent_events_pass_through_and_are_not_mirrored(tmp_path, docker_pair):
    primary, server = serve(_SSE)
    try:
        proxy, port, recordings = shadow(tmp_path, primary, docker_pair[1].base_url)
        with httpx.stream("GET", f"http://127.0.0.1:{port}/ws/stream") as events:
            lines = [line for line in events.iter_lines() if line]
        assert lines == ["data: tick 0", "data: tick 1", "data: tick 2"]
        assert proxy.stop(timeout=60) == 0
        assert "streams 1" in proxy.log_tail()
        assert not recordings.exists() or list(iter_records([recordings])) == []
    finally:
        server.shutdown()


def test_a_slow_candidate_costs_clients_nothing(tmp_path, docker_pair):
    primary = docker_pair[0]

    class Slow(_Handler):
        delay = 2.0

    candidate, server = serve(Slow)
    try:
        proxy, port, recordings = shadow(tmp_path, primary.base_url, candidate, "--timeout", "5")
        started = time.perf_counter()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(20):
                assert client.get("/health").json() == {"status": "ok"}
        elapsed = time.perf_counter() - started
        assert proxy.stop(timeout=60) == 0
        records = list(iter_records([recordings]))
    finally:
        server.shutdown()
    assert elapsed < 10, elapsed  # 20 mirrors of 2 s each never sat in the client's path
    assert len(records) == 20 and {r["verdict"] for r in records} == {"match"}
    assert min(r["candidate"]["latency_ms"] for r in records) >= 1900
