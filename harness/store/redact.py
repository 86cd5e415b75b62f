"""Redaction: no secret reaches disk, a log or a report.

Secrets are replaced by a stable fingerprint, ``redacted:sha256:1f2e3d4c`` (the first 8 hex digits
of an HMAC-SHA256), so equal secrets still correlate across exchanges. The HMAC key comes from the
environment variable PARITY_REDACTION_KEY; set it in production so fingerprints of short passwords
cannot be looked up in a dictionary. Where a secret is found:

- headers: Authorization / Proxy-Authorization (the scheme is kept), Cookie and Set-Cookie (names
  and attributes kept, values redacted), and any header whose name speaks of a token, secret, key,
  password or session;
- JSON bodies at any depth, form bodies and query strings: keys such as password, secret, token,
  access_token, api_key, private_key (any case, `-` and `_` ignored, and any key *ending* in one of
  those words, but not ``token_type`` or ``expires_in``);
- JWTs anywhere in a text body: the signature is replaced by the fingerprint, the header and
  claims are kept (they are what the auth comparator compares; a token without its signature
  cannot be used);
- bodies too cut or broken to parse: a pattern scrub of ``"password": "..."`` and ``token=...``.

Binary bodies (kept as base64) are left as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import urllib.parse
from dataclasses import replace
from typing import Any

import orjson

from harness.model import Body, Difference, Exchange, Request, Response

PREFIX = "redacted:sha256:"

_SECRET_WORDS = ("password", "passwd", "secret", "token", "apikey", "privatekey", "sessionid")
_SECRET_KEYS = frozenset(
    {"authorization", "cookie", "setcookie", "key", "otp", "mfacode", "backupcodes", "pin",
     "credentials", "signature"}
)
_NOT_SECRET = frozenset({"tokentype", "expiresin", "tokenexpiry", "passwordchangedat"})
_SECRET_HEADER_WORDS = ("token", "secret", "apikey", "api-key", "password", "passwd", "session")
_ALWAYS_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "x-auth-token"}
)
# A cheap look before parsing: bodies without any of these cannot hold a secret key or a JWT.
_HINTS = ("pass", "secret", "token", "key", "auth", "cookie", "eyj", "otp", "session", "sign",
          "pin", "backup", "credential")

# The signature must be followed by something that cannot continue it, so an already redacted
# token (whose signature became a fingerprint) is not redacted again.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(?![A-Za-z0-9_~:-])")
_KEY_PATTERN = (
    r"[A-Za-z0-9_\-]*(?:password|passwd|secret|token|api[_-]?key|private[_-]?key|session[_-]?id)"
)
_JSON_PAIR = re.compile(r'("' + _KEY_PATTERN + r'"\s*:\s*)"((?:[^"\\]|\\.)*)"?', re.IGNORECASE)
_FORM_PAIR = re.compile(r"(\b" + _KEY_PATTERN + r"=)([^&\s\"']+)", re.IGNORECASE)


def _key() -> bytes:
    return os.environ.get("PARITY_REDACTION_KEY", "cryptobot-parity").encode()


def fingerprint(secret: str) -> str:
    """The stable stand-in for `secret`."""
    digest = hmac.new(_key(), secret.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return PREFIX + digest.hexdigest()[:8]


def _fp(value: str) -> str:
    """The stand-in for a secret. A JWT keeps its header and claims (not secret, and what the auth
    comparator compares) and loses its signature, so it can no longer be used."""
    if value.startswith(PREFIX) or PREFIX in value.rpartition(".")[2]:
        return value
    if _JWT.fullmatch(value):
        header, claims, _ = value.split(".", 2)
        return f"{header}.{claims}.{fingerprint(value)}"
    return fingerprint(value)


def is_secret_key(name: str) -> bool:
    """Whether a JSON, form or query key names a secret."""
    norm = name.lower().replace("-", "").replace("_", "")
    if norm in _NOT_SECRET:
        return False
    return norm in _SECRET_KEYS or norm.endswith(_SECRET_WORDS)


def is_secret_header(name: str) -> bool:
    """Whether a header carries a secret."""
    lname = name.lower()
    if lname in _ALWAYS_SECRET_HEADERS or lname == "set-cookie":
        return True
    return any(word in lname for word in _SECRET_HEADER_WORDS)


def redact_text(text: str) -> str:
    """Scrub JWTs and ``key=value`` / ``"key": "value"`` secrets from free text (logs, reports,
    bodies that do not parse)."""
    if not text:
        return text
    text = _JWT.sub(lambda m: _fp(m.group(0)), text)
    text = _JSON_PAIR.sub(lambda m: f'{m.group(1)}"{_fp(m.group(2))}"', text)
    return _FORM_PAIR.sub(lambda m: m.group(1) + _fp(urllib.parse.unquote_plus(m.group(2))), text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return _fp(value)
    if value is None or isinstance(value, bool):
        return value
    return fingerprint(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())


def redact_json(value: Any) -> Any:
    """A copy of a parsed JSON value with every secret replaced."""
    if isinstance(value, dict):
        return {
            k: _redact_value(v) if is_secret_key(str(k)) and v not in ("", None)
            else redact_json(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    if isinstance(value, str) and "eyJ" in value:
        return _JWT.sub(lambda m: _fp(m.group(0)), value)
    return value


def redact_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Query-string or form pairs with secret values replaced."""
    return [(k, _fp(v) if is_secret_key(k) and v else redact_text(v)) for k, v in pairs]


def redact_header(name: str, value: str) -> str:
    """One header's value, redacted when it carries a secret."""
    lname = name.lower()
    if lname in ("authorization", "proxy-authorization"):
        scheme, sep, credential = value.partition(" ")
        return f"{scheme} {_fp(credential)}" if sep and credential else _fp(value)
    if lname == "cookie":
        return "; ".join(_redact_cookie_pair(part) for part in value.split(";"))
    if lname == "set-cookie":
        first, sep, attributes = value.partition(";")
        return _redact_cookie_pair(first) + sep + attributes
    if is_secret_header(name):
        return _fp(value)
    return redact_text(value) if "eyJ" in value else value


def _redact_cookie_pair(pair: str) -> str:
    name, sep, value = pair.partition("=")
    if not sep:
        return pair
    return f"{name}={_fp(value.strip())}" if value.strip() else pair


def _content_type(headers: list[tuple[str, str]]) -> str:
    return next((v.lower() for k, v in headers if k.lower() == "content-type"), "")


def redact_body(body: Body, content_type: str) -> Body:
    """A body with its secrets replaced (text bodies only; binary is left as it is)."""
    text = body.text
    if not text:
        return body
    lowered = text.lower()
    if not any(hint in lowered for hint in _HINTS):
        return body
    stripped = text.lstrip()
    if stripped[:1] in ("{", "[") and not body.truncated:
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            new_text = redact_text(text)
        else:
            new_text = orjson.dumps(redact_json(parsed)).decode()
            if new_text == orjson.dumps(parsed).decode():
                new_text = text  # nothing secret: keep the exact bytes
    elif "x-www-form-urlencoded" in content_type:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
        new_text = (
            urllib.parse.urlencode(redact_pairs(pairs), safe=":") if pairs else redact_text(text)
        )
    else:
        new_text = redact_text(text)
    if new_text == text:
        return body
    # `size` keeps describing the wire; the digest is of what is stored, since a digest of a short
    # secret-bearing body could be looked up in a dictionary.
    return replace(body, text=new_text, sha256=hashlib.sha256(new_text.encode()).hexdigest())


def redact_request(request: Request) -> Request:
    """A copy of `request` with every secret replaced."""
    return replace(
        request,
        query=redact_pairs(request.query),
        headers=[(k, redact_header(k, v)) for k, v in request.headers],
        body=redact_body(request.body, _content_type(request.headers)),
    )


def redact_response(response: Response | None) -> Response | None:
    """A copy of `response` with every secret replaced."""
    if response is None:
        return None
    return replace(
        response,
        headers=[(k, redact_header(k, v)) for k, v in response.headers],
        body=redact_body(response.body, _content_type(response.headers)),
        error=redact_text(response.error) if response.error else None,
    )


def redact_difference(diff: Difference) -> Difference:
    """A copy of `diff` whose values and message hold no secret."""
    last_key = re.split(r"[.\[\]\"]+", diff.path.rstrip("]\""))[-1] if diff.path else ""
    secret_path = bool(last_key) and is_secret_key(last_key)

    def clean(value: Any) -> Any:
        if secret_path and value is not None:
            return _redact_value(value)
        if isinstance(value, str):
            return redact_text(value)
        if isinstance(value, dict | list):
            return redact_json(value)
        return value

    message = diff.message
    if secret_path:
        for value in (diff.primary, diff.candidate):
            if isinstance(value, str) and value:
                message = message.replace(value, _fp(value))
    return replace(
        diff,
        primary=clean(diff.primary),
        candidate=clean(diff.candidate),
        message=redact_text(message),
    )


def redact_exchange(exchange: Exchange) -> Exchange:
    """A copy of `exchange` with every secret replaced; the input is never changed."""
    return replace(
        exchange,
        request=redact_request(exchange.request),
        primary=redact_response(exchange.primary),
        candidate=redact_response(exchange.candidate),
        secondary=redact_response(exchange.secondary),
        differences=[redact_difference(d) for d in exchange.differences],
        reason=redact_text(exchange.reason) if exchange.reason else None,
    )
