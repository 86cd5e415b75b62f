"""`parity data` on the terminal: per group its gate, per table its counts and sample rows."""

from __future__ import annotations

from typing import TextIO

from harness.datastate.findings import DataStateResult


def print_result(result: DataStateResult, out: TextIO) -> None:
    """Print what the run found, as plain lines (greppable, no colour)."""
    direction = "candidate → primary" if result.reverse else "primary → candidate"
    out.write(f"data state {direction}: {result.primary} vs {result.candidate}\n")
    for group, gate in result.gates().items():
        reason = f"  {gate.reasons[0]}" if gate.reasons else ""
        out.write(f"{group:<9} {gate.status.upper():<10}{reason}\n")
    for state in result.tables:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(state.counts.items()) if n)
        rows = " / ".join(f"{n}" for n in state.rows.values()) or "-"
        out.write(f"  {state.table} ({state.group}): {state.status}; rows {rows}"
                  + (f"; {counts}" if counts else "") + "\n")
        for line in [*state.reasons, *state.lines()][:12]:
            out.write(f"    {line}\n")
    out.write(f"{result.queries} queries, {result.rows_fetched} rows fetched, "
              f"{result.seconds:.2f} s\n")
