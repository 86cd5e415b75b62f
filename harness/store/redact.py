"""Redaction: no secret reaches disk, a log line or a report.

A secret is replaced by a stable fingerprint, ``redacted:sha256:1f2e3d4c``: the first 8 hex digits
of HMAC-SHA256(key, secret), so equal secrets still correlate across exchanges (the same session
cookie, the same API key) while nobody holding the recordings can test guesses against them
offline. The key lives outside the recordings (see `harness.store.redaction_key`: the
``PARITY_REDACTION_KEY`` variable, else the file ``PARITY_REDACTION_KEY_FILE``, else
``~/.config/cryptobot-parity/redaction.key``, created 0600 on first use); recording and replay
share it. 8 hex digits are for correlation, not identity: among ~65,000 distinct secrets two are
likely to share one.

A password is fingerprinted only where a replay may need to restore it: the ``password`` field of
a login (a body that also names the user: ``username``, ``email``, ``login``); every other
password (a change or reset, one in an answer, a query or free text) becomes the constant
``redacted:password``, which says nothing about it.

Where secrets are found:

- headers of the request and of every answer: Authorization and Proxy-Authorization (the scheme
  is kept: ``Bearer redacted:sha256:…``), Cookie and Set-Cookie (cookie names and attributes are
  kept, every value is redacted), X-API-Key, X-Auth-Token, and any header whose name contains
  token, secret, api-key, apikey, password, passwd, passphrase, session, signature or
  credential, or ends in ``-key`` (any case; ``_`` counts as ``-``); other header values are
  scrubbed like free text (a ``Location: …?token=…`` loses its token);
- JSON bodies at any depth, form bodies (``application/x-www-form-urlencoded``, e.g. the OAuth2
  login ``username=demo&password=demo``), multipart form fields and query strings, under a
  *secret key* (see `is_secret_key`); a secret subtree (``"credentials": {…}``) becomes one
  fingerprint; strings inside JSON are scrubbed like free text too;
- JWTs anywhere (three base64url parts starting ``eyJ``): the signature is replaced by the
  fingerprint of the whole token, header and claims are kept. Claims are not secret and are what
  the auth comparator compares; a token without its signature cannot be used;
- bodies that are cut (over the size cap) or do not parse, log lines and report text
  (`redact_text`): a pattern scrub of JWTs, ``"key": "value"`` and ``key=value`` pairs under a
  secret key, and ``Bearer``/``Basic`` credentials.

Not redacted: binary bodies (kept as base64, including bodies whose Content-Encoding could not be
undone), the request path except for JWTs in it, and YAML-style ``password: x`` in free text
(too many false positives in prose such as difference messages).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import urllib.parse
from dataclasses import replace
from typing import Any

import orjson

from harness.diff import paths
from harness.model import Body, Difference, Exchange, Request, Response
from harness.store.redaction_key import KEY_ENV as KEY_ENV  # re-exported
from harness.store.redaction_key import redaction_key

PREFIX = "redacted:sha256:"
PASSWORD_MARKER = "redacted:password"

# Key names are compared lower-cased with "-" and "_" removed: "API-Key", "api_key" and "apiKey"
# are all "apikey".
_SECRET_SUFFIXES = (
    "password", "passwd", "passphrase", "pwd", "secret", "token", "apikey", "privatekey",
    "sessionid", "signature", "credential", "credentials",
    # "<word>key" written without a separator (secretkey, SIGNINGKEY)
    "secretkey", "accesskey", "signingkey", "encryptionkey", "masterkey", "authkey",
    "sessionkey", "hmackey", "clientkey",
)
_SECRET_NAMES = frozenset({
    "authorization", "cookie", "setcookie", "key", "pass", "passkey", "otp", "totp", "pin",
    "mfacode", "otpcode", "backupcodes", "recoverycodes", "manualentrycode", "qrcode", "sig",
})
# Names that end like a secret but are not one: token metadata, pagination cursors, and "keys"
# that are identifiers (an idempotency key must survive so replays keep deduplicating orders).
_NOT_SECRET = frozenset({
    "tokentype", "expiresin", "tokenexpiry", "passwordchangedat",
    "pagetoken", "nextpagetoken", "nexttoken", "continuationtoken",
    "sortkey", "idempotencykey", "partitionkey", "primarykey", "foreignkey", "cachekey",
    "publickey", "routingkey", "groupkey", "dedupkey", "dedupekey", "lookupkey", "objectkey",
    "messagekey", "translationkey", "i18nkey", "statekey", "configkey", "settingkey",
    "metrickey", "featurekey", "hashkey", "rangekey",
})
# Any other key ending in a separate word "key" (signing_key, secretKey, X-ACCESS-KEY) is a
# secret: unknown keys fail closed.
_KEY_WORD_AT_END = re.compile(r"(?:[_.\-][Kk][Ee][Yy]|[a-z0-9]Key)$")

_ALWAYS_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token"}
)
_SECRET_HEADER_WORDS = (
    "token", "secret", "api-key", "apikey", "password", "passwd", "passphrase", "session",
    "signature", "credential",
)
_NOT_SECRET_HEADER_ENDINGS = ("sec-websocket-key", "idempotency-key")

# A cheap look before parsing a body: without one of these (in the lower-cased text) it holds no
# secret key, no JWT and no credential. Lower-casing first: an IGNORECASE alternation is ~40x
# slower on a large body.
_HINT = re.compile(
    r"pass|pwd|secret|token|key|auth|cookie|eyj|otp|session|sig|pin|code|credential|bearer|basic"
)
# Strings inside parsed JSON are scrubbed only when they could hold a JWT, a key=value pair,
# embedded JSON or a credential.
_STRING_HINT = re.compile(r'eyJ|=|"|(?i:bearer|basic)\s')
# The signature must be followed by something that cannot continue it, so an already redacted
# token (whose signature became a fingerprint) is not redacted again.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(?![A-Za-z0-9_~:-])")
# "key": "value" (the value may be cut short) or "key": 123, in JSON that could not be parsed.
_JSON_PAIR = re.compile(
    r'"((?:[^"\\]|\\.){1,200})"(\s*:\s*)(?:"((?:[^"\\]|\\.)*)("?)|(-?\d[\d.eE+-]*))'
)
# key=value in query strings, form bodies, URLs and log lines.
_FORM_PAIR = re.compile(
    r"""(?<![\w%.-])([A-Za-z_][\w.\-]{0,200})=("[^"\n]*"?|'[^'\n]*'?|[^&\s"]*)"""
)
_CREDENTIAL = re.compile(
    r"\b(Bearer\s+)(?!eyJ)(?!redacted:)([^\s\"'\\]{8,})"
    r"|\b(Basic\s+)(?!redacted:)([A-Za-z0-9+/]{8,}={0,2})(?![\w=\"])",
    re.IGNORECASE,
)
_MULTIPART_FIELD = re.compile(
    r'(name="([^"]{1,200})"[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*?\r?\n)([^\r\n]*)', re.IGNORECASE
)


def fingerprint(secret: str) -> str:
    """The stable stand-in for `secret`: ``redacted:sha256:`` and the first 8 hex digits of its
    HMAC-SHA256 under the redaction key (see the module docstring)."""
    data = secret.encode("utf-8", "surrogatepass")
    return PREFIX + hmac.new(redaction_key(), data, hashlib.sha256).hexdigest()[:8]


_PASSWORD_WORDS = ("password", "passwd", "passphrase", "pwd")
# A body naming one of these next to its `password` is a login: a replay may restore it.
_LOGIN_NAMES = frozenset({"username", "email", "login", "user", "userid"})


def is_password_key(name: str) -> bool:
    """Whether a key or header names a password (any case, ``-``/``_`` ignored)."""
    norm = _normalise(name)
    return norm == "pass" or norm.endswith(_PASSWORD_WORDS)


def _restorable(name: str, siblings: Any) -> bool:
    """A login's password: the one password a replay may need to restore (by its fingerprint)."""
    return _normalise(name) == "password" and any(
        _normalise(str(s)) in _LOGIN_NAMES for s in siblings
    )


def _fp(value: str) -> str:
    """The stand-in for one secret string. Already redacted values are kept (redaction is
    idempotent); a JWT keeps its header and claims and loses its signature."""
    if value.startswith(PREFIX) or value == PASSWORD_MARKER or PREFIX in value.rpartition(".")[2]:
        return value
    if _JWT.fullmatch(value):
        header, claims, _ = value.split(".", 2)
        return f"{header}.{claims}.{fingerprint(value)}"
    return fingerprint(value)


def _redact_value(value: Any, key: str = "", siblings: Any = ()) -> Any:
    """The stand-in for a value under the secret key `key`: strings and whole subtrees are
    fingerprinted (a password other than a login's becomes the constant marker); null and
    booleans (``"has_password": true``) say nothing and are kept."""
    if value is None or isinstance(value, bool) or value == "":
        return value
    if key and is_password_key(key) and not _restorable(key, siblings):
        return PASSWORD_MARKER
    if isinstance(value, str):
        return _fp(value)
    return fingerprint(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())


def _normalise(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


@functools.lru_cache(maxsize=4096)  # a large body repeats the same few keys many times
def is_secret_key(name: str) -> bool:
    """Whether a JSON, form or query key names a secret: any case, ``-``/``_`` ignored, a secret
    word (password, token, secret, api_key, private_key, …) or a name ending in one, or any name
    ending in a separate word "key"; minus a short allow-list (token_type, expires_in,
    idempotency_key, sort_key, public_key, page tokens, …)."""
    norm = _normalise(name)
    if norm in _NOT_SECRET:
        return False
    if norm in _SECRET_NAMES or norm.endswith(_SECRET_SUFFIXES):
        return True
    return bool(_KEY_WORD_AT_END.search(name))


def is_secret_header(name: str) -> bool:
    """Whether a header's whole value is a secret."""
    lname = name.lower().replace("_", "-")
    if lname.endswith(_NOT_SECRET_HEADER_ENDINGS):
        return False
    if lname in _ALWAYS_SECRET_HEADERS or lname.endswith("-key"):
        return True
    return any(word in lname for word in _SECRET_HEADER_WORDS)


def _json_unescape(text: str) -> str:
    try:
        value = orjson.loads(f'"{text}"')
    except orjson.JSONDecodeError:
        return text  # cut inside an escape: fingerprint what is there
    return value if isinstance(value, str) else text


def _json_pair(match: re.Match[str]) -> str:
    key = _json_unescape(match.group(1))
    if not is_secret_key(key):
        return match.group(0)
    head = f'"{match.group(1)}"{match.group(2)}'
    if is_password_key(key):
        return f'{head}"{PASSWORD_MARKER}"'
    if match.group(5) is not None:  # a number
        return f'{head}"{fingerprint(match.group(5))}"'
    value = _json_unescape(match.group(3))
    if not value:
        return match.group(0)
    return f'{head}"{_fp(value)}"'


def _form_pair(match: re.Match[str]) -> str:
    key, value = match.group(1), match.group(2)
    quote = value[:1] if value[:1] in ("'", '"') else ""
    inner = value[len(quote):]
    if quote and inner.endswith(quote):
        inner = inner[:-1]
    name = urllib.parse.unquote_plus(key)
    if not inner or not is_secret_key(name):
        return match.group(0)
    if is_password_key(name):
        return f"{key}={quote}{PASSWORD_MARKER}{quote}"
    return f"{key}={quote}{_fp(urllib.parse.unquote_plus(inner))}{quote}"


def _credential(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return match.group(1) + _fp(match.group(2))
    return match.group(3) + _fp(match.group(4))


def redact_text(text: str) -> str:
    """Free text (a log line, report text, a body that does not parse) with its secrets replaced:
    JWTs, ``"key": "value"`` and ``key=value`` pairs under a secret key, and ``Bearer``/``Basic``
    credentials."""
    if not text:
        return text
    lowered = text.lower()
    if not _HINT.search(lowered):
        return text
    if "eyJ" in text:
        text = _JWT.sub(lambda m: _fp(m.group(0)), text)
    if '"' in text:
        text = _JSON_PAIR.sub(_json_pair, text)
    if "=" in text:
        text = _FORM_PAIR.sub(_form_pair, text)
    if "bearer" in lowered or "basic" in lowered:
        text = _CREDENTIAL.sub(_credential, text)
    return text


def redact_json(value: Any) -> Any:
    """A parsed JSON value with every secret replaced. Unchanged subtrees are returned as the
    very same objects, so ``redact_json(v) is v`` says nothing was secret."""
    if isinstance(value, dict):
        changed = False
        out: dict[Any, Any] = {}
        for key, item in value.items():
            new = (_redact_value(item, str(key), value) if is_secret_key(str(key))
                   else redact_json(item))
            changed = changed or new is not item
            out[key] = new
        return out if changed else value
    if isinstance(value, list):
        items = [redact_json(item) for item in value]
        if any(new is not old for new, old in zip(items, value, strict=True)):
            return items
        return value
    if isinstance(value, str) and _STRING_HINT.search(value):
        new_text = redact_text(value)
        return value if new_text == value else new_text
    return value


def redact_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Query-string or form pairs (decoded) with secret values replaced."""
    return [(k, _redact_value(v, k) if v and is_secret_key(k) else redact_text(v))
            for k, v in pairs]


def _redact_cookie_pair(pair: str) -> str:
    name, sep, value = pair.partition("=")
    if not sep or not value.strip():
        return pair
    return f"{name}={_fp(value.strip())}"


def redact_header(name: str, value: str) -> str:
    """One header's value, redacted when it carries a secret."""
    lname = name.lower()
    if lname in ("authorization", "proxy-authorization"):
        scheme, sep, credential = value.strip().partition(" ")
        return f"{scheme} {_fp(credential.strip())}" if sep and credential.strip() else _fp(value)
    if lname == "cookie":
        return ";".join(_redact_cookie_pair(part) for part in value.split(";"))
    if lname == "set-cookie":
        first, sep, attributes = value.partition(";")
        return _redact_cookie_pair(first) + sep + attributes
    if is_secret_header(name):
        return str(_redact_value(value, name))
    return redact_text(value)


def _redact_form(text: str) -> str:
    """A urlencoded form with secret values replaced; everything else keeps its exact bytes."""
    parts = []
    names = [urllib.parse.unquote_plus(part.partition("=")[0]) for part in text.split("&")]
    for part in text.split("&"):
        name, sep, value = part.partition("=")
        if sep and value:
            decoded = urllib.parse.unquote_plus(value)
            key = urllib.parse.unquote_plus(name)
            if is_secret_key(key):
                safe = _redact_value(decoded, key, names)
                part = f"{name}={urllib.parse.quote(safe, safe=':')}"
            else:
                scrubbed = redact_text(decoded)
                if scrubbed != decoded:
                    part = f"{name}={urllib.parse.quote_plus(scrubbed, safe=':')}"
        parts.append(part)
    return "&".join(parts)


def _multipart_field(match: re.Match[str], names: list[str]) -> str:
    if not match.group(3) or not is_secret_key(match.group(2)):
        return match.group(0)
    return match.group(1) + str(_redact_value(match.group(3), match.group(2), names))


def _content_type(headers: list[tuple[str, str]]) -> str:
    return next((v.lower() for k, v in headers if k.lower() == "content-type"), "")


def _redact_body_text(text: str, content_type: str, truncated: bool) -> str:
    if text.lstrip()[:1] in ("{", "[") and not truncated:
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            return redact_text(text)
        redacted = redact_json(parsed)
        if redacted is parsed:
            return text  # nothing secret: keep the exact bytes
        return orjson.dumps(redacted, option=orjson.OPT_NON_STR_KEYS).decode()
    if "x-www-form-urlencoded" in content_type:
        return _redact_form(text)
    if "multipart/form-data" in content_type:
        names = [m.group(2) for m in _MULTIPART_FIELD.finditer(text)]
        text = _MULTIPART_FIELD.sub(lambda m: _multipart_field(m, names), text)
    return redact_text(text)


def redact_body(body: Body, content_type: str = "") -> Body:
    """A copy of `body` with its secrets replaced (text bodies only; binary is left as it is).

    `size` keeps describing the wire; `sha256` becomes the digest of what is stored, since the
    digest of a short secret-bearing body could be looked up in a dictionary."""
    text = body.text
    if not text or not _HINT.search(text.lower()):
        return replace(body)
    new_text = _redact_body_text(text, content_type, body.truncated)
    if new_text == text:
        return replace(body)
    return replace(body, text=new_text, sha256=hashlib.sha256(new_text.encode()).hexdigest())


def redact_request(request: Request) -> Request:
    """A copy of `request` with every secret replaced."""
    return replace(
        request,
        path=redact_text(request.path),
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
        error=redact_text(response.error) if response.error else response.error,
    )


def redact_difference(diff: Difference) -> Difference:
    """A copy of `diff` whose values and message hold no secret."""
    if diff.path.startswith("@headers."):
        name = diff.path[len("@headers."):]

        def clean(value: Any) -> Any:
            if isinstance(value, str):
                return redact_header(name, value)
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        secret_path = is_secret_header(name) or name in ("cookie", "set-cookie")
    else:
        keys = paths.keys(diff.path)
        # `access_token.claims.exp`: the auth comparator reports a token's decoded claims, which
        # are not the secret (the token string never appears); judge only the keys below them.
        for marker in ("claims", "header"):
            if marker in keys:
                keys = keys[len(keys) - keys[::-1].index(marker):]
        secret_key = next((key for key in reversed(keys) if is_secret_key(key)), "")
        secret_path = bool(secret_key)

        def clean(value: Any) -> Any:
            if secret_path:
                return _redact_value(value, secret_key)
            if isinstance(value, str):
                return redact_text(value)
            if isinstance(value, dict | list):
                return redact_json(value)
            return value

    primary, candidate = clean(diff.primary), clean(diff.candidate)
    message = diff.message
    if secret_path:
        for raw, safe in ((diff.primary, primary), (diff.candidate, candidate)):
            if isinstance(raw, str | int | float) and not isinstance(raw, bool) and str(raw):
                message = message.replace(str(raw), str(safe))
    return replace(diff, primary=primary, candidate=candidate, message=redact_text(message))


def redact_exchange(exchange: Exchange) -> Exchange:
    """A copy of `exchange` with every secret replaced; the input is never changed.

    Redacting twice gives the same result as redacting once."""
    return replace(
        exchange,
        request=redact_request(exchange.request),
        primary=redact_response(exchange.primary) or Response(),
        candidate=redact_response(exchange.candidate),
        secondary=redact_response(exchange.secondary),
        differences=[redact_difference(d) for d in exchange.differences],
        reason=redact_text(exchange.reason) if exchange.reason else exchange.reason,
        session=redact_text(exchange.session) if exchange.session else exchange.session,
    )
