"""The exchange record: one request, the primary's answer, the candidate's (and secondary's) answer,
their timings, and the verdict the comparators gave.

Vocabulary (used the same way in code, CLI, report and README):

- *primary*: production (Docker); *candidate*: the native environment under test; *secondary*: a
  second Docker copy, used only to learn what is noise.
- *exchange*: one mirrored or replayed request with all its answers.
- *difference*: one path at which two answers disagree; *noise*: a difference the secondary shows
  too, so it cannot be blamed on the migration.
- *verdict*: what the exchange says about parity.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

RECORD_VERSION = 1
# Methods that do not change state (RFC 9110 §9.2.1): mirrored without a route's say-so.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Verdict(StrEnum):
    """What one exchange says about parity."""

    MATCH = "match"
    MISMATCH = "mismatch"
    NOISE_ONLY = "noise-only"  # every difference is explained by noise
    UNTESTABLE = "untestable"  # the two Docker copies disagree on non-volatile content
    INCOMPARABLE = "incomparable"  # bodies could not be parsed or compared; see `reason`
    CANDIDATE_ERROR = "candidate-error"  # timeout, refused, reset...
    SKIPPED = "skipped"  # not mirrored by policy

    @property
    def is_failure(self) -> bool:
        """True for verdicts that count against a gate by themselves."""
        return self in (Verdict.MISMATCH, Verdict.CANDIDATE_ERROR, Verdict.INCOMPARABLE)


class Kind(StrEnum):
    """The shape of a difference."""

    CHANGED = "changed"  # same type, other value
    TYPE = "type"  # 1 vs "1"
    MISSING = "missing"  # in the primary's answer, not in the candidate's
    EXTRA = "extra"  # in the candidate's answer, not in the primary's
    ORDER = "order"  # same items, another order
    LENGTH = "length"


class Severity(StrEnum):
    """How much a difference matters for cutover."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(slots=True)
class Difference:
    """One place where the candidate's answer differs from the primary's.

    `path` is a body path like ``results.metrics.sharpe_ratio`` or ``items[3].id``; the status code
    is ``@status`` and headers are ``@headers.<lower-case name>``.
    """

    path: str
    kind: Kind
    primary: Any
    candidate: Any
    message: str
    severity: Severity = Severity.WARNING
    noise: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": str(self.kind),
            "primary": self.primary,
            "candidate": self.candidate,
            "severity": str(self.severity),
            "message": self.message,
            "noise": self.noise,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Difference:
        return cls(
            path=data["path"],
            kind=Kind(data["kind"]),
            primary=data.get("primary"),
            candidate=data.get("candidate"),
            message=data.get("message", ""),
            severity=Severity(data.get("severity", "warning")),
            noise=bool(data.get("noise", False)),
        )


@dataclass(slots=True)
class Body:
    """A message body as recorded: decoded from its Content-Encoding, kept as text when it is UTF-8
    and as base64 otherwise, cut at a size cap (the full length and sha256 are kept)."""

    text: str | None = None
    b64: str | None = None
    size: int = 0
    sha256: str = ""
    truncated: bool = False
    # Set when the Content-Encoding could not be undone; the raw bytes are kept.
    decode_error: str | None = None

    @classmethod
    def from_bytes(cls, raw: bytes, *, cap: int | None = None) -> Body:
        """Build a body from decoded bytes, keeping at most `cap` bytes of it."""
        digest = hashlib.sha256(raw).hexdigest() if raw else ""
        kept = raw if cap is None or len(raw) <= cap else raw[:cap]
        body = cls(size=len(raw), sha256=digest, truncated=len(kept) < len(raw))
        try:
            body.text = kept.decode("utf-8")
        except UnicodeDecodeError:
            body.b64 = base64.b64encode(kept).decode("ascii")
        return body

    @property
    def raw(self) -> bytes:
        """The kept bytes (all of them unless `truncated`)."""
        if self.text is not None:
            return self.text.encode("utf-8")
        if self.b64 is not None:
            return base64.b64decode(self.b64)
        return b""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"size": self.size}
        if self.text is not None:
            data["text"] = self.text
        if self.b64 is not None:
            data["b64"] = self.b64
        if self.sha256:
            data["sha256"] = self.sha256
        if self.truncated:
            data["truncated"] = True
        if self.decode_error:
            data["decode_error"] = self.decode_error
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Body:
        data = data or {}
        return cls(
            text=data.get("text"),
            b64=data.get("b64"),
            size=int(data.get("size", 0)),
            sha256=data.get("sha256", ""),
            truncated=bool(data.get("truncated", False)),
            decode_error=data.get("decode_error"),
        )


Headers = list[tuple[str, str]]


def header(headers: Headers, name: str, default: str | None = None) -> str | None:
    """First value of header `name` (case-insensitive)."""
    lname = name.lower()
    for key, value in headers:
        if key.lower() == lname:
            return value
    return default


@dataclass(slots=True)
class Request:
    """The client's request. `path` excludes the query string, which is kept apart in `query`."""

    method: str
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: Headers = field(default_factory=list)
    body: Body = field(default_factory=Body)
    # The query string exactly as the client sent it, while `query` is unchanged (live mirrors
    # send these bytes); never recorded, as it may hold secrets. Whoever changes `query` drops it.
    raw_query: str | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": [list(kv) for kv in self.query],
            "headers": [list(kv) for kv in self.headers],
            "body": self.body.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Request:
        return cls(
            method=data["method"],
            path=data["path"],
            query=[(k, v) for k, v in data.get("query", [])],
            headers=[(k, v) for k, v in data.get("headers", [])],
            body=Body.from_dict(data.get("body")),
        )


@dataclass(slots=True)
class Response:
    """One environment's answer, or the error that stood in for it (then `status` is 0)."""

    status: int = 0
    headers: Headers = field(default_factory=list)
    body: Body = field(default_factory=Body)
    latency_ms: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status,
            "headers": [list(kv) for kv in self.headers],
            "body": self.body.to_dict(),
            "latency_ms": self.latency_ms,
        }
        if self.error:
            data["error"] = self.error
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Response | None:
        if data is None:
            return None
        return cls(
            status=int(data.get("status", 0)),
            headers=[(k, v) for k, v in data.get("headers", [])],
            body=Body.from_dict(data.get("body")),
            latency_ms=data.get("latency_ms"),
            error=data.get("error"),
        )


@dataclass(slots=True)
class Exchange:
    """One request with the answers of primary, candidate and (optionally) secondary, and the
    verdict the comparators gave. This is the line format of the recordings store."""

    request: Request
    primary: Response
    candidate: Response | None = None
    secondary: Response | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ts: float = field(default_factory=time.time)
    route: str = ""  # "GET /api/backtest/results/{id}"
    group: str = ""  # migration group: data, backtest, strategy, auth, trade, mcp
    comparator: str = ""
    mirror: str = "mirrored"  # mirrored | dry-run | skipped:<reason>
    verdict: Verdict | None = None
    reason: str | None = None  # why incomparable / candidate-error / skipped / untestable
    differences: list[Difference] = field(default_factory=list)
    session: str | None = None  # credential fingerprint: requests of one session keep their order

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": RECORD_VERSION,
            "id": self.id,
            "ts": self.ts,
            "route": self.route,
            "group": self.group,
            "comparator": self.comparator,
            "mirror": self.mirror,
            "session": self.session,
            "verdict": str(self.verdict) if self.verdict else None,
            "reason": self.reason,
            "differences": [d.to_dict() for d in self.differences],
            "request": self.request.to_dict(),
            "primary": self.primary.to_dict(),
            "candidate": self.candidate.to_dict() if self.candidate else None,
            "secondary": self.secondary.to_dict() if self.secondary else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Exchange:
        verdict = data.get("verdict")
        return cls(
            request=Request.from_dict(data["request"]),
            primary=Response.from_dict(data["primary"]) or Response(),
            candidate=Response.from_dict(data.get("candidate")),
            secondary=Response.from_dict(data.get("secondary")),
            id=data.get("id") or uuid.uuid4().hex,
            ts=float(data.get("ts", 0.0)),
            route=data.get("route", ""),
            group=data.get("group", ""),
            comparator=data.get("comparator", ""),
            mirror=data.get("mirror", "mirrored"),
            verdict=Verdict(verdict) if verdict else None,
            reason=data.get("reason"),
            differences=[Difference.from_dict(d) for d in data.get("differences", [])],
            session=data.get("session"),
        )
