"""What `parity data` reports: per table its state and counts, a sample of differing rows (with
column differences formatted like the comparators' findings), per group a gate, and the cost."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from harness.judge.gate import GateResult, evaluate_data_state
from harness.model import Difference

SAMPLE_PER_KIND = 10
ROW_KINDS = ("missing", "extra", "differing", "in-flight")


def plain(value: Any) -> Any:
    """A database value as JSON can hold it."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


@dataclass(slots=True)
class RowFinding:
    """One row that is missing, extra, differing, or still changing ("in flight")."""

    kind: str
    key: dict[str, Any]
    differences: list[Difference] = field(default_factory=list)

    def line(self, table: str, target: str) -> str:
        """One line a person reads."""
        key = ", ".join(f"{k}={plain(v)}" for k, v in self.key.items())
        if self.kind == "missing":
            return f"{table} [{key}] missing on the {target}"
        if self.kind == "extra":
            return f"{table} [{key}] extra on the {target}"
        what = "; ".join(d.message for d in self.differences[:3]) or "differs"
        prefix = "in flight: " if self.kind == "in-flight" else ""
        return f"{prefix}{table} [{key}] {what}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        differences = []
        for d in self.differences:
            entry = d.to_dict()
            entry["primary"], entry["candidate"] = plain(d.primary), plain(d.candidate)
            differences.append(entry)
        return {"kind": self.kind, "key": {k: plain(v) for k, v in self.key.items()},
                "differences": differences}


@dataclass(slots=True)
class TableState:
    """The comparison of one table."""

    table: str
    group: str
    target: str = "candidate"  # the side rows are missing on / extra on
    status: str = "same"  # same | differs | incomparable | absent
    reasons: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # side -> row count
    counts: Counter[str] = field(default_factory=Counter)
    columns: Counter[str] = field(default_factory=Counter)  # differing column -> rows
    samples: list[RowFinding] = field(default_factory=list)
    queries: int = 0
    rows_fetched: int = 0
    seconds: float = 0.0

    def add(self, finding: RowFinding) -> None:
        """Count a row finding; keep the first few of each kind."""
        self.counts[finding.kind] += 1
        for difference in finding.differences:
            self.columns[difference.path.rpartition(".")[2]] += 1
        if finding.kind != "in-flight" and self.status == "same":
            self.status = "differs"
        if sum(1 for s in self.samples if s.kind == finding.kind) < SAMPLE_PER_KIND:
            self.samples.append(finding)

    def problem(self, kind: str, reason: str) -> None:
        """A table-level finding: `schema` (table or column on one side only) or
        `incomparable` (cannot be compared: the reason says why)."""
        self.counts[kind] += 1
        self.reasons.append(reason)
        self.status = "incomparable" if kind == "incomparable" else (
            "differs" if self.status != "incomparable" else self.status)

    def lines(self) -> list[str]:
        """The sample as lines."""
        return [s.line(self.table, self.target) for s in self.samples]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "table": self.table, "group": self.group, "status": self.status,
            "reasons": self.reasons, "rows": self.rows,
            "counts": {k: self.counts.get(k, 0) for k in (*ROW_KINDS, "schema", "incomparable")},
            "columns": dict(self.columns.most_common()),
            "samples": [s.to_dict() for s in self.samples], "queries": self.queries,
            "rows_fetched": self.rows_fetched, "seconds": round(self.seconds, 3),
        }


@dataclass(slots=True)
class DataStateResult:
    """Everything one `parity data` run found."""

    primary: str  # URLs without passwords
    candidate: str
    reverse: bool
    since: str
    tables: list[TableState] = field(default_factory=list)
    seconds: float = 0.0
    queries: int = 0
    rows_fetched: int = 0

    def group_counts(self) -> dict[str, Counter[str]]:
        """Per migration group: tables compared and findings by kind."""
        groups: dict[str, Counter[str]] = {}
        for state in self.tables:
            counts = groups.setdefault(state.group, Counter())
            if state.status != "absent":
                counts["tables"] += 1
            counts.update(state.counts)
        return groups

    def gates(self) -> dict[str, GateResult]:
        """Per migration group, the data-state gate."""
        out = {}
        for group, counts in self.group_counts().items():
            examples = tuple(line if len(line) <= 160 else line[:157] + "..."
                             for state in self.tables if state.group == group
                             for line in (state.reasons + state.lines())[:1])
            out[group] = evaluate_data_state(dict(counts), examples[:2])
        return out

    @property
    def differs(self) -> bool:
        """Whether any group's data are not ready (exit 1)."""
        return any(g.status == "not ready" for g in self.gates().values())

    def to_dict(self) -> dict[str, Any]:
        """The `--json` document (also what the report's Data state section reads)."""
        counts = self.group_counts()
        return {
            "primary": self.primary, "candidate": self.candidate,
            "direction": "candidate → primary" if self.reverse else "primary → candidate",
            "since": self.since, "verdict": "differs" if self.differs else "same",
            "groups": {group: {"status": gate.status, "reasons": list(gate.reasons),
                               "counts": dict(counts[group])}
                       for group, gate in self.gates().items()},
            "tables": [state.to_dict() for state in self.tables],
            "seconds": round(self.seconds, 3), "queries": self.queries,
            "rows_fetched": self.rows_fetched,
        }


def groups_whose_data_differ(data_state: Mapping[str, Any]) -> list[str]:
    """The groups a `DataStateResult.to_dict()` document finds not ready (their data differ, as
    `DataStateResult.differs` says): they block cutover whatever their answers say."""
    return [group for group, gate in (data_state.get("groups") or {}).items()
            if gate.get("status") == "not ready"]
