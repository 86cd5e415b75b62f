"""The recordings store: bodies off the wire, redaction before disk, crash-safe append-only JSONL
segments, a streaming reader, and HAR / mitmproxy flow-file conversions."""

from harness.store.bodies import body_from_wire, decode_content
from harness.store.flowfile import import_flows
from harness.store.har import export_har, import_har
from harness.store.reader import (
    ReadStats,
    count_records,
    iter_records,
    read_exchanges,
    segment_files,
)
from harness.store.redact import fingerprint, redact_exchange, redact_text
from harness.store.writer import SegmentWriter, StoreError

__all__ = [
    "ReadStats",
    "SegmentWriter",
    "StoreError",
    "body_from_wire",
    "count_records",
    "decode_content",
    "export_har",
    "fingerprint",
    "import_flows",
    "import_har",
    "iter_records",
    "read_exchanges",
    "redact_exchange",
    "redact_text",
    "segment_files",
]
