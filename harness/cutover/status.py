"""The cutover's status as a person reads it (`parity cutover status`, `parity demo --cutover`)."""

from __future__ import annotations

from typing import Any


def clock(seconds: float | None) -> str:
    """'3d 4h', '2h 5m', '1m 3s', '12s'; '-' for None."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def status_lines(status: dict[str, Any]) -> list[str]:
    """The status as a table, one group per line, and the last rollback's reason."""
    lines = [f"{'group':<10} {'share':>6}  {'moved':>11}  {'clean clock':>11}  last rollback"]
    for name, group in status["groups"].items():
        share = f"{group['share']:g} %" + ("+" if group["adopters"] and not group["share"]
                                           else "")
        moved = f"{group['moved_identities']}/{group['seen_identities']}"
        last = group.get("last_rollback")
        when = "-" if not last else (
            f"{clock(status['now'] - last['at'])} ago"
            f"{' (automatic)' if last.get('automatic') else ''}: {last['reason']}")
        lines.append(f"{name:<10} {share:>6}  {moved:>11}  {clock(group['clean_clock_s']):>11}"
                     f"  {when}")
    lines.append(f"rollbacks: {status['rollbacks']}; early adopters: "
                 f"{len(status['early_adopters'])}; state: {status['state_file']}")
    return lines
