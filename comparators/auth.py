"""The `auth` comparator: login/refresh tokens, validate and users/me answers, API keys, cookies
and error answers, compared without ever comparing (or printing) a token or a secret.

- Tokens (``access_token``, ``refresh_token``, any JWT-looking string) are decoded, header and
  claims, without trusting the signature. Header ``alg``/``typ`` changes are **critical**
  (HS256 -> HS512, -> none). The claim key set, ``sub``, roles/scopes (as sets), ``email``,
  ``token_type`` and every other stable claim are compared exactly; ``jti``/``iat``/``nbf``/``exp``
  absolute values are not. A token losing its ``exp`` is critical.
- Lifetime within ``extra["lifetime_tolerance"]`` seconds (default 5): ``exp - iat`` when both
  tokens have ``iat``; else ``exp`` minus the answer's ``Date`` header when both answers have one
  (the real Cryptobot tokens carry no ``iat``, and a recorded primary answer may be days old);
  else ``exp`` itself. ``expires_in``/``refresh_token_expires_in`` and cookie ``Max-Age`` use
  the same tolerance.
- ``extra["keys"]``: verify signatures, ``{"secret": ..., "alg": "HS256"}`` for both sides or
  ``{"primary": {...}, "candidate": {...}}``; a token that does not verify is critical.
- Set-Cookie: per cookie, Secure/HttpOnly (losing one is critical), SameSite, Path, Domain and
  Max-Age; cookie values are never compared (a JWT cookie is decoded like a token).
- Secrets (API key values, session tokens, MFA secrets, backup codes) are never compared: only
  that both answers have one.
- Ids (``id``, ``key_id``, ``user_id``, ...) and timestamps (``created_at``, ``expires_at``,
  ``last_used``, ...) are ignored: each environment mints its own API keys and sessions, in its
  own database. ``extra["compare_ids"] = true`` compares ids again.
- Everything else, error answers included (``{"detail": ...}`` of a 401/403 must match
  exactly), goes to the generic comparison with secrets replaced by placeholders.

User enumeration (an unknown user and a wrong password answered differently) is a property of
*one* environment: it takes two exchanges to see. :func:`enumeration_findings` compares them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

from harness.diff import paths
from harness.diff.base import CompareOptions, Incomparable, Lifted, register
from harness.diff.values import (
    compare_answers,
    compare_scalar,
    critical,
    derived,
    generic_bodies,
    is_number,
    json_type,
    show,
    type_message,
    with_ignored,
)
from harness.model import Difference, Kind, Severity

DEFAULT_LIFETIME_TOLERANCE = 5.0
TOKEN_FIELDS = ("access_token", "refresh_token", "id_token", "token")
SECRET_FIELDS = (
    "key",
    "api_key",
    "api_secret",
    "secret",
    "secret_key",
    "session_token",
    "manual_entry_code",
    "qr_code",
    "password",
    "hashed_password",
    "reset_token",
)
SECRET_LISTS = ("codes", "backup_codes")
LIFETIME_FIELDS = ("expires_in", "refresh_token_expires_in", "refresh_expires_in")
# Claims whose absolute values are minted per token.
VOLATILE_CLAIMS = ("jti", "iat", "nbf", "exp", "auth_time", "sid", "session_id", "nonce")
SET_CLAIMS = ("roles", "scopes", "permissions", "groups", "scope", "scp")
# Minted per environment (API keys, sessions, users of another database): ignored by default.
IDS = ("id", "key_id", "next_key_id", "previous_key_id", "session_id", "user_id")
TIMESTAMPS = (
    "created_at",
    "updated_at",
    "expires_at",
    "last_used",
    "last_activity",
    "rotated_at",
    "grace_period_ends",
    "revoked_at",
    "compromised_at",
)
VOLATILE_TIMESTAMPS = tuple(f"**.{name}" for name in TIMESTAMPS)
VOLATILE = tuple(f"**.{name}" for name in IDS) + VOLATILE_TIMESTAMPS
# The signature may be a recording's fingerprint (`redacted:sha256:1f2e3d4c`): only the header and
# claims are read.
JWT_SHAPE = re.compile(
    r"^[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.(?:[A-Za-z0-9_-]*|redacted:sha256:[0-9a-f]+)$"
)
REDACTED = "<redacted>"


def _identical_is_match(options: CompareOptions) -> bool:
    """Identical answers are judged by their headers (cookies too) unless tokens must verify
    with configured keys: an identical token can fail to verify."""
    return not options.extra.get("keys")


@register("auth", identical_is_match=_identical_is_match)
def compare_auth(primary: Lifted, candidate: Lifted, options: CompareOptions) -> list[Difference]:
    """Compare two auth-service answers (see the module docstring)."""
    volatile = VOLATILE_TIMESTAMPS if options.extra.get("compare_ids") else VOLATILE
    options = with_ignored(options, volatile)
    # Cookies are compared here, attribute by attribute, never by value.
    headers = derived(options, "auth headers", _without_cookies)
    differences = _cookies(primary, candidate, options)
    found = compare_answers(
        primary,
        candidate,
        options,
        _bodies,
        header_options=headers,
        # Identical tokens still have to verify with the configured keys.
        skip_identical=not options.extra.get("keys"),
    )
    # Text bodies went to the generic comparator: make sure it quotes no token.
    return differences + _scrub(found)


def _without_cookies(options: CompareOptions) -> CompareOptions:
    return dataclasses.replace(options, ignore_headers=(*options.ignore_headers, "set-cookie"))


def _bodies(primary: Lifted, candidate: Lifted, options: CompareOptions) -> list[Difference]:
    context = _Context(options, primary, candidate)
    p_body, c_body = context.prepare("", primary.body, candidate.body, "")
    return context.differences + generic_bodies(p_body, c_body, options)


# --- tokens ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Jwt:
    """A decoded JWT: its header and claims. The token string itself is not kept."""

    header: dict[str, Any]
    claims: dict[str, Any]

    @classmethod
    def decode(cls, token: Any) -> Jwt | None:
        """Header and claims of a JWT (signature not checked), or None if it is not one. The
        result is shared by every caller decoding the same token: read it, never change it."""
        if not isinstance(token, str) or token.count(".") != 2:  # cheap: most values are not
            return None
        return _decode(token)


@lru_cache(maxsize=1024)  # each token is looked at several times per comparison
def _decode(token: str) -> Jwt | None:
    if not JWT_SHAPE.match(token.strip()):
        return None
    head, body, _ = token.strip().split(".")
    try:
        header, claims = _b64json(head), _b64json(body)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict) or "alg" not in header:
        return None
    return Jwt(header, claims)


def _b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def looks_like_jwt(value: Any) -> bool:
    """Is `value` a JWT string?"""
    return Jwt.decode(value) is not None


class _Context:
    """One comparison: the options, both answers, and the differences found on the way."""

    def __init__(self, options: CompareOptions, primary: Lifted, candidate: Lifted) -> None:
        self.options = options
        self.tolerance = float(options.extra.get("lifetime_tolerance", DEFAULT_LIFETIME_TOLERANCE))
        self.dates = (_date(primary), _date(candidate))
        self.differences: list[Difference] = []

    # Walk both bodies in parallel; what is compared here is replaced by placeholders so the
    # generic comparison sees neither a difference nor a secret.
    def prepare(self, path: str, p: Any, c: Any, name: str) -> tuple[Any, Any]:
        if isinstance(p, dict) and isinstance(c, dict):
            p_out, c_out = {}, {}
            for member in [*p, *(k for k in c if k not in p)]:
                if member in p and member in c:
                    pair = self.prepare(paths.key(path, member), p[member], c[member], member)
                    p_out[member], c_out[member] = pair
                elif member in p:
                    p_out[member] = _redact(p[member])
                else:
                    c_out[member] = _redact(c[member])
            return p_out, c_out
        if isinstance(p, list) and isinstance(c, list):
            if name in SECRET_LISTS:
                if len(p) != len(c):
                    self.differences.append(
                        Difference(
                            path, Kind.LENGTH, len(p), len(c), f"{path} {len(p)} vs {len(c)}"
                        )
                    )
                return REDACTED, REDACTED
            if len(p) == len(c):
                pairs = [
                    self.prepare(paths.index(path, i), a, b, name)
                    for i, (a, b) in enumerate(zip(p, c, strict=True))
                ]
                return [a for a, _ in pairs], [b for _, b in pairs]
            return _redact(p), _redact(c)
        if name in LIFETIME_FIELDS and is_number(p) and is_number(c):
            self.differences += self.durations(path, p, c, path)
            return 0, 0
        if (
            looks_like_jwt(p)
            or looks_like_jwt(c)
            or (name in TOKEN_FIELDS and isinstance(p, str) and isinstance(c, str))
        ):
            self.differences += self.tokens(path, p, c)
            return REDACTED, REDACTED
        if name in SECRET_FIELDS and isinstance(p, str) and isinstance(c, str):
            return REDACTED, REDACTED
        return _redact(p), _redact(c)

    def tokens(self, path: str, p: Any, c: Any) -> list[Difference]:
        """The differences between two tokens, from their headers and claims only."""
        label = _label(path)
        if not (isinstance(p, str) and isinstance(c, str)):
            return [_typed(path, p, c)] if json_type(p) != json_type(c) else []
        p_jwt, c_jwt = Jwt.decode(p), Jwt.decode(c)
        if p_jwt is None and c_jwt is None:
            return []
        if p_jwt is None or c_jwt is None:
            shape = ("a JWT", "an opaque token") if p_jwt else ("an opaque token", "a JWT")
            return [
                critical(
                    Difference(
                        path,
                        Kind.TYPE,
                        shape[0],
                        shape[1],
                        f"{label} is {shape[0]} on the primary and {shape[1]} on the candidate",
                    )
                )
            ]
        differences = self._header(path, label, p_jwt.header, c_jwt.header)
        differences += self._claims(path, label, p_jwt.claims, c_jwt.claims)
        differences += self._signatures(path, label, p, c)
        return differences

    def _header(self, path: str, label: str, p: dict, c: dict) -> list[Difference]:
        differences = []
        for name in sorted({*p, *c}):
            sub = paths.key(paths.key(path, "header"), name)
            a, b = p.get(name), c.get(name)
            if a == b and (name in p) == (name in c):
                continue
            message = f"{label} header {name} {show(a)} vs {show(b)}"
            difference = Difference(sub, _kind(name, p, c), a, b, message)
            if name in ("alg", "typ"):
                critical(difference)
                if name == "alg":
                    difference.message = f"{label} signed with {a} vs {b}"
            differences.append(difference)
        return differences

    def _claims(self, path: str, label: str, p: dict, c: dict) -> list[Difference]:
        differences = []
        claims = paths.key(path, "claims")
        for name in [*p, *(k for k in c if k not in p)]:
            sub = paths.key(claims, name)
            if name not in c or name not in p:
                where = "missing from the candidate's" if name in p else "only in the candidate's"
                difference = Difference(
                    sub,
                    _kind(name, p, c),
                    p.get(name),
                    c.get(name),
                    f"{label} claim {name} {where} token",
                )
                if name == "exp" and name in p:
                    critical(difference).message += " (the candidate's token never expires)"
                differences.append(difference)
            elif name in SET_CLAIMS:
                differences += _set_claim(sub, label, name, p[name], c[name])
            elif name not in VOLATILE_CLAIMS:
                if isinstance(p[name], dict | list) or isinstance(c[name], dict | list):
                    differences += generic_bodies(p[name], c[name], self.options, path=sub)
                else:
                    found = compare_scalar(sub, p[name], c[name], 0.0, 0.0, exact=True)
                    if found:  # the scalar's own wording, with the claim named for a reader
                        found.message = f"{label} claim {name}{found.message[len(sub):]}"
                        differences.append(found)
        return differences + self._lifetime(claims, label, p, c)

    def _lifetime(self, claims: str, label: str, p: dict, c: dict) -> list[Difference]:
        exp_p, exp_c = p.get("exp"), c.get("exp")
        if not (is_number(exp_p) and is_number(exp_c)):
            return []
        path = paths.key(claims, "exp")
        if is_number(p.get("iat")) and is_number(c.get("iat")):
            return self.durations(path, exp_p - p["iat"], exp_c - c["iat"], f"{label} lifetime")
        p_date, c_date = self.dates
        if p_date is not None and c_date is not None:
            return self.durations(path, exp_p - p_date, exp_c - c_date, f"{label} lifetime")
        if abs(exp_c - exp_p) <= self.tolerance:
            return []
        return [
            Difference(
                path,
                Kind.CHANGED,
                exp_p,
                exp_c,
                f"{label} expiry differs by {exp_c - exp_p:+g} s ({exp_p} vs {exp_c}; "
                "no iat or Date header to measure the lifetime from)",
            )
        ]

    def durations(self, path: str, p: float, c: float, what: str) -> list[Difference]:
        """Two durations in seconds that must agree within the lifetime tolerance."""
        if abs(p - c) <= self.tolerance:
            return []
        p, c = _whole(p), _whole(c)
        return [
            Difference(
                path,
                Kind.CHANGED,
                p,
                c,
                f"{what} {_seconds_text(p)} s vs {_seconds_text(c)} s "
                f"(more than ±{self.tolerance:g} s apart)",
            )
        ]

    def _signatures(self, path: str, label: str, p: str, c: str) -> list[Difference]:
        keys = self.options.extra.get("keys")
        if not keys:
            return []
        differences = []
        for side, token in (("primary", p), ("candidate", c)):
            spec = keys.get(side, keys) if isinstance(keys, Mapping) else keys
            problem = _verify(token, spec)
            if problem:
                differences.append(
                    critical(
                        Difference(
                            paths.key(path, "signature"),
                            Kind.CHANGED,
                            "verifies" if side == "candidate" else problem,
                            problem if side == "candidate" else "verifies",
                            f"the {side}'s {label} does not verify with the configured key "
                            f"({problem})",
                        )
                    )
                )
        return differences


def _verify(token: str, spec: Any) -> str | None:
    """Why `token` does not verify with the configured key (None when it does)."""
    import jwt

    if isinstance(spec, Mapping):
        secret, alg = spec.get("secret") or spec.get("key"), spec.get("alg", "HS256")
    else:
        secret, alg = spec, "HS256"
    if not isinstance(secret, str | bytes):  # PyJWT would raise TypeError
        raise Incomparable("extra.keys: no 'secret' or 'key' (a string) to verify tokens with")
    algorithms = list(alg) if isinstance(alg, list | tuple) else [alg]
    try:
        jwt.decode(
            token,
            secret,
            algorithms=algorithms,
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.PyJWTError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _set_claim(path: str, label: str, name: str, p: Any, c: Any) -> list[Difference]:
    """Roles and scopes: the same set, in any order (a space-separated ``scope`` too)."""

    def as_set(value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(value.split())
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return frozenset(value)
        return value

    a, b = as_set(p), as_set(c)
    if a == b and type(p) is type(c):
        return []
    message = f"{label} claim {name} {show(p)} vs {show(c)}"
    if isinstance(a, frozenset) and isinstance(b, frozenset):
        lost, gained = sorted(a - b), sorted(b - a)
        message += (
            f" (lost {lost}, gained {gained})"
            if lost and gained
            else (f" (lost {lost})" if lost else f" (gained {gained})" if gained else "")
        )
    kind = Kind.TYPE if json_type(p) != json_type(c) else Kind.CHANGED
    return [Difference(path, kind, p, c, message)]


def _kind(name: str, p: Mapping, c: Mapping) -> Kind:
    if name not in c:
        return Kind.MISSING
    if name not in p:
        return Kind.EXTRA
    return Kind.TYPE if json_type(p[name]) != json_type(c[name]) else Kind.CHANGED


def _typed(path: str, p: Any, c: Any) -> Difference:
    return Difference(
        path,
        Kind.TYPE,
        json_type(p),
        json_type(c),
        type_message(path, p, c),
    )


def _label(path: str) -> str:
    """``access_token`` -> ``access token``; cookie paths name the cookie."""
    if path.startswith("@headers.set-cookie"):
        return f"cookie {path.rsplit('.', 1)[-1]}"
    last = re.split(r"[.\[]", path)[-1].strip('"]') if path else "token"
    return last.replace("_", " ")


def _whole(value: float) -> float:
    """Seconds as an int when they are whole (1800, not 1800.0)."""
    return int(value) if float(value).is_integer() else value


def _seconds_text(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _redact(value: Any) -> Any:
    """A copy of `value` with every token and secret value replaced by a placeholder."""
    if isinstance(value, dict):
        return {
            k: (
                REDACTED
                if (k in SECRET_FIELDS or k in TOKEN_FIELDS) and isinstance(v, str)
                else _redact(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if looks_like_jwt(value):
        return REDACTED
    return value


def _scrub(differences: list[Difference]) -> list[Difference]:
    """Text answers compared by the generic comparator: drop token strings from what it says."""
    for d in differences:
        for attr in ("primary", "candidate"):
            value = getattr(d, attr)
            if isinstance(value, str) and JWT_SHAPE.search(value):
                setattr(d, attr, REDACTED)
        d.message = re.sub(
            r"[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+", REDACTED, d.message
        )
    return differences


def _date(answer: Lifted) -> float | None:
    """The answer's Date header as epoch seconds."""
    value = answer.header("date")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


# --- cookies ---------------------------------------------------------------------------------


def parse_set_cookies(values: Sequence[str]) -> dict[str, tuple[str, dict[str, str | bool]]]:
    """Set-Cookie header values -> {name: (value, {lower-case attribute: value or True})}."""
    cookies: dict[str, tuple[str, dict[str, str | bool]]] = {}
    for header in values:
        first, *attributes = header.split(";")
        name, _, value = first.partition("=")
        attrs: dict[str, str | bool] = {}
        for attribute in attributes:
            key, eq, val = attribute.strip().partition("=")
            if key:
                attrs[key.lower()] = val.strip() if eq else True
        cookies[name.strip()] = (value.strip().strip('"'), attrs)
    return cookies


FLAG_ATTRIBUTES = ("secure", "httponly")
VALUE_ATTRIBUTES = ("samesite", "path", "domain")


def _cookies(primary: Lifted, candidate: Lifted, options: CompareOptions) -> list[Difference]:
    p = parse_set_cookies(primary.headers.get("set-cookie", []))
    c = parse_set_cookies(candidate.headers.get("set-cookie", []))
    if not p and not c:
        return []
    context = _Context(options, primary, candidate)
    differences = []
    for name in [*p, *(n for n in c if n not in p)]:
        path = paths.key("@headers.set-cookie", name)
        if name not in c or name not in p:
            kind = Kind.MISSING if name in p else Kind.EXTRA
            where = (
                "missing from the candidate's answer"
                if name in p
                else "only in the candidate's answer"
            )
            differences.append(Difference(path, kind, None, None, f"cookie {name} {where}"))
            continue
        (p_value, p_attrs), (c_value, c_attrs) = p[name], c[name]
        for flag in FLAG_ATTRIBUTES:
            p_has, c_has = flag in p_attrs, flag in c_attrs
            if p_has != c_has:
                difference = Difference(
                    paths.key(path, flag),
                    Kind.MISSING if p_has else Kind.EXTRA,
                    p_has,
                    c_has,
                    f"cookie {name} {'lost' if p_has else 'gained'} {_FLAG_NAMES[flag]}",
                )
                differences.append(critical(difference) if p_has else difference)
        for attribute in VALUE_ATTRIBUTES:
            a, b = p_attrs.get(attribute), c_attrs.get(attribute)
            if attribute == "samesite":
                a, b = (str(a).lower() if a else a), (str(b).lower() if b else b)
            if a != b:
                differences.append(
                    Difference(
                        paths.key(path, attribute),
                        _kind(attribute, p_attrs, c_attrs),
                        a,
                        b,
                        f"cookie {name} {_ATTRIBUTE_NAMES[attribute]} {show(a)} vs {show(b)}",
                    )
                )
        differences += _max_age(context, path, name, p_attrs.get("max-age"), c_attrs.get("max-age"))
        if looks_like_jwt(p_value) or looks_like_jwt(c_value):
            differences += context.tokens(path, p_value, c_value)
    return differences


_FLAG_NAMES = {"secure": "Secure", "httponly": "HttpOnly"}
_ATTRIBUTE_NAMES = {"samesite": "SameSite", "path": "Path", "domain": "Domain"}


def _max_age(context: _Context, path: str, name: str, a: Any, b: Any) -> list[Difference]:
    sub = paths.key(path, "max-age")
    if a is None and b is None:
        return []
    try:
        seconds_a, seconds_b = float(a), float(b)
    except (TypeError, ValueError):
        if a == b:
            return []
        kind = Kind.MISSING if b is None else Kind.EXTRA if a is None else Kind.CHANGED
        return [Difference(sub, kind, a, b, f"cookie {name} Max-Age {show(a)} vs {show(b)}")]
    return context.durations(sub, seconds_a, seconds_b, f"cookie {name} Max-Age")


# --- user enumeration ------------------------------------------------------------------------

AnswerPair = Sequence[Lifted] | Mapping[str, Lifted]


def enumeration_findings(
    answers_unknown_user: AnswerPair, answers_wrong_password: AnswerPair
) -> list[Difference]:
    """User enumeration, from two login exchanges: one for a user that does not exist, one for a
    real user with a wrong password. Each argument holds that exchange's answers, as
    ``(primary, candidate)`` or ``{"primary": ..., "candidate": ...}``.

    An environment that answers the two differently (status, body or WWW-Authenticate) lets a
    caller find out which users exist. This cannot be seen by comparing primary with candidate
    on one exchange (both may leak alike), so the gate asks for these two exchanges. Critical
    when the candidate leaks and the primary does not; a warning when both leak; info when only
    the primary does.
    """
    unknown, wrong = _pair(answers_unknown_user), _pair(answers_wrong_password)
    leaks = [_leak(unknown[i], wrong[i]) for i in range(2)]
    p_leak, c_leak = leaks
    if not c_leak and not p_leak:
        return []
    if c_leak and not p_leak:
        severity, said = (
            Severity.CRITICAL,
            "the candidate tells an unknown user from a wrong password; the primary does not",
        )
    elif c_leak:
        severity, said = (
            Severity.WARNING,
            "both environments tell an unknown user from a wrong password "
            "(already so on the primary)",
        )
    else:
        severity, said = (
            Severity.INFO,
            "the primary tells an unknown user from a wrong password; the candidate no longer does",
        )
    shown = c_leak or p_leak
    return [
        Difference(
            "@enumeration",
            Kind.CHANGED,
            p_leak,
            c_leak,
            f"{said}: {shown}",
            severity,
        )
    ]


def _pair(answers: AnswerPair) -> tuple[Lifted, Lifted]:
    if isinstance(answers, Mapping):
        return answers["primary"], answers["candidate"]
    primary, candidate = answers
    return primary, candidate


def _leak(unknown: Lifted, wrong: Lifted) -> str | None:
    """How one environment's answers to the two logins differ, or None."""
    if unknown.status != wrong.status:
        return f"status {unknown.status} vs {wrong.status}"
    a, b = _redact(unknown.body), _redact(wrong.body)
    if a != b:
        return f"unknown user {show(a)} vs wrong password {show(b)}"
    if unknown.header("www-authenticate") != wrong.header("www-authenticate"):
        return (
            f"WWW-Authenticate {show(unknown.header('www-authenticate'))} vs "
            f"{show(wrong.header('www-authenticate'))}"
        )
    return None
