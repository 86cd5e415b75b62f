"""Each setting of the shadow proxy and of the safety checks, declared once: its name and type (a
dataclass field), its default, help and validation (`setting(...)`). Everything else is derived
from these declarations (mitmproxy's `loader.add_option` is the model: a setting exists once):

    parity.toml     `[shadow]` and `[safety]` keys (`from_table`), for classes with a SECTION
    parity shadow   its flags (`add_flags`, `from_flags`), for settings with a `flag`
    the addon       its mitmproxy options (`declared`, `Setting.option_*`), for an `option`
    the workers     `harness.shadow.settings.WorkerSettings`, from the values resolved here

To add a setting, add a field to the class it belongs to:

    queue_size: int = setting(10_000, "exchanges a worker holds at most ...",
                              flag="--queue-size", option="parity_queue_size", low=1)

Values from every source go through `Setting.parse`, so a bad value reads the same everywhere,
behind the name of its source ("--sample must be ...", "parity_sample: must be ...",
"parity.toml: shadow.sample: must be ...").
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar, get_type_hints
from urllib.parse import urlsplit

T = TypeVar("T")


class SettingError(ValueError):
    """Why a value is not valid for a setting: one line, without the setting's name."""


@dataclass(frozen=True, slots=True)
class Spec:
    """What a declaration says beyond its name, type and default (see `setting`)."""

    help: str
    flag: str | None = None
    option: str | None = None
    metavar: str | None = None
    required_flag: bool = False
    low: float | None = None
    high: float | None = None
    above_low: bool = False  # `low` itself is not allowed (a timeout must be more than 0)
    check: Callable[[Any], Any] | None = None  # validates (SettingError) and normalizes


def setting(default: Any, help: str, *, flag: str | None = None, option: str | None = None,
            metavar: str | None = None, required_flag: bool = False, low: float | None = None,
            high: float | None = None, above_low: bool = False,
            check: Callable[[Any], Any] | None = None) -> Any:
    """Declare one setting as a dataclass field: its `default`, its `help`, the `parity shadow`
    `flag` and the addon `option` it has (None: it has none), its bounds (`low`..`high`, numbers)
    and a `check` that validates (raising SettingError) and normalizes a value."""
    return field(default=default, metadata={"setting": Spec(
        help, flag, option, metavar, required_flag, low, high, above_low, check)})


@dataclass(frozen=True, slots=True)
class Setting:
    """One declared setting, as the derivations read it."""

    name: str
    kind: type  # bool, int, float or str
    default: Any
    section: str | None  # the parity.toml table, None: not read from parity.toml
    spec: Spec

    @property
    def key(self) -> str | None:
        """Its parity.toml key, `shadow.timeout_s` (None: not in parity.toml)."""
        return f"{self.section}.{self.name}" if self.section else None

    @property
    def flag(self) -> str | None:
        return self.spec.flag

    @property
    def option(self) -> str | None:
        return self.spec.option

    @property
    def help(self) -> str:
        return self.spec.help

    def parse(self, value: Any) -> Any:
        """`value` (from parity.toml, a flag or an option: numbers may come as text) as this
        setting's type, validated and normalized; SettingError with the reason otherwise."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise SettingError(f"expected true or false, got {value!r}")
            parsed: Any = value
        elif self.kind in (int, float):
            parsed = self._number(value)
        else:
            if not isinstance(value, str):
                raise SettingError(f"expected a string, got {value!r}")
            parsed = value
        return self.spec.check(parsed) if self.spec.check is not None else parsed

    def _number(self, value: Any) -> int | float:
        number: int | float
        if isinstance(value, str):
            try:
                number = int(value) if self.kind is int else float(value)
            except ValueError:
                raise SettingError(f"{value!r} is not {_a(self.kind)}") from None
        elif isinstance(value, bool) or not isinstance(value, self._accepts()):
            raise SettingError(f"{value!r} is not {_a(self.kind)}")
        else:
            number = self.kind(value)
        if isinstance(number, float) and not math.isfinite(number):
            raise SettingError(f"{value!r} is not a finite number")
        low, high, spec = self.spec.low, self.spec.high, self.spec
        if (low is not None and (number < low or (spec.above_low and number == low))) or (
                high is not None and number > high):
            if low is not None and high is not None:
                bounds = f"between {low:g} and {high:g}"
            elif spec.above_low:
                bounds = f"more than {low:g}"
            else:
                bounds = f"at least {low:g}" if low is not None else f"at most {high:g}"
            raise SettingError(f"must be {bounds}, got {value}")
        return number

    def _accepts(self) -> tuple[type, ...]:
        return (int,) if self.kind is int else (int, float)

    # --- the mitmproxy option -------------------------------------------------------------------

    @property
    def option_type(self) -> type:
        """The option's type for mitmproxy, which has no float options: a float is text."""
        return str if self.kind is float else self.kind

    def option_value(self, value: Any) -> Any:
        """`value` as the addon's option holds it."""
        return repr(float(value)) if self.kind is float else value

    @property
    def option_default(self) -> Any:
        return self.option_value(self.default)

    # --- the flag ----------------------------------------------------------------------------

    def add_flag(self, parser: argparse.ArgumentParser) -> None:
        """Add this setting's flag to `parser` (given: its text, parsed later; not given: None)."""
        assert self.flag is not None
        # An empty default says nothing the help does not ("the system's CAs when not given").
        silent = self.spec.required_flag or (self.default == "" and not self.section)
        default = "" if silent else f" (default {self.shown_default()})"
        text = (self.help + default).replace("%", "%%")
        if self.kind is bool:
            parser.add_argument(self.flag, dest=self.name, default=None, help=text,
                                action=argparse.BooleanOptionalAction)
        else:
            parser.add_argument(self.flag, dest=self.name, default=None, help=text,
                                metavar=self.spec.metavar, required=self.spec.required_flag)

    def shown_default(self) -> str:
        """How help texts show the default (and where a parity.toml may change it)."""
        if self.kind is bool:
            shown = "on" if self.default else "off"
        elif self.default == "":
            shown = "none"
        else:
            shown = f"{self.default:g}" if isinstance(self.default, float) else str(self.default)
        return f"[{self.section}] {self.name}: {shown}" if self.section else shown


def _a(kind: type) -> str:
    return "an integer" if kind is int else "a number"


def declared(cls: type) -> tuple[Setting, ...]:
    """The settings a class of settings declares, in their order."""
    hints = get_type_hints(cls)
    section = getattr(cls, "SECTION", None)
    found = []
    for f in fields(cls):
        spec = f.metadata.get("setting")
        if spec is None:
            continue
        kind = hints[f.name]
        if kind not in (bool, int, float, str):
            raise TypeError(f"{cls.__name__}.{f.name}: a setting is a bool, int, float or str")
        found.append(Setting(f.name, kind, f.default, section, spec))
    return tuple(found)


def from_table(cls: type[T], table: Mapping[str, Any], base: T | None = None,
               fail: Callable[[str, str], Exception] = lambda key, why: SettingError(
                   f"{key}: {why}")) -> T:
    """An instance of `cls` from a parity.toml table (`base`'s values, else the defaults, for
    keys it does not set). `fail(key, reason)` makes the error raised for an unknown key or a
    bad value."""
    known = {s.name: s for s in declared(cls)}
    values: dict[str, Any] = {}
    section = getattr(cls, "SECTION", "")
    for name, raw in table.items():
        if name not in known:
            raise fail(f"{section}.{name}", f"unknown key (known: {', '.join(sorted(known))})")
        try:
            values[name] = known[name].parse(raw)
        except SettingError as exc:
            raise fail(f"{section}.{name}", str(exc)) from None
    return _with(cls, base, values)


def _with(cls: type[T], base: T | None, values: dict[str, Any]) -> T:
    """`base` (else the defaults) with `values` set."""
    kept = {s.name: getattr(base, s.name) for s in declared(cls)} if base is not None else {}
    return cls(**{**kept, **values})


def add_flags(parser: argparse.ArgumentParser, *classes: type) -> None:
    """Add the flag of every setting of `classes` that has one."""
    for cls in classes:
        for item in declared(cls):
            if item.flag:
                item.add_flag(parser)


def from_flags(cls: type[T], args: argparse.Namespace, base: T | None = None,
               fail: Callable[[str], Exception] = SettingError) -> T:
    """`base` (else the defaults) with the flags given in `args` (see `add_flags`);
    `fail(message)` makes the error raised for a bad value ("--sample must be ...")."""
    values: dict[str, Any] = {}
    for item in declared(cls):
        given = getattr(args, item.name, None) if item.flag else None
        if given is None:
            continue
        try:
            values[item.name] = item.parse(given)
        except SettingError as exc:
            raise fail(f"{item.flag} {exc}") from None
        if item.spec.required_flag and values[item.name] in ("", None):
            raise fail(f"{item.flag} {given!r}: must not be empty")
    return _with(cls, base, values)


def options_of(*instances: Any) -> dict[str, Any]:
    """The addon's options holding the values of `instances` (settings with an option)."""
    return {item.option: item.option_value(getattr(instance, item.name))
            for instance in instances for item in declared(type(instance)) if item.option}


def from_options(cls: type[T], read: Callable[[str], Any]) -> T:
    """An instance of `cls` from the addon's options (`read(option)` gives an option's value);
    the options were validated when they were set."""
    return cls(**{item.name: item.parse(read(item.option))
                  for item in declared(cls) if item.option})


# --- checks --------------------------------------------------------------------------------------


def http_url(value: str) -> str:
    """An http(s) URL with a host and a valid port, without its trailing slash ("" stays "")."""
    if not value:
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingError(f"{value!r} is not an http(s) URL such as http://host:8000")
    try:
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError:
        raise SettingError(f"{value!r}: the port is not valid") from None
    return value.rstrip("/")


def existing_file(value: str) -> str:
    """A path to a file that exists ("" stays "")."""
    if value and not os.path.isfile(value):
        raise SettingError(f"{value!r}: no such file")
    return value


# --- the declarations ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShadowTargets:
    """Where the shadow proxy mirrors to and records (given per run, not in parity.toml)."""

    SECTION: ClassVar[str | None] = None

    candidate: str = setting(
        "", "the native environment mirrors are sent to, e.g. http://native:8000",
        flag="--candidate", option="parity_candidate", metavar="URL", required_flag=True,
        check=http_url)
    secondary: str = setting(
        "", "a second Docker copy of production, to learn what is noise",
        flag="--secondary", option="parity_secondary", metavar="URL", check=http_url)
    config: str = setting(
        "", "parity.toml (routes, mirror policies, gates, [shadow]); the Cryptobot defaults "
        "when not given", flag="--config", option="parity_config", metavar="FILE")
    recordings: str = setting(
        "recordings", "where exchanges are recorded (redacted JSONL segments)",
        flag="--recordings", option="parity_recordings", metavar="DIR")
    insecure: bool = setting(
        False, "do not verify the upstream TLS certificates (test setups only)",
        flag="--insecure", option="parity_insecure")
    ca_bundle: str = setting(
        "", "CA bundle (PEM) that verifies the primary, candidate and secondary; the system's "
        "CAs when not given", flag="--ca-bundle", option="parity_ca_bundle", metavar="PEM",
        check=existing_file)


@dataclass(frozen=True, slots=True)
class ShadowSettings:
    """`[shadow]` in parity.toml: how the shadow proxy mirrors (each overridable by its flag)."""

    SECTION: ClassVar[str | None] = "shadow"

    sample: float = setting(
        1.0, "share of clients mirrored, 0 to 1: all of a client's requests or none, so "
        "stateful flows stay whole", flag="--sample", option="parity_sample", metavar="RATE",
        low=0.0, high=1.0)
    timeout_s: float = setting(
        5.0, "seconds one mirrored request may take on the candidate", flag="--timeout",
        option="parity_timeout", metavar="S", low=0.0, above_low=True)
    workers: int = setting(
        1, "mirror worker processes (requests of one client stay on one worker)",
        flag="--workers", option="parity_workers", metavar="N", low=1)
    queue_size: int = setting(
        10_000, "exchanges a worker holds at most; beyond, mirrors are dropped and counted "
        "(production is never slowed down)", flag="--queue-size", option="parity_queue_size",
        metavar="N", low=1)
    max_inflight: int = setting(
        128, "mirrors a worker sends at once at most", flag="--max-inflight",
        option="parity_max_inflight", metavar="N", low=1)
    drain_s: float = setting(
        15.0, "seconds the proxy waits at exit for the mirrors in flight to finish; what is "
        "still held then is counted abandoned", flag="--drain", option="parity_drain",
        metavar="SECONDS", low=0.0)
    worker_idle: bool = setting(
        True, "run the mirror workers in Linux's SCHED_IDLE class: they only get CPU time "
        "nothing else wants, so when CPU is short mirrors are dropped (counted), never "
        "production slowed; off on a machine whose CPU is never idle (the workers then "
        "compete, niced, with production)", flag="--idle-workers", option="parity_worker_idle")
    worker_nice: int = setting(
        10, "CPU niceness added to the workers, 0 to 19, so the proxy wins when CPU is short",
        flag="--worker-nice", option="parity_worker_nice", metavar="N", low=0, high=19)
    metrics: str = setting(
        "", "HOST:PORT where Prometheus metrics are served (/metrics), on a listener of its "
        "own; off when empty", flag="--metrics", option="parity_metrics", metavar="HOST:PORT")
    routes_from_primary: bool = setting(
        True, "read the primary's /openapi.json at start (2 s at most, never fatal): log the "
        "routes the route table does not know and save them beside the recordings for the "
        "report", flag="--routes-from-primary")


@dataclass(frozen=True, slots=True)
class SafetySettings:
    """`[safety]` in parity.toml, for the shadow proxy, the replay and pytest alike."""

    SECTION: ClassVar[str | None] = "safety"

    precondition_recheck_s: float = setting(
        2.0, "seconds a side's proven precondition (its dry-run switch) stands before it is "
        "asked again; a side that turns its switch off stops getting orders",
        low=0.0, high=3600.0)


SHADOW_DEFAULTS = ShadowSettings()
# Every class of settings, for the derivations that list them all.
CLASSES: tuple[type, ...] = (ShadowTargets, ShadowSettings, SafetySettings)


def all_declared(classes: Iterable[type] = CLASSES) -> tuple[Setting, ...]:
    """Every declared setting."""
    return tuple(item for cls in classes for item in declared(cls))
