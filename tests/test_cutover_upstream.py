"""The hot path's HTTP/1.1 client against servers on 127.0.0.1 that answer in each framing, close,
hang or refuse."""

from __future__ import annotations

import asyncio

import pytest

from harness.cutover.upstream import CandidateClient, NotSent, SentFailed
from harness.processes import free_port

ANSWERS = {
    b"/length": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\nTrailer: t\r\n\r\n",
    b"/close": b"HTTP/1.1 201 Created\r\nConnection: close\r\n\r\nuntil the end",
    b"/continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n",
    b"/garbage": b"SSH-2.0-OpenSSH\r\n\r\n",
}


async def serve(received: list[bytes]) -> tuple[asyncio.base_events.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            body = await reader.readexactly(length)
            received.append(head + body)
            target = head.split(b" ")[1]
            if target == b"/hang":
                await asyncio.sleep(60)
            writer.write(ANSWERS[target])
            await writer.drain()
            if target in (b"/close", b"/garbage"):
                writer.close()
                return

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_framings_keep_alive_and_request_shape() -> None:
    async def run() -> None:
        received: list[bytes] = []
        server, url = await serve(received)
        client = CandidateClient(url, timeout_s=5)
        status, reason, fields, body = await client.request(
            b"POST", b"/length", [(b"Host", b"public"), (b"X-Forwarded-For", b"10.0.0.1"),
                                  (b"Connection", b"keep-alive")], b'{"a": 1}')
        assert (status, reason, body) == (200, b"OK", b"hello")
        assert fields == [(b"Content-Type", b"text/plain")]
        first = received[-1]
        assert first.startswith(b"POST /length HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"X-Forwarded-For: 10.0.0.1\r\n" in first and b"public" not in first
        assert first.endswith(b'Content-Length: 8\r\n\r\n{"a": 1}')
        assert (await client.request(b"GET", b"/chunked", [], b""))[3] == b"hello"
        assert len(client._idle) == 1  # one connection, kept alive for both
        status, _, _, body = await client.request(b"GET", b"/close", [], b"")
        assert (status, body) == (201, b"until the end") and not client._idle
        status, _, fields, body = await client.request(b"GET", b"/continue", [], b"")
        assert (status, fields, body) == (204, [(b"X-A", b"b")], b"")
        head = await client.request(b"HEAD", b"/length", [], b"")
        assert head[3] == b""
        await client.close()
        server.close()

    asyncio.run(run())


def test_what_was_sent_and_what_was_not() -> None:
    async def run() -> None:
        received: list[bytes] = []
        server, url = await serve(received)
        refused = CandidateClient(f"http://127.0.0.1:{free_port()}", timeout_s=2)
        with pytest.raises(NotSent, match="connection refused"):
            await refused.request(b"POST", b"/length", [], b"x")
        client = CandidateClient(url, timeout_s=0.5)
        with pytest.raises(SentFailed, match=r"timeout after 0\.5s"):
            await client.request(b"POST", b"/hang", [], b"x")
        assert received[-1].startswith(b"POST /hang")
        with pytest.raises(SentFailed):
            await client.request(b"GET", b"/garbage", [], b"")
        server.close()

    asyncio.run(run())
