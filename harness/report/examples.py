"""Example exchanges made ready to read: the request line, both answers pretty-printed with the
differing lines marked, the differences, equity curves and order intents.

A view is made when the aggregator keeps an example, so only the view stays in memory, never
the recorded bodies (up to 1 MiB each). Its bodies are fitted to the report's character budget
when the report is rendered (`ExampleView.fit`). Everything shown passes through the store's
`redact_text` when it is available (secrets are already redacted when recorded; this is a second
net).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlencode

import orjson

from harness.report.charts import CURVE_KEYS, Chart, charts
from harness.report.intents import IntentTable, intent_table
from harness.report.pretty import Line, compact, json_lines, shown_path, window

BODY_CAP = 20_000  # characters shown per body at most
PARSE_LIMIT = 1 << 20  # bodies longer than this are shown as text, not parsed
VALUE_CHARS = 300  # a difference's values are cut at this length


@cache
def _redactor() -> Callable[[str], str]:
    """The store's redaction of text (imported when first needed: its key is read then)."""
    from harness.store.redact import redact_text

    return redact_text


@dataclass(slots=True)
class BodyView:
    """A body ready to show: JSON lines with marks, or plain text, or a note about bytes.
    `lines`/`text` hold what is shown once `fit` has cut them to the budget."""

    kind: str  # json | text | bytes | empty
    all_lines: list[Line] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    text: str = ""
    note: str = ""  # "recorded body cut at capture", "binary, 512 bytes", decode error...
    size: int = 0  # characters of the whole body text

    def fit(self, cap: int, redact: Callable[[str], str]) -> None:
        """Cut the shown part to `cap` characters (around the marked lines) and redact it."""
        if self.kind == "json":
            shown, cut = window(self.all_lines, cap)
            self.lines = [_redact_line(line, redact) for line in shown]
            if cut and "in context" not in self.note:
                self.note = _join(self.note, f"differing lines in context, of {_size(self.size)}")
        elif self.kind == "text":
            if len(self.text) > cap:
                self.note = _join(self.note, f"first {_size(cap)} of {_size(self.size)}")
                # Redact a little more than is shown, so no secret is cut in two before it.
                self.text = redact(self.text[: cap + 256])[:cap]
            else:
                self.text = redact(self.text)


def _redact_line(line: Line, redact: Callable[[str], str]) -> Line:
    whole = line.label + line.text
    clean = redact(whole)
    if clean == whole:
        return line
    return Line(line.depth, "", clean, line.mark)


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


@dataclass(slots=True)
class SideView:
    """One environment's answer."""

    name: str
    status: int | None
    latency_ms: float | None
    error: str | None
    headers: list[tuple[str, str]]
    body: BodyView
    marked_headers: set[str]
    status_differs: bool


@dataclass(slots=True)
class DiffRow:
    """One difference as a table row."""

    path: str
    kind: str
    severity: str
    noise: bool
    primary: str
    candidate: str
    message: str


@dataclass(slots=True)
class ExampleView:
    """One example exchange, ready for the template."""

    id: str
    verdict: str
    reason: str
    group: str
    route: str
    request_line: str
    mirror: str
    request_body: BodyView
    primary: SideView
    candidate: SideView | None
    differences: list[DiffRow]
    charts: list[Chart]
    intent: IntentTable | None
    summary: dict[str, Any]  # what the JSON summary says of this example

    def fit(self, cap: int, redact: Callable[[str], str] | None = None) -> ExampleView:
        """Cut every body to `cap` characters; returns self."""
        redact = redact or _redactor()
        self.request_body.fit(cap, redact)
        self.primary.body.fit(cap, redact)
        if self.candidate:
            self.candidate.body.fit(cap, redact)
        return self


class ExampleMaker:
    """Turns example records into views."""

    def __init__(self) -> None:
        self.redact = _redactor()

    def view(self, record: dict[str, Any]) -> ExampleView:
        """The view of one recorded exchange (bodies not yet fitted: see `ExampleView.fit`)."""
        diffs = record.get("differences") or []
        marks: dict[str, str] = {}
        for diff in diffs:
            path = str(diff.get("path", ""))
            if not diff.get("noise") or path not in marks:
                marks[path] = "noise" if diff.get("noise") else "diff"
        request = record.get("request") or {}
        primary, primary_body = self.side("primary", record.get("primary"), marks)
        candidate_record = record.get("candidate")
        candidate, candidate_body = (
            self.side("candidate", candidate_record, marks) if candidate_record else (None, None)
        )
        request_body, request_parsed = self.body(request.get("body"), {})
        rows = [self.diff_row(d) for d in _real_first(diffs)]
        summary = self.summary(record)
        verdict, reason, request_line = summary["verdict"], summary["reason"], summary["request"]
        has_curves = candidate is not None and _mentions_curve(record)
        return ExampleView(
            id=str(record.get("id", "")),
            verdict=verdict,
            reason=reason or "",
            group=str(record.get("group") or ""),
            route=str(record.get("route") or ""),
            request_line=request_line,
            mirror=str(record.get("mirror") or ""),
            request_body=request_body,
            primary=primary,
            candidate=candidate,
            differences=rows,
            charts=charts(primary_body, candidate_body) if has_curves else [],
            intent=intent_table(request_parsed, primary_body, candidate_body),
            summary=summary,
        )

    def summary(self, record: dict[str, Any]) -> dict[str, Any]:
        """What the JSON summary says of an example: id, verdict, request line, differences."""
        redact = self.redact
        reason = record.get("reason")
        return {
            "id": record.get("id"),
            "verdict": str(record.get("verdict") or "unjudged"),
            "reason": redact(str(reason)) if reason else None,
            "request": redact(_request_line(record.get("request") or {})),
            "differences": [
                {
                    "path": shown_path(d.get("path")),
                    "kind": str(d.get("kind", "")),
                    "severity": str(d.get("severity", "")),
                    "message": redact(str(d.get("message", ""))),
                }
                for d in (record.get("differences") or [])
                if not d.get("noise")
            ][:10],
        }

    def side(
        self, name: str, response: dict[str, Any] | None, marks: dict[str, str]
    ) -> tuple[SideView, Any]:
        """One answer with the lines at the differing paths marked, and its parsed body."""
        response = response or {}
        headers = [(str(k), self.redact(str(v))) for k, v in (response.get("headers") or [])[:60]]
        marked = {p.removeprefix("@headers.") for p in marks if p.startswith("@headers.")}
        body, parsed = self.body(response.get("body"), marks)
        view = SideView(
            name=name,
            status=response.get("status"),
            latency_ms=response.get("latency_ms"),
            error=self.redact(str(response["error"])) if response.get("error") else None,
            headers=headers,
            body=body,
            marked_headers=marked,
            status_differs="@status" in marks,
        )
        return view, parsed

    def body(self, body: dict[str, Any] | None, marks: dict[str, str]) -> tuple[BodyView, Any]:
        """A recorded body made readable (JSON printed around its differences, text kept up to
        the largest cap), and the parsed JSON (None when not JSON)."""
        body = body or {}
        size = int(body.get("size") or 0)
        notes = []
        if body.get("truncated"):
            notes.append(f"recorded body cut at capture ({_size(size)} in all)")
        if body.get("decode_error"):
            notes.append(f"content-encoding not undone: {body['decode_error']}")
        text = body.get("text")
        if text is None and body.get("b64"):
            raw = base64.b64decode(body["b64"])
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                digest = str(body.get("sha256", ""))[:16]
                notes.append(f"binary, {_size(size or len(raw))}, sha256 {digest}")
                return BodyView("bytes", note=_join(*notes)), None
        if not text:
            return BodyView("empty", note=_join(*notes) or "empty body"), None
        parsed = _parse(text)
        if parsed is not _NOT_JSON:
            lines = json_lines(parsed, marks)
            view = BodyView("json", all_lines=lines, note=_join(*notes), size=len(text))
            return view, parsed
        view = BodyView("text", text=text[: BODY_CAP + 256], note=_join(*notes), size=len(text))
        return view, None

    def diff_row(self, diff: dict[str, Any]) -> DiffRow:
        """One difference with its values shown compactly."""
        return DiffRow(
            path=shown_path(diff.get("path")),
            kind=str(diff.get("kind", "")),
            severity=str(diff.get("severity", "")),
            noise=bool(diff.get("noise")),
            primary=self.redact(compact(diff.get("primary"), VALUE_CHARS)),
            candidate=self.redact(compact(diff.get("candidate"), VALUE_CHARS)),
            message=self.redact(str(diff.get("message", ""))),
        )


_NOT_JSON = object()
KEPT_FIELDS = (
    "id",
    "verdict",
    "reason",
    "group",
    "route",
    "mirror",
    "differences",
    "request",
    "primary",
    "candidate",
)
LAZY_BUDGET = 32 * 1024 * 1024  # body characters held by examples not yet made into views


@dataclass(slots=True)
class Kept:
    """An example as the aggregator keeps it: the slim record while the memory budget allows,
    else (and once rendered) its view. `summary` is always there, for the JSON summary."""

    summary: dict[str, Any]
    record: dict[str, Any] | None = None
    view: ExampleView | None = None
    size: int = 0


class Keeper:
    """Keeps example exchanges in bounded memory: records are held as they are (their bodies
    shared, not copied) up to `budget` characters of body; past that, an example is turned into
    its view at once, which holds at most a few thousand lines whatever the body size."""

    def __init__(self, budget: int = LAZY_BUDGET) -> None:
        self.maker = ExampleMaker()
        self.budget = budget
        self.used = 0

    def keep(self, record: dict[str, Any]) -> Kept:
        """Keep one example."""
        summary = self.maker.summary(record)
        size = _body_chars(record)
        if self.used + size <= self.budget:
            self.used += size
            return Kept(summary, record={k: record.get(k) for k in KEPT_FIELDS}, size=size)
        return Kept(summary, view=self.maker.view(record))

    def drop(self, kept: Kept) -> None:
        """An example was replaced: give back its share of the budget."""
        if kept.record is not None:
            self.used -= kept.size
            kept.record = None

    def view(self, kept: Kept) -> ExampleView:
        """The example's view, made now if it was not yet."""
        if kept.view is None:
            assert kept.record is not None, "a dropped example has no view"
            kept.view = self.maker.view(kept.record)
            self.drop(kept)
        return kept.view


def _body_chars(record: dict[str, Any]) -> int:
    total = 0
    for side in (record.get("request"), record.get("primary"), record.get("candidate")):
        body = (side or {}).get("body") or {}
        total += len(body.get("text") or "") + len(body.get("b64") or "")
    return total


def _mentions_curve(record: dict[str, Any]) -> bool:
    """Cheap test before walking the parsed answers for equity curves."""
    for side in ("primary", "candidate"):
        text = (((record.get(side) or {}).get("body")) or {}).get("text") or ""
        if not any(name in text for name in CURVE_KEYS):
            return False
    return True


def _parse(text: str) -> Any:
    start = text.lstrip()[:1]
    if start not in ("{", "[") or len(text) > PARSE_LIMIT:
        return _NOT_JSON
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _real_first(diffs: list[dict[str, Any]], limit: int = 40) -> list[dict[str, Any]]:
    real = [d for d in diffs if not d.get("noise")]
    noise = [d for d in diffs if d.get("noise")]
    return (real + noise)[:limit]


def _request_line(request: dict[str, Any]) -> str:
    line = f"{request.get('method', '?')} {request.get('path', '?')}"
    query = request.get("query") or []
    if query:
        line += "?" + urlencode([(str(k), str(v)) for k, v in query], safe="/:,")
    return line


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"
