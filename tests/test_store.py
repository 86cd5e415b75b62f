"""The recordings store: bodies off the wire, segments, crash safety, streaming, HAR and flow files.
Everything runs on real files in tmp_path."""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
import threading
import time
import tracemalloc
import zlib

import brotli
import orjson
import pytest
import zstandard

from harness.errors import UserError
from harness.model import Body, Difference, Exchange, Kind, Request, Response, Verdict
from harness.store import (
    ReadStats,
    SegmentWriter,
    StoreError,
    body_from_wire,
    count_records,
    export_har,
    import_flows,
    import_har,
    iter_records,
    read_exchanges,
)
from harness.store import bodies as bodies_module

JSON = [("content-type", "application/json")]


def make_exchange(i: int, body: bytes = b'{"ok": true}') -> Exchange:
    return Exchange(
        request=Request("GET", "/api/v1/data/ohlcv/binance/BTC-USDT/1h", query=[("limit", str(i))],
                        headers=[("accept", "application/json")]),
        primary=Response(200, JSON, Body.from_bytes(body), 3.5),
        candidate=Response(200, JSON, Body.from_bytes(body), 4.0),
        route="GET /api/v1/data/ohlcv/{exchange}/{symbol}/{timeframe}",
        group="data",
        comparator="ohlcv",
        verdict=Verdict.MATCH,
    )


def dicts(exchanges) -> list[dict]:
    return [e.to_dict() for e in exchanges]


# ----------------------------------------------------------------------------- bodies off the wire

RAW = b'{"candles": [[1717200000, 67000.5, 67100.0]], "symbol": "BTC-USDT"}' * 40


def _zstd(raw: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(raw)


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("gzip", lambda raw: gzip.compress(raw[:100]) + gzip.compress(raw[100:])),  # 2 members
        ("br", brotli.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda raw: zlib.compress(raw)[2:-4]),  # raw deflate, as some servers send
        ("zstd", _zstd),
        ("gzip, br", lambda raw: brotli.compress(gzip.compress(raw))),
        ("br,deflate, zstd", lambda raw: _zstd(zlib.compress(brotli.compress(raw)))),
        ("identity", lambda raw: raw),
        (None, lambda raw: raw),
    ],
)
def test_content_encoding_is_undone(encoding, encode):
    body = body_from_wire(encode(RAW), encoding)
    assert body.decode_error is None
    assert body.text == RAW.decode()
    assert body.size == len(RAW)
    assert body.sha256 == hashlib.sha256(RAW).hexdigest()


@pytest.mark.parametrize(
    ("wire", "encoding", "reason"),
    [
        (b"\x1f\x8bnot gzip at all", "gzip", "broken gzip"),
        (gzip.compress(RAW, mtime=0)[:-20], "gzip", "truncated gzip"),
        (b"not brotli", "br", "broken br"),
        (brotli.compress(RAW)[:-4], "br", "truncated br"),
        (b"not deflate", "deflate", "broken deflate"),
        (b"not zstd at all", "zstd", "broken zstd"),
        (_zstd(RAW)[:-5], "zstd", "truncated zstd"),
        (b"plain", "compress", "unknown content-encoding"),
        (gzip.compress(b"\xff\xfe binary", mtime=0), "br, gzip", "broken br"),  # gzip undone
    ],
    ids=lambda value: value if isinstance(value, str) else "wire",  # bytes ids would vary
)
def test_a_broken_encoding_keeps_the_raw_bytes_and_says_why(wire, encoding, reason):
    body = body_from_wire(wire, encoding)
    assert body.decode_error is not None and reason in body.decode_error
    assert body.raw == wire
    assert body.size == len(wire)


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [("gzip", gzip.compress), ("br", brotli.compress), ("deflate", zlib.compress),
     ("zstd", _zstd)],
)
def test_a_decompression_bomb_is_not_decoded(monkeypatch, encoding, encode):
    monkeypatch.setattr(bodies_module, "MAX_DECODED_BYTES", 1024 * 1024)
    bomb = encode(b"\0" * (4 * 1024 * 1024))
    body = body_from_wire(bomb, encoding)
    assert body.decode_error and "more than 1048576 bytes" in body.decode_error
    assert body.raw == bomb


def test_binary_is_kept_as_base64():
    raw = bytes(range(256)) * 4
    body = body_from_wire(gzip.compress(raw), "gzip")
    assert body.text is None and body.b64 is not None
    assert body.raw == raw and body.size == len(raw)


def test_a_body_over_the_cap_is_cut_keeping_size_and_digest(tmp_path):
    big = b'{"x": "' + "é".encode() * 3_000 + b'"}'  # 2-byte characters: the cut falls inside one
    binary = bytes(range(256)) * 20
    exchange = make_exchange(1, big)
    exchange.candidate = Response(200, [], Body.from_bytes(binary))
    with SegmentWriter(tmp_path, body_cap=1_000) as writer:
        writer.write(exchange)
    (record,) = iter_records(tmp_path)
    text_body, binary_body = record["primary"]["body"], record["candidate"]["body"]
    assert text_body["truncated"] is True and binary_body["truncated"] is True
    assert text_body["size"] == len(big) and binary_body["size"] == len(binary)
    assert text_body["sha256"] == hashlib.sha256(big).hexdigest()
    assert binary_body["sha256"] == hashlib.sha256(binary).hexdigest()
    # 7 bytes of prefix, then 2-byte characters: byte 1,000 is half a character, which goes.
    assert len(text_body["text"].encode()) == 999
    assert big.decode().startswith(text_body["text"])
    assert Body.from_dict(binary_body).raw == binary[:1_000]
    # The request body was small: untouched.
    assert "truncated" not in record["request"]["body"]


# ----------------------------------------------------------------------------------------- writer

SEGMENT_NAME = re.compile(r"^exchanges-\d{8}T\d{6}-\d+-\d{4}\.jsonl(\.gz)?$")


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_and_rotation_by_size(tmp_path, compress):
    originals = [make_exchange(i) for i in range(40)]
    originals[3].differences = [Difference("results[0].fee", Kind.CHANGED, 0.1, 0.2, "fee")]
    originals[4].candidate = Response(error="timeout after 2.0s")
    originals[5].secondary = Response(200, JSON, Body.from_bytes(b"\x00\xff"), 1.0)
    with SegmentWriter(tmp_path, compress=compress, max_bytes=2_500) as writer:
        for exchange in originals:
            writer.write(exchange)
    assert writer.written == 40
    assert len(writer.segments) > 3
    assert all(SEGMENT_NAME.match(p.name) for p in writer.segments)
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in writer.segments]
    if not compress:  # a segment grows past max_bytes only by a line that alone is bigger
        assert all(p.stat().st_size <= 2_500 for p in writer.segments)
    assert dicts(read_exchanges(tmp_path)) == dicts(originals)
    assert dicts(read_exchanges(writer.segments)) == dicts(originals)
    assert count_records(tmp_path) == 40


def test_rotation_by_age(tmp_path):
    with SegmentWriter(tmp_path, max_age_s=0.01) as writer:
        for i in range(3):
            writer.write(make_exchange(i))
            time.sleep(0.02)
    assert len(writer.segments) == 3
    assert [r["request"]["query"] for r in iter_records(tmp_path)] == [
        [["limit", str(i)]] for i in range(3)
    ]


def test_a_restart_starts_a_new_segment_and_never_appends(tmp_path):
    with SegmentWriter(tmp_path) as first:
        first.write(make_exchange(0))
    before = first.segments[0].read_bytes()
    with SegmentWriter(tmp_path) as second:
        second.write(make_exchange(1))
    assert first.segments[0].read_bytes() == before
    assert second.segments[0] != first.segments[0]
    assert len(list(tmp_path.iterdir())) == 2
    assert count_records(tmp_path) == 2


def test_each_line_is_on_disk_when_write_returns(tmp_path):
    for compress in (False, True):
        writer = SegmentWriter(tmp_path / str(compress), compress=compress)
        for i in range(3):
            writer.write(make_exchange(i))
            # Another reader sees it at once: nothing waits in a buffer.
            assert count_records(writer.segments[0]) == i + 1
        writer.close()


def test_writes_from_many_threads_all_land_whole(tmp_path):
    with SegmentWriter(tmp_path, max_bytes=20_000) as writer:
        def work(t: int) -> None:
            for i in range(100):
                writer.write(make_exchange(t * 1000 + i))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    stats = ReadStats()
    limits = sorted(int(r["request"]["query"][0][1]) for r in iter_records(tmp_path, stats=stats))
    assert limits == sorted(t * 1000 + i for t in range(8) for i in range(100))
    assert stats.skipped == 0


def test_a_failing_disk_raises_store_error_and_the_next_write_opens_a_new_segment(tmp_path):
    writer = SegmentWriter(tmp_path)
    writer.write(make_exchange(0))
    writer._file.close()
    writer._file = open("/dev/full", "wb")  # noqa: SIM115 - every write fails with ENOSPC
    with pytest.raises(StoreError, match=r"writing segment .* failed: .*No space left"):
        writer.write(make_exchange(1, b"x" * 100_000))
    writer.write(make_exchange(2))  # the disk has room again
    writer.close()
    assert len(writer.segments) == 2
    assert [r["request"]["query"][0][1] for r in iter_records(tmp_path)] == ["0", "2"]


def test_an_unwritable_directory_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot create recordings directory"):
        SegmentWriter(blocker / "recordings")


def test_writing_after_close_is_a_store_error(tmp_path):
    writer = SegmentWriter(tmp_path)
    writer.close()
    with pytest.raises(StoreError, match="after the writer was closed"):
        writer.write(make_exchange(0))


def test_odd_values_in_differences_are_written(tmp_path):
    from decimal import Decimal

    exchange = make_exchange(0)
    exchange.differences = [Difference("a", Kind.CHANGED, Decimal("1.10"), {1, 2}, "odd")]
    with SegmentWriter(tmp_path) as writer:
        writer.write(exchange)
    (record,) = iter_records(tmp_path)
    assert record["differences"][0]["primary"] == "1.10"
    assert sorted(record["differences"][0]["candidate"]) == [1, 2]


# ---------------------------------------------------------------------------------------- reader


def _member_ends(data: bytes) -> list[int]:
    """Where each gzip member (one line each) ends."""
    ends, offset = [], 0
    while offset < len(data):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        decoder.decompress(data[offset:])
        offset = len(data) - len(decoder.unused_data)
        ends.append(offset)
    return ends


@pytest.mark.parametrize("compress", [False, True])
def test_the_reader_survives_a_cut_at_every_byte_offset(tmp_path, compress, caplog):
    source = tmp_path / "src"
    with SegmentWriter(source, compress=compress) as writer:
        for i in range(3):
            writer.write(make_exchange(i))
    (segment,) = writer.segments
    data = segment.read_bytes()
    whole = dicts(read_exchanges(segment))
    assert len(whole) == 3
    if compress:
        ends = _member_ends(data)
    else:  # a line is whole once everything but its newline is there
        ends = [i for i, byte in enumerate(data) if byte == ord("\n")]
    assert len(ends) == 3
    cut = tmp_path / segment.name
    caplog.set_level(logging.WARNING, logger="parity.store")
    for offset in range(len(data) + 1):
        cut.write_bytes(data[:offset])
        stats = ReadStats()
        got = dicts(read_exchanges(cut, stats=stats))
        complete = sum(1 for end in ends if end <= offset)
        # Every completed line comes back, in order, and nothing but whole lines (a gzip member
        # whose line is whole but whose trailer is cut may still give it).
        assert got == whole[: len(got)], offset
        assert complete <= len(got) <= complete + 1, offset
        assert stats.corrupt == 0, offset
        assert count_records(cut) >= len(got)


def test_a_torn_last_line_warns_with_file_and_line(tmp_path, caplog):
    with SegmentWriter(tmp_path) as writer:
        for i in range(3):
            writer.write(make_exchange(i))
    (segment,) = writer.segments
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(lines[0] + lines[1] + lines[2][:40])
    stats = ReadStats()
    assert len(list(iter_records(tmp_path, stats=stats))) == 2
    assert f"{segment}:3: torn last line skipped" in caplog.text
    assert (stats.records, stats.torn, stats.corrupt) == (2, 1, 0)


def test_a_corrupt_middle_line_is_an_error_or_skipped_when_not_strict(tmp_path, caplog):
    with SegmentWriter(tmp_path) as writer:
        for i in range(3):
            writer.write(make_exchange(i))
    (segment,) = writer.segments
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(lines[0] + b'{"broken\n' + b"[1, 2]\n" + lines[1] + lines[2])
    with pytest.raises(UserError, match=r"^\S+:2: not a JSON line \(the recording is corrupt"):
        list(iter_records(tmp_path))
    stats = ReadStats()
    got = [r["request"]["query"][0][1] for r in iter_records(tmp_path, strict=False, stats=stats)]
    assert got == ["0", "1", "2"]
    assert f"{segment}:2: corrupt line skipped" in caplog.text
    assert f"{segment}:3: corrupt line skipped" in caplog.text
    assert stats.corrupt == 2 and stats.skipped == 2


def test_a_corrupt_gzip_member_is_an_error_or_skipped_when_not_strict(tmp_path, caplog):
    with SegmentWriter(tmp_path, compress=True) as writer:
        for i in range(4):
            writer.write(make_exchange(i))
    (segment,) = writer.segments
    data = bytearray(segment.read_bytes())
    ends = _member_ends(bytes(data))
    for position in range(ends[0] + 12, ends[1] - 10):  # the deflate data of the second member
        data[position] ^= 0x5A
    segment.write_bytes(bytes(data))
    with pytest.raises(UserError, match=":2: not a JSON line"):
        list(iter_records(segment))
    got = [r["request"]["query"][0][1] for r in iter_records(segment, strict=False)]
    assert got == ["0", "2", "3"]
    assert "corrupt line skipped" in caplog.text


def test_records_that_are_not_exchanges_are_skipped(tmp_path, caplog):
    path = tmp_path / "odd.jsonl"
    good = orjson.dumps(make_exchange(0).to_dict())
    path.write_bytes(b'{"id": "x"}\n' + good + b"\n")
    stats = ReadStats()
    assert len(list(read_exchanges(path, stats=stats))) == 1
    assert stats.not_exchanges == 1 and "record x is not an exchange" in caplog.text


def test_segments_are_read_in_the_order_they_were_opened(tmp_path):
    names = ["shadow-a-20240601T000000-999-0002.jsonl", "shadow-a-20240601T000000-1000-0001.jsonl",
             "shadow-a-20240601T000000-999-0010.jsonl", "replay-20240531T235959-5-0001.jsonl.gz"]
    for number, name in enumerate(names):
        line = orjson.dumps(make_exchange(number).to_dict()) + b"\n"
        (tmp_path / name).write_bytes(gzip.compress(line) if name.endswith(".gz") else line)
    (tmp_path / "notes.txt").write_text("not a segment")
    order = [r["request"]["query"][0][1] for r in iter_records(tmp_path)]
    assert order == ["3", "0", "2", "1"]  # by time, then pid and sequence as numbers


def test_missing_recordings_are_a_one_line_user_error(tmp_path):
    with pytest.raises(UserError, match=r"^recordings not found: .*nope") as info:
        list(iter_records([tmp_path, tmp_path / "nope"]))
    assert "\n" not in str(info.value)


def test_reading_100k_records_keeps_memory_flat(tmp_path):
    template = make_exchange(0).to_dict()
    path = tmp_path / "exchanges-20240601T000000-1-0001.jsonl"
    with path.open("wb") as handle:
        for i in range(100_000):
            template["id"] = f"{i:032x}"
            handle.write(orjson.dumps(template) + b"\n")
    size = path.stat().st_size
    assert count_records(path) == 100_000
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_records(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert peak < 1_000_000 < size / 50, (peak, size)


# ------------------------------------------------------------------------------------------- HAR


def har_exchanges() -> list[Exchange]:
    originals = [make_exchange(i) for i in range(5)]
    originals[0].request = Request(
        "POST", "/api/v1/backtest/run", query=[("a b", "c&d"), ("e", "")],
        headers=[("host", "cryptobot:8000"), ("content-type", "application/json")],
        body=Body.from_bytes(b'{"strategy": "sma"}'),
    )
    originals[1].candidate = Response(error="timeout after 2s")
    originals[1].verdict = Verdict.CANDIDATE_ERROR
    originals[1].reason = "timeout after 2s"
    originals[2].secondary = Response(200, JSON, Body.from_bytes(bytes(range(256))), None)
    originals[2].differences = [
        Difference("candles[0][1]", Kind.CHANGED, 1.5, 1.25, "differs", noise=True)]
    originals[3].primary.body = Body.from_bytes(b'{"x": "' + b"y" * 500 + b'"}', cap=100)
    originals[3].primary.body.decode_error = "broken gzip body: oops"
    originals[4].request.body = Body.from_bytes(b"")
    originals[4].primary = Response(204, [], Body(), 0.0)
    originals[4].candidate = None
    originals[4].session = "10.0.0.1:5555"
    return originals


def test_har_export_and_import_round_trip(tmp_path):
    originals = har_exchanges()
    path = tmp_path / "out.har"
    assert export_har(iter(originals), path) == 5
    document = orjson.loads(path.read_bytes())
    entries = document["log"]["entries"]
    assert document["log"]["version"] == "1.2" and len(entries) == 5
    for entry in entries:  # the fields HAR 1.2 requires, for other tools
        assert {"startedDateTime", "time", "request", "response", "cache", "timings"} <= set(entry)
        assert {"method", "url", "httpVersion", "headers", "queryString", "cookies",
                "headersSize", "bodySize"} <= set(entry["request"])
        assert {"status", "statusText", "content", "redirectURL"} <= set(entry["response"])
    assert entries[0]["request"]["url"] == "http://cryptobot:8000/api/v1/backtest/run?a%20b=c%26d&e="
    assert entries[0]["_candidate"]["status"] == 200
    assert entries[2]["_secondary"]["content"]["encoding"] == "base64"
    assert dicts(import_har(path)) == dicts(originals)
    assert not list(tmp_path.glob("*.partial"))


def test_har_export_is_redacted(tmp_path):
    exchange = make_exchange(0)
    exchange.request.headers.append(("Authorization", "Bearer sup3r-s3cret-t0ken"))
    path = tmp_path / "out.har"
    export_har([exchange], path)
    assert b"sup3r-s3cret-t0ken" not in path.read_bytes()
    (back,) = import_har(path)
    assert back.request.headers[-1][1].startswith("Bearer redacted:sha256:")


def test_a_browser_har_imports_as_primary_only_exchanges(tmp_path):
    path = tmp_path / "browser.har"
    entries = [
        {"startedDateTime": "2024-06-01T00:00:00.250Z", "time": 12.5,
         "request": {"method": "GET", "url": "https://x/api/v1/data/ohlcv/a/b/1h?limit=2&s=a%20b",
                     "headers": [{"name": ":authority", "value": "x"},
                                 {"name": "accept", "value": "*/*"}]},
         "response": {"status": 200, "headers": [{"name": "content-type", "value": "x"}],
                      "content": {"size": 2, "text": "[]"}}},
        {"startedDateTime": "2024-06-01T00:00:01Z", "time": 3,
         "request": {"method": "POST", "url": "https://x/auth/login", "headers": [],
                     "postData": {"mimeType": "application/x-www-form-urlencoded",
                                  "params": [{"name": "username", "value": "demo"}]}},
         "response": {"status": 200, "headers": [],
                      "content": {"size": 3, "text": "AAEC", "encoding": "base64"}}},
        {"startedDateTime": "2024-06-01T00:00:02Z", "time": 0,
         "request": {"method": "GET", "url": "data:image/png;base64,AAAA", "headers": []},
         "response": {"status": 200, "headers": [], "content": {"size": 0}}},
    ]
    path.write_bytes(orjson.dumps({"log": {"version": "1.2", "entries": entries}}))
    first, second = import_har(path)
    assert first.request.path == "/api/v1/data/ohlcv/a/b/1h"
    assert first.request.query == [("limit", "2"), ("s", "a b")]
    assert first.request.headers == [("accept", "*/*")]
    assert first.primary.body.text == "[]" and first.primary.latency_ms == 12.5
    assert first.candidate is None and first.secondary is None
    assert first.ts == pytest.approx(1717200000.25)
    assert second.request.body.text == "username=demo"
    assert second.primary.body.raw == b"\x00\x01\x02"


@pytest.mark.parametrize("content", ["{not json", '{"log": {}}', '{"log": {"entries": 3}}'])
def test_a_bad_har_is_a_user_error(tmp_path, content):
    path = tmp_path / "bad.har"
    path.write_text(content)
    with pytest.raises(UserError, match="not a readable HAR"):
        list(import_har(path))


# ------------------------------------------------------------------------------------ flow files


def _write_flows(path, flows) -> None:
    from mitmproxy import io

    with path.open("wb") as handle:
        writer = io.FlowWriter(handle)
        for flow in flows:
            writer.add(flow)


def test_a_mitmdump_flow_file_imports(tmp_path):
    from mitmproxy.test import tflow, tutils

    plain = tflow.tflow(resp=True)
    compressed = tflow.tflow(
        req=tutils.treq(path=b"/api/v1/data/ohlcv/binance/BTC-USDT/1h?limit=5&tz=UTC"),
        resp=tutils.tresp(content=b""),
    )
    compressed.response.headers["content-encoding"] = "gzip"
    compressed.response.raw_content = gzip.compress(b'{"candles": []}')
    failed = tflow.tflow(err=True)
    path = tmp_path / "flows.mitm"
    _write_flows(path, [plain, compressed, failed, tflow.ttcpflow()])

    first, second, third = import_flows(path)  # the TCP flow is skipped
    assert first.request.method == plain.request.method
    assert first.request.path == plain.request.path
    assert first.request.body.raw == plain.request.raw_content
    assert first.primary.status == 200
    assert first.primary.body.raw == plain.response.content
    assert ("header-response", "svalue") in first.primary.headers
    assert first.primary.latency_ms is not None and first.candidate is None
    assert second.request.path == "/api/v1/data/ohlcv/binance/BTC-USDT/1h"
    assert second.request.query == [("limit", "5"), ("tz", "UTC")]
    assert second.primary.body.text == '{"candles": []}'
    assert third.primary.status == 0 and third.primary.error == failed.error.msg


def test_a_flow_file_cut_short_gives_the_flows_before_the_cut(tmp_path, caplog):
    from mitmproxy.test import tflow

    path = tmp_path / "flows.mitm"
    _write_flows(path, [tflow.tflow(resp=True) for _ in range(3)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    assert len(list(import_flows(path))) == 2
    assert "cut short after 2 flows" in caplog.text


def test_a_file_that_is_not_a_flow_file_is_a_user_error(tmp_path):
    path = tmp_path / "flows.mitm"
    path.write_text("hello, I am not a flow file")
    with pytest.raises(UserError, match="not a readable mitmproxy flow file"):
        list(import_flows(path))
    with pytest.raises(UserError, match="cannot open flow file"):
        list(import_flows(tmp_path / "missing.mitm"))
