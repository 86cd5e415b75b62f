"""A tiny keep-alive HTTP server for benchmarks: a fixed JSON answer after an optional delay, and
`GET /__count` telling how many requests it answered.

    python bench/upstream.py PORT [DELAY_S]
"""

from __future__ import annotations

import asyncio
import sys

BODY = b'{"status":"ok","candles":[1,2,3,4,5,6,7,8]}'


async def main(port: int, delay: float) -> None:
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                if head.startswith(b"GET /__count"):
                    body = str(count).encode()
                else:
                    count += 1
                    if delay:
                        await asyncio.sleep(delay)
                    body = BODY
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0))
