"""The recordings store: redacted, crash-safe, append-only JSONL segments, and conversions."""

from harness.store.bodies import body_from_wire, decode_content
from harness.store.reader import count_records, iter_records, read_exchanges, segment_files
from harness.store.redact import fingerprint, redact_exchange, redact_text
from harness.store.writer import SegmentWriter, StoreError

__all__ = [
    "SegmentWriter",
    "StoreError",
    "body_from_wire",
    "count_records",
    "decode_content",
    "fingerprint",
    "iter_records",
    "read_exchanges",
    "redact_exchange",
    "redact_text",
    "segment_files",
]
