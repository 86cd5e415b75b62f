"""No secret reaches disk: hypothesis plants random secrets in headers (any case), cookies, query
strings, form, multipart and JSON bodies (nested, any key case), JWT signatures and differences,
writes the exchange through SegmentWriter and scans every written byte for each secret in every
form it could take (raw, url-encoded, JSON-escaped)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import urllib.parse
import uuid

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.model import Body, Difference, Exchange, Kind, Request, Response
from harness.store import SegmentWriter, fingerprint, redact_exchange, redact_text
from harness.store.redact import (
    PASSWORD_MARKER,
    is_secret_header,
    is_secret_key,
    redact_difference,
)
from harness.store.redaction_key import redaction_key

FORM = "application/x-www-form-urlencoded"
FINGERPRINT = re.compile(r"^redacted:sha256:[0-9a-f]{8}$")
PRINTABLE = st.characters(min_codepoint=33, max_codepoint=126)  # printable ASCII but space


def _plausible(secret: str) -> bool:
    # A secret made of one or two characters could occur in the record by chance (a timestamp's
    # "00000000"), and one made of letters only could be one of its words ("mirrored").
    return (len(set(secret)) >= 4 and not secret.isalpha()
            and secret.lower() not in VOCABULARY)


def secrets(alphabet: st.SearchStrategy[str] = PRINTABLE) -> st.SearchStrategy[str]:
    """Random secrets: at least 8 printable characters."""
    return st.text(alphabet, min_size=8, max_size=40).filter(_plausible)


# Cookie values cannot hold ; , " \ or whitespace (RFC 6265 cookie-octet).
cookie_secrets = secrets(st.characters(min_codepoint=33, max_codepoint=126,
                                       blacklist_characters=';,"\\'))
# Secrets in free text (log lines, reasons): a log line cannot delimit a secret holding a space,
# a quote, a backslash or an & (which ends a query parameter).
text_secrets = secrets(st.characters(min_codepoint=33, max_codepoint=126,
                                     blacklist_characters="\"'&\\"))
# A JWT signature is base64url.
jwt_signatures = secrets(st.sampled_from(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


def any_case(word: str) -> st.SearchStrategy[str]:
    """`word` with each letter upper- or lower-cased at random."""
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flips: "".join(c.upper() if f else c.lower() for c, f in zip(word, flips,
                                                                              strict=True))
    )


SECRET_KEYS = ["password", "passwd", "secret", "client_secret", "token", "access_token",
               "refresh_token", "id_token", "api_key", "apiKey", "API-KEY", "api_secret",
               "private_key", "private-key", "authorization", "cookie", "new_password",
               "current-password", "session_token", "x_auth_token", "signing_key", "secretKey",
               "key"]
secret_keys = st.sampled_from(SECRET_KEYS).flatmap(any_case)
secret_headers = st.sampled_from(
    ["authorization", "proxy-authorization", "x-api-key", "x-auth-token", "x-refresh-token",
     "x-client-secret", "x-mbx-apikey", "x-user-password", "ok-access-key"]
).flatmap(any_case)


@st.composite
def nested_json(draw: st.DrawFn, key: str, secret: str) -> dict:
    """`{key: secret}` wrapped in up to four levels of objects and arrays."""
    node: object = {key: secret, "symbol": "BTC-USDT"}
    for _ in range(draw(st.integers(0, 4))):
        wrapper = draw(st.sampled_from(["data", "user", "items", "settings", "payload"]))
        node = {wrapper: [1, node]} if draw(st.booleans()) else {wrapper: node, "n": 2}
    return {"ok": True, **node}


def _jwt(signature: str) -> str:
    return "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIn0." + signature


def _multipart(key: str, secret: str) -> bytes:
    return (f'--XyZ\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{secret}\r\n'
            '--XyZ\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--XyZ--\r\n'
            ).encode()


@st.composite
def secret_exchanges(draw: st.DrawFn) -> tuple[Exchange, list[str]]:
    """An exchange carrying secrets in every place one can hide, and the list of them."""
    header_secret, json_secret, form_secret, query_secret = (draw(secrets()) for _ in range(4))
    answer_secret, message_secret = draw(secrets()), draw(text_secrets)
    cookie_secret = draw(cookie_secrets)
    signature = draw(jwt_signatures)
    planted = [header_secret, json_secret, form_secret, query_secret, answer_secret,
               message_secret, cookie_secret, signature]

    header_name = draw(secret_headers)
    header_value = header_secret
    if "authorization" in header_name.lower():
        header_value = f"{draw(st.sampled_from(['Bearer', 'Basic', 'Token']))} {header_secret}"
    body_kind = draw(st.sampled_from(["json", "form", "multipart"]))
    body_key = draw(secret_keys)
    if body_kind == "json":
        body = json.dumps(draw(nested_json(body_key, json_secret))).encode()
        content_type = "application/json"
    elif body_kind == "form":
        body = urllib.parse.urlencode({"username": "demo", body_key: json_secret,
                                       "grant_type": "password"}).encode()
        content_type = FORM
    else:
        body = _multipart(body_key, json_secret.replace("\r", "").replace("\n", ""))
        content_type = "multipart/form-data; boundary=XyZ"
    form_pairs = urllib.parse.urlencode({draw(secret_keys): form_secret})
    request = Request(
        method="POST",
        path=f"/auth/verify/{_jwt(signature)}",
        query=[(draw(secret_keys), query_secret), ("limit", "5")],
        headers=[
            (header_name, header_value),
            (draw(any_case("cookie")), f"session={cookie_secret}; theme=dark"),
            ("content-type", content_type),
            ("referer", f"https://app.local/cb?{form_pairs}"),
        ],
        body=Body.from_bytes(body),
    )
    answer = {"access_token": _jwt(signature), "token_type": "bearer",
              draw(secret_keys): answer_secret, "nested": [{"Refresh_Token": answer_secret}]}
    response = Response(
        200,
        [("content-type", "application/json"),
         (draw(any_case("set-cookie")), f"refresh={cookie_secret}; HttpOnly; Secure; Path=/")],
        Body.from_bytes(json.dumps(answer).encode()),
        12.0,
    )
    differences = [
        Difference("nested[0].refresh_token", Kind.CHANGED, answer_secret, message_secret,
                   f"{answer_secret} != {message_secret}"),
        Difference("@headers.set-cookie", Kind.CHANGED, f"refresh={cookie_secret}", None, ""),
    ]
    exchange = Exchange(request=request, primary=response, candidate=response,
                        secondary=response, differences=differences,
                        reason=f"candidate said password={message_secret}")
    return exchange, planted


# The fixed words of the generated exchanges (checked when a secret is drawn): a secret that is
# part of one ("content-", "ltipart/") is not a leak.
_SAMPLE = Exchange(Request("POST", "/auth/verify/", headers=[("referer", "https://app.local/cb?")]),
                   Response(200, [], Body.from_bytes(b"x")), Response(error="x"), Response(),
                   differences=[Difference("@headers.set-cookie", Kind.CHANGED, 1, 2, "")],
                   reason="candidate said password=")
VOCABULARY = " ".join([
    orjson.dumps(_SAMPLE.to_dict()).decode(), *SECRET_KEYS,
    "authorization proxy-authorization x-api-key x-auth-token x-refresh-token x-client-secret",
    "x-mbx-apikey x-user-password ok-access-key content-type set-cookie cookie referer",
    "redacted:sha256:", PASSWORD_MARKER, "application/json", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=XyZ", 'Content-Disposition: form-data; name="note"',
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIn0.", "HttpOnly; Secure; Path=/",
    "grant_type=password", "username=demo", "BTC-USDT", "session=", "theme=dark", "refresh=",
    "nested[0].refresh_token", "data user items settings payload symbol token_type bearer",
]).lower()


def forms_of(secret: str) -> set[str]:
    """Every way a secret can be spelled in a record."""
    return {secret, urllib.parse.quote(secret), urllib.parse.quote_plus(secret),
            urllib.parse.quote(secret, safe=""), json.dumps(secret)[1:-1],
            orjson.dumps(secret).decode()[1:-1], json.dumps(json.dumps(secret))[1:-1]}


def _written(directory) -> str:
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir())).decode()


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=secret_exchanges())
def test_no_generated_secret_reaches_disk(tmp_path, case):
    exchange, planted = case
    directory = tmp_path / uuid.uuid4().hex  # tmp_path is shared by the examples
    with SegmentWriter(directory) as writer:
        writer.write(exchange)
    written = _written(directory)
    for secret in planted:
        for form in forms_of(secret):
            assert form not in written, (secret, form)
    # Equal secrets keep equal fingerprints: the session cookie of the request and the
    # Set-Cookie of the answer correlate.
    assert written.count(fingerprint(planted[6])) >= 3
    # What is not secret survives.
    assert "theme=" in written and "HttpOnly; Secure; Path=/" in written
    assert "eyJzdWIiOiJkZW1vIn0" in written  # JWT claims are kept


@settings(max_examples=100, deadline=None)
@given(case=secret_exchanges())
def test_redaction_is_idempotent_and_never_mutates_its_input(case):
    exchange, _ = case
    before = exchange.to_dict()
    once = redact_exchange(exchange)
    assert exchange.to_dict() == before
    assert redact_exchange(once).to_dict() == once.to_dict()


@settings(max_examples=200, deadline=None)
@given(secret=secrets(), other=secrets())
def test_equal_secrets_get_equal_fingerprints(secret, other):
    assert fingerprint(secret) == fingerprint(secret)
    assert FINGERPRINT.match(fingerprint(secret))
    digest = hmac.new(redaction_key(), secret.encode(), hashlib.sha256).hexdigest()
    assert fingerprint(secret) == "redacted:sha256:" + digest[:8]
    # Keyed: the plain digest of a guess does not find the secret.
    plain = hashlib.sha256(secret.encode()).hexdigest()[:8]
    assert fingerprint(secret) != "redacted:sha256:" + plain
    if other != secret:
        assert fingerprint(other) != fingerprint(secret)


def test_the_redaction_key_variable_overrides_the_key_file(monkeypatch):
    plain = fingerprint("demo")
    monkeypatch.setenv("PARITY_REDACTION_KEY", "site-key")
    keyed = fingerprint("demo")
    expected = hmac.new(b"site-key", b"demo", hashlib.sha256).hexdigest()[:8]
    assert keyed == "redacted:sha256:" + expected != plain
    assert fingerprint("demo") == keyed




@settings(max_examples=200, deadline=None)
@given(secret=text_secrets, key=secret_keys, signature=jwt_signatures)
def test_redact_text_scrubs_log_lines(secret, key, signature):
    line = (f'POST /x?{key}={secret} body {{{json.dumps(key)}: {json.dumps(secret)}}} '
            f'token {_jwt(signature)} header Authorization: Bearer {secret}')
    scrubbed = redact_text(line)
    assert secret not in scrubbed and json.dumps(secret)[1:-1] not in scrubbed
    assert signature not in scrubbed
    assert redact_text(scrubbed) == scrubbed


@settings(max_examples=200, deadline=None)
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
        | st.text(st.characters(codec="utf-8")),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(
            st.sampled_from(["symbol", "price", "token_type", "expires_in", "key_id",
                             "idempotency_key", "sort_key", "public_key", "timeframe",
                             "trades", "max_tokens"]), children, max_size=4),
        max_leaves=20,
    )
)
def test_bodies_without_secrets_keep_their_exact_bytes(body):
    raw = orjson.dumps({"data": body})
    exchange = Exchange(request=Request("GET", "/api/v1/x"),
                        primary=Response(200, [("content-type", "application/json")],
                                         Body.from_bytes(raw)))
    assert redact_exchange(exchange).primary.body.to_dict() == exchange.primary.body.to_dict()


# ------------------------------------------------------------------------------- single cases


def test_headers_keep_their_scheme_cookie_names_and_attributes():
    exchange = Exchange(
        request=Request("GET", "/auth/users/me", headers=[
            ("Authorization", "Bearer abcdefgh12345"),
            ("Cookie", "session=abc123456; theme=dark"),
            ("X-Request-Id", "r-1"),
            ("Idempotency-Key", "order-77"),
        ]),
        primary=Response(200, [("Set-Cookie", "sid=xyz98765; Path=/; HttpOnly"),
                               ("Location", "/next?token=abcdefgh&page=2")]),
    )
    safe = redact_exchange(exchange)
    headers = dict(safe.request.headers)
    assert headers["Authorization"] == "Bearer " + fingerprint("abcdefgh12345")
    assert headers["Cookie"] == (f"session={fingerprint('abc123456')};"
                                 f" theme={fingerprint('dark')}")
    assert headers["X-Request-Id"] == "r-1" and headers["Idempotency-Key"] == "order-77"
    answer = dict(safe.primary.headers)
    assert answer["Set-Cookie"] == f"sid={fingerprint('xyz98765')}; Path=/; HttpOnly"
    assert answer["Location"] == f"/next?token={fingerprint('abcdefgh')}&page=2"


def test_a_login_form_loses_only_its_password_and_replay_can_still_read_it():
    exchange = Exchange(
        request=Request("POST", "/auth/login", headers=[("content-type", FORM)],
                        body=Body.from_bytes(b"grant_type=password&username=demo&password=demo")),
        primary=Response(200),
    )
    text = redact_exchange(exchange).request.body.text
    assert text == f"grant_type=password&username=demo&password={fingerprint('demo')}"
    assert dict(urllib.parse.parse_qsl(text))["password"] == fingerprint("demo")


def test_a_jwt_keeps_header_and_claims_and_loses_its_signature():
    token = _jwt("c2lnbmF0dXJlLXNlY3JldA")
    body = Body.from_bytes(json.dumps({"access_token": token, "note": f"was {token}"}).encode())
    exchange = Exchange(request=Request("POST", "/auth/refresh"),
                        primary=Response(200, [("content-type", "application/json")], body))
    data = json.loads(redact_exchange(exchange).primary.body.text)
    header, claims, signature = data["access_token"].split(".", 2)
    assert (header, claims) == tuple(token.split(".")[:2])
    assert signature == fingerprint(token)
    assert data["note"] == "was " + data["access_token"]


@pytest.mark.parametrize("cut", [60, 64, 70, 75, 90])
def test_a_cut_json_body_is_scrubbed_by_pattern(tmp_path, cut):
    raw = b'{"user": "demo", "items": [1, 2], "password": "s3cret-pass-123", "pin": 123456, '
    raw += b'"notes": "' + b"x" * 500 + b'"}'
    exchange = Exchange(request=Request("POST", "/auth/users"),
                        primary=Response(201, [], Body.from_bytes(raw, cap=cut)))
    with SegmentWriter(tmp_path) as writer:
        writer.write(exchange)
    written = _written(tmp_path)
    # Whatever part of the secret survived the cut, none of it reaches the disk.
    for end in range(3, len("s3cret-pass-123") + 1):
        assert "s3cret-pass-123"[:end] not in written
    assert "123456" not in written


def test_a_secret_body_cut_by_the_writer_is_redacted_before_the_cut(tmp_path):
    raw = json.dumps({"notes": "x" * 5000, "password": "s3cret-pass-123"}).encode()
    exchange = Exchange(request=Request("POST", "/auth/users", body=Body.from_bytes(raw)),
                        primary=Response(201))
    with SegmentWriter(tmp_path, body_cap=100) as writer:
        writer.write(exchange)
    assert "s3cret-pass-123" not in _written(tmp_path)


def test_binary_bodies_are_left_as_they_are():
    body = Body.from_bytes(b"\xff\xfepassword=abc")
    exchange = Exchange(request=Request("POST", "/upload", body=body), primary=Response(200))
    assert redact_exchange(exchange).request.body == body


def test_differences_on_secret_paths_and_headers_are_redacted():
    diff = redact_difference(Difference("data.credentials.password", Kind.CHANGED, "hunter22",
                                        "hunter23", "hunter22 vs hunter23"))
    # A password outside a login is a constant marker: nothing to correlate or guess against.
    assert (diff.primary, diff.candidate) == (PASSWORD_MARKER, PASSWORD_MARKER)
    assert "hunter2" not in diff.message
    diff = redact_difference(Difference("data.api_secret", Kind.CHANGED, "hunter22",
                                        "hunter23", "hunter22 vs hunter23"))
    assert (diff.primary, diff.candidate) == (fingerprint("hunter22"), fingerprint("hunter23"))
    diff = redact_difference(Difference("@headers.authorization", Kind.CHANGED,
                                        ["Bearer abcdefgh1"], ["Bearer abcdefgh2"], "differs"))
    assert diff.primary == ["Bearer " + fingerprint("abcdefgh1")]
    diff = redact_difference(Difference("results.sharpe_ratio", Kind.CHANGED, 1.5, 1.25, "x"))
    assert (diff.primary, diff.candidate) == (1.5, 1.25)


@pytest.mark.parametrize(
    "name",
    ["password", "Password", "NEW_PASSWORD", "passwd", "client_secret", "token", "access_token",
     "refresh-token", "id_token", "api_key", "apiKey", "API-KEY", "api_secret", "private_key",
     "privateKey", "authorization", "cookie", "session_token", "csrf_token", "signing_key",
     "secretKey", "key", "otp", "backup_codes", "manual_entry_code", "signature", "passphrase"],
)
def test_secret_keys(name):
    assert is_secret_key(name)


@pytest.mark.parametrize(
    "name",
    ["token_type", "expires_in", "refresh_token_expires_in", "key_id", "next_key_id", "keys",
     "api_keys", "idempotency_key", "sort_key", "public_key", "monkey", "symbol", "max_tokens",
     "next_page_token", "password_changed_at", "tokenUrl"],
)
def test_keys_that_are_not_secrets(name):
    assert not is_secret_key(name)


@pytest.mark.parametrize(
    ("name", "secret"),
    [("Authorization", True), ("X-API-KEY", True), ("x_auth_token", True),
     ("X-MBX-APIKEY", True), ("OK-ACCESS-KEY", True), ("X-Session-Id", True),
     ("Sec-WebSocket-Key", False), ("Idempotency-Key", False), ("Content-Type", False),
     ("X-Request-Id", False)],
)
def test_secret_headers(name, secret):
    assert is_secret_header(name) is secret
