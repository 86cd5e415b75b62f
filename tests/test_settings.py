"""Each setting is declared once (harness.settings): every declared setting appears exactly once
as a `parity shadow` flag, a mitmproxy option of the shadow addon and a parity.toml key, each
where its declaration says, with the declared default; nothing else appears on those surfaces;
and a bad value reads the same whichever surface it came through."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from harness.cli import build_parser
from harness.config import build_config, load_config
from harness.errors import ConfigError, UserError
from harness.settings import (
    CLASSES,
    SafetySettings,
    ShadowSettings,
    ShadowTargets,
    all_declared,
    declared,
    from_flags,
)
from harness.shadow.addon import ShadowAddon
from harness.shadow.settings import WorkerSettings

DECLARED = all_declared()
REQUIRED = ["--primary", "http://primary:8000", "--candidate", "http://native:8000"]
# The command's own flags: the proxy's (mitmproxy's mode, listen address and certificates).
OWN_FLAGS = {"-h", "--help", "--primary", "--listen", "--certs"}


def shadow_parser():
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.dest == "command"]
    return subparsers.choices["shadow"]


def test_every_setting_is_declared_once_with_one_name_per_surface():
    names = [s.name for cls in CLASSES for s in declared(cls)]
    assert len(names) == len(set(names))
    for surface in ("flag", "option", "key"):
        used = [getattr(s, surface) for s in DECLARED if getattr(s, surface)]
        assert len(used) == len(set(used)), surface
    assert all(s.help and s.help == s.help.strip() for s in DECLARED)


def test_each_flag_appears_once_and_defaults_to_the_declaration():
    parser = shadow_parser()
    flags = [flag for action in parser._actions for flag in action.option_strings]
    assert len(flags) == len(set(flags))
    declared_flags = {s.flag for s in DECLARED if s.flag}
    assert {f for f in flags if not f.startswith("--no-")} == declared_flags | OWN_FLAGS
    args = parser.parse_args(REQUIRED)
    targets = from_flags(ShadowTargets, args)
    shadow = from_flags(ShadowSettings, args, load_config().shadow)
    for item in declared(ShadowSettings) + declared(ShadowTargets):
        if item.flag and not item.spec.required_flag:
            assert getattr(args, item.name) is None, item.flag  # not given: the default's
            resolved = targets if item in declared(ShadowTargets) else shadow
            assert getattr(resolved, item.name) == item.default, item.flag
            help_text = next(a.help for a in parser._actions if item.flag in a.option_strings)
            if item.section:  # the help says where parity.toml changes it
                assert f"(default [{item.section}] {item.name}: " in help_text


def test_flags_override_and_their_values_are_parsed_by_the_declaration():
    parser = shadow_parser()
    args = parser.parse_args([*REQUIRED, "--timeout", "2", "--no-idle-workers",
                              "--worker-nice", "0", "--metrics", "127.0.0.1:9", "--secondary",
                              "http://second:8000/"])
    shadow = from_flags(ShadowSettings, args, load_config().shadow)
    targets = from_flags(ShadowTargets, args)
    assert (shadow.timeout_s, shadow.worker_idle, shadow.worker_nice, shadow.metrics) == (
        2.0, False, 0, "127.0.0.1:9")
    assert shadow.sample == ShadowSettings().sample
    assert (targets.candidate, targets.secondary) == ("http://native:8000",
                                                     "http://second:8000")


def test_each_option_appears_once_and_defaults_to_the_declaration():
    addon = ShadowAddon()
    with taddons.context(addon) as tctx:
        options = {name for name in tctx.options._options if name.startswith("parity_")}
        assert options == {s.option for s in DECLARED if s.option}
        for item in DECLARED:
            if item.option:
                value = getattr(tctx.options, item.option)
                assert type(value) is item.option_type, item.option
                assert item.parse(value) == item.default, item.option
                assert tctx.options._options[item.option].help == item.help


def test_each_toml_key_is_read_with_the_declared_default_and_written_nowhere_else():
    defaults = load_config()
    for cls, values in ((ShadowSettings, defaults.shadow), (SafetySettings, defaults.safety)):
        for item in declared(cls):
            assert item.key == f"{cls.SECTION}.{item.name}"
            assert getattr(values, item.name) == item.default, item.key
            again = build_config({}, "parity.toml", {cls.SECTION: {item.name: item.default}})
            assert getattr(again, cls.SECTION) == values, item.key
    assert {s.section for s in DECLARED} == {None, "shadow", "safety"}
    # The shipped defaults do not repeat them.
    shipped = tomllib.loads(resources.files("harness").joinpath("default_config.toml")
                            .read_text(encoding="utf-8"))
    assert "shadow" not in shipped and "safety" not in shipped


def test_the_workers_settings_default_to_the_declarations():
    candidate = "http://native:8000"
    derived = WorkerSettings.derived(ShadowTargets(candidate=candidate), ShadowSettings())
    assert derived == WorkerSettings(candidate=candidate)
    for item in declared(ShadowSettings):
        if item.name in WorkerSettings.__dataclass_fields__:
            assert getattr(WorkerSettings(candidate=candidate), item.name) == item.default
    tuned = ShadowSettings(timeout_s=1.5, max_inflight=3, worker_nice=0, worker_idle=False)
    derived = WorkerSettings.derived(ShadowTargets(candidate=candidate, insecure=True), tuned)
    assert (derived.timeout_s, derived.max_inflight, derived.worker_nice, derived.worker_idle,
            derived.verify) == (1.5, 3, 0, False, False)


def bad_value(item) -> object:
    """A value outside the declared bounds (as text, as a flag or an option gives it)."""
    if item.spec.high is not None:
        return item.spec.high + 1
    return item.spec.low - 1


NUMBERS = [s for s in DECLARED if s.kind in (int, float) and s.spec.low is not None]


@pytest.mark.parametrize("item", NUMBERS, ids=lambda s: s.name)
def test_a_bad_value_reads_the_same_on_every_surface(item):
    bad = bad_value(item)
    reason = None
    if item.section:
        with pytest.raises(ConfigError) as error:
            build_config({}, "parity.toml", {item.section: {item.name: bad}})
        message = str(error.value)
        assert message.startswith(f"parity.toml: {item.key}: ")
        reason = message.removeprefix(f"parity.toml: {item.key}: ")
    if item.flag:
        args = shadow_parser().parse_args([*REQUIRED, item.flag, str(bad)])
        cls = next(c for c in CLASSES if item in declared(c))
        with pytest.raises(UserError) as error:
            from_flags(cls, args, fail=UserError)
        message = str(error.value)
        assert message.startswith(f"{item.flag} ")
        reason = reason or message.removeprefix(f"{item.flag} ")
        assert message == f"{item.flag} {reason}"
    if item.option:
        addon = ShadowAddon()
        with taddons.context(addon) as tctx:
            value = str(bad) if item.option_type is str else bad
            with pytest.raises(exceptions.OptionsError) as error:
                tctx.configure(addon, **{item.option: value})
        assert str(error.value) == f"{item.option}: {reason}"
    assert reason and "\n" not in reason and str(bad) in reason


def test_text_that_is_no_number_reads_the_same_from_a_flag_and_an_option():
    args = shadow_parser().parse_args([*REQUIRED, "--timeout", "soon"])
    with pytest.raises(UserError, match=r"^--timeout 'soon' is not a number$"):
        from_flags(ShadowSettings, args, fail=UserError)
    addon = ShadowAddon()
    with taddons.context(addon) as tctx, pytest.raises(
            exceptions.OptionsError, match=r"^parity_timeout: 'soon' is not a number$"):
        tctx.configure(addon, parity_timeout="soon")
    with pytest.raises(ConfigError, match=r"shadow\.timeout_s: 'soon' is not a number$"):
        build_config({}, "parity.toml", {"shadow": {"timeout_s": "soon"}})
