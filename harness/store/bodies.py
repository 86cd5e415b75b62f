"""Bodies off the wire: Content-Encoding undone (gzip, br, deflate, zstd, stacked), never raising.

Every decoder is bounded: a body that would decode to more than `MAX_DECODED_BYTES` (a
decompression bomb, or just a huge answer) is kept as its raw bytes with a `decode_error`, so a
hostile or broken body costs at most that much memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import brotli
import zstandard  # mitmproxy requires it

from harness.model import Body

MAX_DECODED_BYTES = 64 * 1024 * 1024

# brotli 1.1 has no output limit per call; feeding it a few input bytes at a time bounds what one
# call can produce (a 1 GiB bomb gives at most ~16 MiB per 16-byte step) at ~2x the cost.
_BROTLI_STEP = 16
# A zstd block (<= 128 KiB out) costs at least 3 bytes in: 256 bytes give at most ~11 MiB.
_ZSTD_STEP = 256
_GZIP_MAGIC = b"\x1f\x8b"


class _TooLarge(Exception):
    pass


class _Truncated(Exception):
    pass


def _zlib_stream(raw: bytes, wbits: int, *, members: bool) -> bytes:
    """Inflate `raw`; with `members`, concatenated gzip members too (RFC 1952 allows them)."""
    out = bytearray()
    data = raw
    while True:
        decoder = zlib.decompressobj(wbits)
        # max_length is at least 1 here (0 would mean "no limit").
        out += decoder.decompress(data, MAX_DECODED_BYTES + 1 - len(out))
        if len(out) > MAX_DECODED_BYTES or decoder.unconsumed_tail:
            raise _TooLarge
        if not decoder.eof:
            raise _Truncated
        data = decoder.unused_data
        # Trailing bytes that are not another member (zero padding some servers add) are ignored,
        # as browsers do.
        if not members or not data.startswith(_GZIP_MAGIC):
            return bytes(out)


def _gunzip(raw: bytes) -> bytes:
    return _zlib_stream(raw, 16 + zlib.MAX_WBITS, members=True)


def _inflate(raw: bytes) -> bytes:
    try:
        return _zlib_stream(raw, zlib.MAX_WBITS, members=False)  # zlib-wrapped, as the RFC says
    except zlib.error:
        return _zlib_stream(raw, -zlib.MAX_WBITS, members=False)  # raw, as many servers send


def _unbrotli(raw: bytes) -> bytes:
    decoder = brotli.Decompressor()
    out = bytearray()
    view = memoryview(raw)
    for start in range(0, len(raw), _BROTLI_STEP):
        out += decoder.process(bytes(view[start : start + _BROTLI_STEP]))
        if len(out) > MAX_DECODED_BYTES:
            raise _TooLarge
    if not decoder.is_finished():
        raise _Truncated
    return bytes(out)


def _unzstd(raw: bytes) -> bytes:
    out = bytearray()
    data = raw
    while data:  # one frame per round; a body may hold several
        decoder = zstandard.ZstdDecompressor().decompressobj()
        for start in range(0, len(data), _ZSTD_STEP):
            out += decoder.decompress(data[start : start + _ZSTD_STEP])
            if len(out) > MAX_DECODED_BYTES:
                raise _TooLarge
            if decoder.eof:
                break
        if not decoder.eof:
            raise _Truncated
        data = decoder.unused_data
    return bytes(out)


_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": _gunzip,
    "x-gzip": _gunzip,
    "deflate": _inflate,
    "br": _unbrotli,
    "zstd": _unzstd,
    "identity": lambda raw: raw,
}


def decode_content(raw: bytes, content_encoding: str | None) -> bytes:
    """Undo `content_encoding` ("gzip", "br", "gzip, br"...: applied in the order listed, so
    undone in reverse). Raises ValueError naming the encoding that failed and why."""
    if not content_encoding or not raw:
        return raw
    data = raw
    encodings = [e.strip().lower() for e in content_encoding.split(",") if e.strip()]
    for encoding in reversed(encodings):
        decoder = _DECODERS.get(encoding)
        if decoder is None:
            raise ValueError(f"unknown content-encoding {encoding!r}")
        try:
            data = decoder(data)
        except _TooLarge:
            raise ValueError(
                f"{encoding} body decodes to more than {MAX_DECODED_BYTES} bytes (not decoded)"
            ) from None
        except _Truncated:
            raise ValueError(f"truncated {encoding} body") from None
        except Exception as exc:  # zlib.error, brotli.error, ZstdError...: each has its own type
            raise ValueError(f"broken {encoding} body: {exc}") from None
    return data


def body_from_wire(raw: bytes, content_encoding: str | None, *, cap: int | None = None) -> Body:
    """The recorded body of a message: decoded from its Content-Encoding when possible, else the
    raw bytes with `decode_error` saying why. Never raises. `cap` as in `Body.from_bytes`."""
    try:
        return Body.from_bytes(decode_content(raw, content_encoding), cap=cap)
    except ValueError as exc:
        body = Body.from_bytes(raw, cap=cap)
        body.decode_error = str(exc)
        return body
