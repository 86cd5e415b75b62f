"""Helpers shared by the tests that run the shadow proxy as a real process."""

from __future__ import annotations

import contextlib
import http.server
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from harness.processes import ManagedProcess, free_port
from harness.store.reader import iter_records

SHADOW = [sys.executable, "-m", "harness.cli", "shadow"]


def started_workers(proxy: ManagedProcess, timeout_s: float = 30.0) -> list[psutil.Process]:
    """The mirror workers of a started shadow proxy, once it has started them. Its /health is
    the primary's, answered through the proxy as soon as it listens, so a start-up that fails
    after that (an admin or metrics port taken) shows as a proxy without workers about to exit:
    it is stopped and the test fails with its log."""
    deadline = time.monotonic() + timeout_s
    while not (workers := psutil.Process(proxy.pid).children()):
        if not proxy.running or time.monotonic() > deadline:
            proxy.stop()
            raise AssertionError(f"the proxy started no worker; its log ends:\n{proxy.log_tail()}")
        time.sleep(0.05)
    return workers


class Shadow:
    """`parity shadow` as a subprocess on a free port, recording into its own directory."""

    def __init__(self, tmp_path: Path, primary: str, candidate: str, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.recordings = tmp_path / f"rec-{self.port}"
        argv = [*SHADOW, "--primary", primary, "--candidate", candidate, "--listen",
                f"127.0.0.1:{self.port}", "--recordings", str(self.recordings), *extra]
        self.process = ManagedProcess(argv, health_url=f"{self.url}/health",
                                      log_path=tmp_path / f"shadow-{self.port}.log").start()
        self.workers = started_workers(self.process)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60.0) -> list[dict]:
        """Stop the proxy with `signum`; it must exit cleanly (within `timeout` seconds) and
        leave no worker behind. Returns the recorded exchanges."""
        assert self.workers, "the proxy started no worker"
        self.process.process.send_signal(signum)
        assert self.process.process.wait(timeout=timeout) == 0, self.process.log_tail()
        for worker in self.workers:
            assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
        return list(iter_records([self.recordings])) if self.recordings.exists() else []

    def log(self) -> str:
        return self.process.log_tail(200)


def make_pki(directory: Path) -> Path:
    """A CA and a certificate for 127.0.0.1 and localhost that it signed, as PEM files in
    `directory`: ca.pem, cert.pem, key.pem, and server.pem (certificate and key, the form
    mitmproxy's `certs` option takes)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("parity test CA"))
          .issuer_name(name("parity test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
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
    (directory / "server.pem").write_bytes(cert.public_bytes(pem) + key_pem)
    (directory / "cert.pem").write_bytes(cert.public_bytes(pem))
    (directory / "key.pem").write_bytes(key_pem)
    return directory


class SlowCopy:
    """A stand-in candidate answering GETs exactly like the primary's `path` (fetched once), each
    after `delay_s`; with `one_at_a_time`, one request at a time. `answered` counts answers."""

    def __init__(self, primary: str, path: str, delay_s: float = 0.5, *,
                 params: dict[str, str] | None = None, one_at_a_time: bool = False) -> None:
        answer = httpx.get(primary + path, params=params)
        gate = threading.Lock() if one_at_a_time else contextlib.nullcontext()
        self.answered = 0
        copy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with gate:
                    time.sleep(delay_s)
                    copy.answered += 1
                self.send_response(answer.status_code)
                self.send_header("content-type", answer.headers["content-type"])
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(answer.content)

            def log_message(self, *args) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 512  # the default 5 makes concurrent connects wait a second

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


class LoopbackListener:
    """A raw TCP server on a free loopback port, for candidates that misbehave below HTTP: each
    accepted connection is handed to `handle` (a subclass's) in a thread of its own; `close`
    closes the listener and every connection."""

    def __init__(self, backlog: int = 64) -> None:
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self.sock.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()
