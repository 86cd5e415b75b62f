"""The hand-off from the proxy to a mirror worker: length-prefixed frames on an OS pipe.

The proxy's end never blocks and never buffers more than one frame: it writes each frame with one
non-blocking `write`; when the pipe is full the frame is refused (the caller counts a drop). The
pipe is the bounded queue, sized in bytes (1 MiB where Linux allows it), and the worker bounds
what it holds beyond that (see `harness.shadow.worker.Intake`). A frame larger than the room left
is written in pieces from the event loop; until it is through, new frames are refused.

A worker sees the end of the stream (EOF) when the proxy closes its end or dies, so a worker never
outlives its proxy for longer than it takes to finish what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct

HEADER = struct.Struct("<I")
PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = 1031  # Linux; elsewhere the pipe keeps its default size


def open_pipe(size: int = PIPE_BYTES) -> tuple[int, int]:
    """A (read, write) pipe, enlarged to `size` bytes when the OS allows it."""
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):  # capped by /proc/sys/fs/pipe-max-size
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, size)
    return read_fd, write_fd


class Sender:
    """The proxy's end of a pipe: `send(payload)` writes one frame now or refuses it."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._tail: memoryview | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def send(self, payload: bytes) -> bool:
        """Write one frame; False when the pipe is full or the worker is gone (nothing written)."""
        if self._tail is not None or self.fd < 0:
            return False
        frame = HEADER.pack(len(payload)) + payload
        try:
            written = os.write(self.fd, frame)
        except BlockingIOError:
            return False
        except OSError:  # EPIPE: the worker is gone; the pool notices and restarts it
            self.close()
            return False
        if written < len(frame):
            self._tail = memoryview(frame)[written:]
            self._loop = asyncio.get_running_loop()
            self._loop.add_writer(self.fd, self._flush)
        return True

    def _flush(self) -> None:
        assert self._tail is not None
        try:
            written = os.write(self.fd, self._tail)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self._tail = self._tail[written:]
        if not self._tail:
            self._tail = None
            self._stop_writer()

    def _stop_writer(self) -> None:
        if self._loop is not None:
            self._loop.remove_writer(self.fd)
            self._loop = None

    async def drain(self, timeout_s: float) -> bool:
        """Wait until a frame written in pieces is through; False if `timeout_s` passed first."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._tail is not None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        return self._tail is None

    def close(self) -> None:
        """Close the pipe: the worker reads EOF after the frames already written."""
        if self.fd < 0:
            return
        self._stop_writer()
        self._tail = None
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1


class FrameReader:
    """The worker's side: push bytes as they arrive, pop complete payloads one at a time (a
    reader that holds enough leaves the rest in here, unparsed)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._offset = 0

    def push(self, data: bytes) -> None:
        """Add bytes read from the pipe."""
        if self._offset and self._offset * 2 >= len(self._buffer):
            del self._buffer[: self._offset]  # compact now and then, not at every frame
            self._offset = 0
        self._buffer += data

    def pop(self) -> bytes | None:
        """The next complete payload, or None until more bytes arrive."""
        buffer, position = self._buffer, self._offset
        if len(buffer) - position < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(buffer, position)
        start = position + HEADER.size
        if len(buffer) - start < size:
            return None
        self._offset = start + size
        return bytes(buffer[start : self._offset])

    def feed(self, data: bytes) -> list[bytes]:
        """Push `data` and pop every payload now complete."""
        self.push(data)
        payloads = []
        while (payload := self.pop()) is not None:
            payloads.append(payload)
        return payloads

    @property
    def pending(self) -> int:
        """Bytes held that were not popped yet (complete frames or a partial one)."""
        return len(self._buffer) - self._offset
