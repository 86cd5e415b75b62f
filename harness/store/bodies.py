"""Bodies off the wire: Content-Encoding undone (gzip, br, deflate, zstd, stacked), no raise."""

from __future__ import annotations

import zlib

import brotli

from harness.model import Body

# A decompression bomb stops here; the raw bytes are kept with a decode_error.
MAX_DECODED_BYTES = 64 * 1024 * 1024


class _TooLarge(Exception):
    pass


def _inflate(raw: bytes, wbits: int) -> bytes:
    decoder = zlib.decompressobj(wbits)
    out = decoder.decompress(raw, MAX_DECODED_BYTES + 1)
    if len(out) > MAX_DECODED_BYTES or decoder.unconsumed_tail:
        raise _TooLarge
    return out


def _gunzip(raw: bytes) -> bytes:
    return _inflate(raw, 16 + zlib.MAX_WBITS)


def _deflate(raw: bytes) -> bytes:
    try:
        return _inflate(raw, zlib.MAX_WBITS)  # zlib-wrapped, as the RFC says
    except zlib.error:
        return _inflate(raw, -zlib.MAX_WBITS)  # raw deflate, as many servers send


def _brotli(raw: bytes) -> bytes:
    decoder = brotli.Decompressor()
    out = bytearray()
    out += decoder.process(raw)
    if len(out) > MAX_DECODED_BYTES:
        raise _TooLarge
    return bytes(out)


def _zstd(raw: bytes) -> bytes:
    import zstandard  # shipped with mitmproxy

    return zstandard.ZstdDecompressor().decompress(raw, max_output_size=MAX_DECODED_BYTES)


_DECODERS = {
    "gzip": _gunzip,
    "x-gzip": _gunzip,
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
    "identity": lambda raw: raw,
}


def decode_content(raw: bytes, content_encoding: str | None) -> bytes:
    """Undo `content_encoding` (applied in the order listed, so undone in reverse).

    Raises ValueError naming the encoding that failed.
    """
    if not content_encoding or not raw:
        return raw
    data = raw
    for encoding in reversed([e.strip().lower() for e in content_encoding.split(",") if e.strip()]):
        decoder = _DECODERS.get(encoding)
        if decoder is None:
            raise ValueError(f"unknown content-encoding {encoding!r}")
        try:
            data = decoder(data)
        except _TooLarge:
            raise ValueError(
                f"{encoding} body decodes to more than {MAX_DECODED_BYTES} bytes"
            ) from None
        except Exception as exc:  # each library raises its own error type
            raise ValueError(f"broken {encoding} body: {exc}") from None
    return data


def body_from_wire(raw: bytes, content_encoding: str | None) -> Body:
    """The recorded body of a message: decoded when possible, else the raw bytes with the reason."""
    try:
        return Body.from_bytes(decode_content(raw, content_encoding))
    except ValueError as exc:
        body = Body.from_bytes(raw)
        body.decode_error = str(exc)
        return body
