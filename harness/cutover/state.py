"""The cutover state: per migration group the share of identities the candidate serves, whether
the early adopters are moved, the clean clock's marks and the last rollback; the hash key; the
early adopters; the event history. Every change is written to disk before it takes effect
(write, fsync, rename), so a restarted proxy routes every identity exactly as before.

A group's ramp only goes up (`advance`); `rollback` drops it to 0 % at once and remembers where
it was, `resume` goes back there. The routing decision (`moves`) is a comparison of the
identity's keyed position with the share: raising the share only ever adds identities.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from harness.cutover.identity import position
from harness.files import write_atomically
from harness.routes import GROUPS

VERSION = 1
MAX_HISTORY = 1000
STATE_NAME = "parity-cutover.json"  # beside the recordings by default
ADOPTERS = "adopters"  # `advance GROUP adopters`: only the early adopters move


class CutoverError(ValueError):
    """A change the state refuses (one line, said to the operator as it is)."""


@dataclass(slots=True)
class GroupState:
    """One migration group's place in the cutover."""

    share: float = 0.0  # percent of identities served by the candidate
    adopters: bool = False  # the early adopters are moved (also at share 0)
    since: float | None = None  # when the group last went above 0 %
    last_critical: float | None = None  # the last critical event (a rollback, a finding)
    last_rollback: dict[str, Any] | None = None  # {"at", "reason", "automatic"}
    resume_share: float = 0.0
    resume_adopters: bool = False

    @property
    def active(self) -> bool:
        """Whether any identity of this group is served by the candidate."""
        return self.share > 0 or self.adopters


@dataclass(slots=True)
class CutoverState:
    """Everything the cutover remembers (see the module)."""

    key: str = field(default_factory=lambda: secrets.token_hex(32))
    early_adopters: tuple[str, ...] = ()
    groups: dict[str, GroupState] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    rollbacks: int = 0
    _early: frozenset[str] = field(init=False, repr=False, compare=False)
    _position: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._early = frozenset(self.early_adopters)
        key = bytes.fromhex(self.key)
        self._position = lru_cache(maxsize=65536)(lambda identity: position(key, identity))

    # --- the routing decision (hot path) --------------------------------------------------

    def group(self, name: str) -> GroupState:
        """The state of group `name` (created at 0 %)."""
        state = self.groups.get(name)
        if state is None:
            state = self.groups[name] = GroupState()
        return state

    def moves(self, group: str, identity: str) -> bool:
        """Whether `identity`'s requests of `group` are served by the candidate."""
        state = self.groups.get(group)
        if state is None or not (state.share > 0 or state.adopters):
            return False
        if identity in self._early:
            return True
        return state.share >= 100.0 or self._position(identity) < state.share

    def position_of(self, identity: str) -> float:
        """`identity`'s stable place in [0, 100)."""
        return self._position(identity)

    @property
    def active(self) -> bool:
        """Whether any group has moved identities (else the proxy is in plain shadow mode)."""
        return any(g.active for g in self.groups.values())

    # --- changes ---------------------------------------------------------------------------

    def advance(self, group: str, percent: float | str, now: float, *, reason: str = "") -> str:
        """Raise `group` to `percent` (or move its early adopters: `ADOPTERS`); a one-line
        account of the change. CutoverError for a lower share (use rollback), a bad number or
        an unknown group."""
        state = self.group(_known(group))
        was_active = state.active
        if percent == ADOPTERS:
            if not self.early_adopters:
                raise CutoverError("no early adopters are listed ([cutover] early_adopters)")
            state.adopters = True
            line = f"{group}: early adopters moved ({len(self.early_adopters)})"
            share = state.share
        else:
            share = _percent(percent)
            if share < state.share:
                raise CutoverError(f"{group} is at {state.share:g} %: a ramp only goes up; use "
                                   f"`parity cutover rollback {group}` to go back to 0 %")
            state.share = share
            state.adopters = state.adopters or share > 0
            line = f"{group}: {share:g} % of identities served by the candidate"
        if state.active and not was_active:
            state.since = now
        self._event(now, group, "advance", share, reason)
        return line

    def rollback(self, group: str, reason: str, now: float, *, automatic: bool = False) -> str:
        """Drop `group` to 0 % at once; `reason` is kept in the history and the status."""
        state = self.group(_known(group))
        if state.active:
            state.resume_share, state.resume_adopters = state.share, state.adopters
        state.share, state.adopters, state.since = 0.0, False, None
        state.last_critical = now
        state.last_rollback = {"at": now, "reason": reason, "automatic": automatic}
        self.rollbacks += 1
        self._event(now, group, "rollback", 0.0, reason, automatic=automatic)
        return f"{group}: rolled back to 0 % ({reason})"

    def resume(self, group: str, now: float, *, reason: str = "") -> str:
        """Back to the share (and early adopters) `group` had before its last rollback."""
        state = self.group(_known(group))
        if state.active:
            raise CutoverError(f"{group} is not rolled back (at {state.share:g} %)")
        if not (state.resume_share > 0 or state.resume_adopters):
            raise CutoverError(f"{group} has no share to resume: use `parity cutover advance`")
        state.share, state.adopters, state.since = state.resume_share, state.resume_adopters, now
        self._event(now, group, "resume", state.share, reason)
        return f"{group}: resumed at {state.share:g} %"

    def critical(self, group: str, now: float) -> None:
        """A critical event that did not roll back (the group was at 0 %): the clock restarts."""
        self.group(_known(group)).last_critical = now

    def clean_clock(self, group: str, now: float) -> float | None:
        """Seconds since `group` went above 0 % or since its last critical event, whichever is
        later; None while it is at 0 %."""
        state = self.groups.get(group)
        if state is None or not state.active or state.since is None:
            return None
        start = max(state.since, state.last_critical or state.since)
        return max(0.0, now - start)

    def _event(self, now: float, group: str, kind: str, share: float, reason: str,
               **extra: Any) -> None:
        self.history.append({"at": now, "group": group, "event": kind, "share": share,
                             "reason": reason, **extra})
        del self.history[:-MAX_HISTORY]

    # --- persistence -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "key": self.key, "early_adopters": list(self.early_adopters),
                "groups": {name: asdict(g) for name, g in self.groups.items()},
                "history": self.history, "rollbacks": self.rollbacks}

    @classmethod
    def from_dict(cls, data: Any) -> CutoverState:
        """A state read back; CutoverError naming what is wrong."""
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise CutoverError(f"not a cutover state of version {VERSION}")
        try:
            bytes.fromhex(data["key"])
            groups = {str(name): GroupState(**g) for name, g in data.get("groups", {}).items()}
            return cls(key=data["key"], early_adopters=tuple(data.get("early_adopters", ())),
                       groups=groups, history=list(data.get("history", [])),
                       rollbacks=int(data.get("rollbacks", 0)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CutoverError(f"damaged cutover state ({exc})") from None

    def save(self, path: Path) -> None:
        """Write the state atomically and durably (OSError when it cannot be written)."""
        write_atomically(path, orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2) + b"\n",
                         durable=True)

    @classmethod
    def load(cls, path: Path, early_adopters: tuple[str, ...] = ()) -> CutoverState:
        """The state at `path`, or a new one (a fresh key) when there is none yet; the plan's
        early adopters replace the saved ones. CutoverError when the file is damaged."""
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return cls(early_adopters=early_adopters)
        except (OSError, orjson.JSONDecodeError) as exc:
            raise CutoverError(f"{path}: cannot read the cutover state ({exc})") from None
        try:
            state = cls.from_dict(data)
        except CutoverError as exc:
            raise CutoverError(f"{path}: {exc}") from None
        if early_adopters and tuple(early_adopters) != state.early_adopters:
            state = cls(key=state.key, early_adopters=early_adopters, groups=state.groups,
                        history=state.history, rollbacks=state.rollbacks)
        return state


def _known(group: str) -> str:
    if group not in GROUPS:
        raise CutoverError(f"unknown group {group!r} (known: {', '.join(GROUPS)})")
    return group


def _percent(value: float | str) -> float:
    try:
        share = float(value)
    except (TypeError, ValueError):
        raise CutoverError(f"{value!r} is not a percentage (0 to 100, or {ADOPTERS!r})") from None
    if math.isnan(share) or not 0.0 <= share <= 100.0:
        raise CutoverError(f"{value!r} is not a percentage between 0 and 100")
    return share
