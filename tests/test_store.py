"""The recordings store: bodies, segments, crash safety, streaming, HAR and flow-file import."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import brotli
import pytest

from harness.errors import UserError
from harness.model import Body, Exchange, Request, Response, Verdict
from harness.store import SegmentWriter, body_from_wire, count_records, iter_records, read_exchanges
from harness.store.flowfile import import_flows
from harness.store.har import export_har, import_har


def make_exchange(i: int, body: bytes = b'{"ok": true}') -> Exchange:
    return Exchange(
        request=Request("GET", "/api/v1/data/ohlcv/binance/BTC-USDT/1h", query=[("limit", str(i))]),
        primary=Response(200, [("content-type", "application/json")], Body.from_bytes(body), 3.5),
        candidate=Response(200, [("content-type", "application/json")], Body.from_bytes(body), 4.0),
        route="GET /api/v1/data/ohlcv/{exchange}/{symbol}/{timeframe}",
        group="data",
        verdict=Verdict.MATCH,
    )


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("br", brotli.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda raw: zlib.compress(raw)[2:-4]),  # raw deflate, as some servers send
        ("gzip, br", lambda raw: brotli.compress(gzip.compress(raw))),
    ],
)
def test_content_encoding_is_undone(encoding, encode):
    raw = b'{"candles": [1, 2, 3]}' * 50
    body = body_from_wire(encode(raw), encoding)
    assert body.text == raw.decode()
    assert body.decode_error is None


def test_broken_encoding_keeps_raw_bytes_with_the_reason():
    body = body_from_wire(b"\x1f\x8bnot gzip at all", "gzip")
    assert body.decode_error and "gzip" in body.decode_error
    assert body.raw == b"\x1f\x8bnot gzip at all"


def test_binary_body_is_base64_and_round_trips():
    raw = bytes(range(256))
    body = Body.from_bytes(raw)
    assert body.text is None and body.raw == raw


def test_body_over_the_cap_keeps_size_and_digest(tmp_path):
    big = b'{"x": "' + b"a" * 5_000 + b'"}'
    with SegmentWriter(tmp_path, body_cap=1_000) as writer:
        writer.write(make_exchange(1, big))
    (record,) = iter_records(tmp_path)
    body = record["primary"]["body"]
    assert body["truncated"] is True
    assert body["size"] == len(big)
    assert len(body["text"]) == 1_000
    assert body["sha256"] == Body.from_bytes(big).sha256


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_and_rotation(tmp_path, compress):
    with SegmentWriter(tmp_path, compress=compress, max_bytes=2_000) as writer:
        originals = [make_exchange(i) for i in range(30)]
        for exchange in originals:
            writer.write(exchange)
    assert len(writer.segments) > 1
    back = list(read_exchanges(tmp_path))
    assert [e.to_dict() for e in back] == [e.to_dict() for e in originals]
    assert count_records(tmp_path) == 30


def test_restart_starts_a_new_segment(tmp_path):
    for _ in range(2):
        with SegmentWriter(tmp_path) as writer:
            writer.write(make_exchange(0))
    assert len(list(tmp_path.iterdir())) == 2
    assert count_records(tmp_path) == 2


@pytest.mark.parametrize("compress", [False, True])
def test_reader_survives_truncation_at_every_offset(tmp_path, compress):
    source = tmp_path / "src"
    with SegmentWriter(source, compress=compress) as writer:
        for i in range(3):
            writer.write(make_exchange(i))
    (segment,) = source.iterdir()
    data = segment.read_bytes()
    whole = [e.to_dict() for e in read_exchanges(segment)]
    boundaries = _line_ends(data, compress)
    cut = tmp_path / segment.name
    for offset in range(len(data) + 1):
        cut.write_bytes(data[:offset])
        got = [e.to_dict() for e in read_exchanges(cut)]
        complete = sum(1 for end in boundaries if end <= offset)
        # Every completed line is read back, nothing else but whole lines (a gzip member whose
        # data is whole but whose trailer is cut may still give its line).
        assert got == whole[: len(got)], offset
        assert len(got) >= complete, offset


def _line_ends(data: bytes, compress: bool) -> list[int]:
    if not compress:
        # a line is whole once everything but its newline is there
        return [i for i, byte in enumerate(data) if byte == ord("\n")]
    ends, offset = [], 0
    while offset < len(data):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        decoder.decompress(data[offset:])
        offset = len(data) - len(decoder.unused_data)
        ends.append(offset)
    return ends


def test_torn_last_line_warns_and_a_corrupt_middle_line_is_an_error(tmp_path, caplog):
    with SegmentWriter(tmp_path) as writer:
        for i in range(3):
            writer.write(make_exchange(i))
    (segment,) = tmp_path.iterdir()
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(lines[0] + lines[1] + lines[2][:40])
    assert len(list(iter_records(tmp_path))) == 2
    assert "torn last line skipped" in caplog.text
    segment.write_bytes(lines[0] + b'{"broken\n' + lines[1] + lines[2])
    with pytest.raises(UserError, match=r":2: not a JSON line"):
        list(iter_records(tmp_path))


def test_missing_recordings_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="recordings not found"):
        list(iter_records(tmp_path / "nope"))


def test_disk_full_raises_store_error(tmp_path):
    from harness.store import StoreError

    writer = SegmentWriter(tmp_path)
    writer.write(make_exchange(0))
    writer._file.close()
    writer._file = open("/dev/full", "wb")  # noqa: SIM115 - every write fails with ENOSPC
    with pytest.raises(StoreError, match="failed"):
        writer.write(make_exchange(1, b"x" * 100_000))


def test_reading_is_streamed_in_constant_memory(tmp_path):
    with SegmentWriter(tmp_path) as writer:
        for i in range(20_000):
            writer.write(make_exchange(i))
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    tracemalloc.start()
    count = sum(1 for _ in iter_records(tmp_path))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 20_000
    assert peak < size / 20, (peak, size)


def test_har_round_trip(tmp_path):
    originals = [make_exchange(i) for i in range(3)]
    originals[1].candidate = Response(error="timeout after 2s")
    path = tmp_path / "out.har"
    assert export_har(originals, path) == 3
    assert [e.to_dict() for e in import_har(path)] == [e.to_dict() for e in originals]


def test_browser_har_imports_primary_only(tmp_path):
    path = tmp_path / "browser.har"
    path.write_text(
        '{"log": {"version": "1.2", "entries": [{"startedDateTime": "2024-06-01T00:00:00Z",'
        ' "time": 12, "request": {"method": "GET",'
        ' "url": "http://x/api/v1/data/ohlcv/a/b/1h?limit=2",'
        ' "headers": []}, "response": {"status": 200, "headers": [],'
        ' "content": {"size": 2, "text": "[]"}}}]}}'
    )
    (exchange,) = import_har(path)
    assert exchange.request.query == [("limit", "2")]
    assert exchange.primary.body.text == "[]" and exchange.candidate is None


def test_mitmdump_flow_file_imports(tmp_path):
    from mitmproxy import io
    from mitmproxy.test import tflow

    path = tmp_path / "flows.mitm"
    with path.open("wb") as handle:
        writer = io.FlowWriter(handle)
        for _ in range(2):
            writer.add(tflow.tflow(resp=True))
    exchanges = list(import_flows(path))
    assert len(exchanges) == 2
    assert exchanges[0].request.method == "GET"
    assert exchanges[0].primary.status == 200


def test_bad_har_is_a_user_error(tmp_path):
    path = tmp_path / "bad.har"
    path.write_text("{not json")
    with pytest.raises(UserError, match="not a readable HAR"):
        list(import_har(path))
