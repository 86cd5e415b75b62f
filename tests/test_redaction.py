"""No secret reaches disk: hypothesis generates requests and answers carrying secrets in headers,
cookies, query strings, form and JSON bodies (nested, any key case) and scans every written byte."""

from __future__ import annotations

import json
import urllib.parse

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.model import Body, Difference, Exchange, Kind, Request, Response
from harness.store import SegmentWriter, fingerprint, redact_text
from harness.store.redact import is_secret_key

secrets = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="\\\"'&=;,%+ "),
    min_size=8,
    max_size=40,
).filter(lambda s: "redacted" not in s and not s.isalpha())  # not a record word


def any_case(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flips: "".join(c.upper() if f else c for c, f in zip(word, flips, strict=True))
    )


secret_keys = st.sampled_from(
    ["password", "api_key", "access_token", "refresh_token", "client_secret", "apiKey",
     "private-key", "new_password", "X_Auth_Token", "session_id"]
).flatmap(any_case)
secret_headers = st.sampled_from(
    ["authorization", "x-api-key", "x-auth-token", "proxy-authorization", "x-refresh-token"]
).flatmap(any_case)


@st.composite
def nested_json(draw: st.DrawFn, key: str, secret: str) -> dict:
    node: object = {key: secret}
    for _ in range(draw(st.integers(0, 3))):
        wrapper = draw(st.sampled_from(["data", "user", "items", "credentials_list"]))
        node = {wrapper: [node]} if draw(st.booleans()) else {wrapper: node}
    return {"ok": True, **node}


@st.composite
def secret_exchanges(draw: st.DrawFn) -> tuple[Exchange, list[str]]:
    planted = [draw(secrets) for _ in range(6)]
    header_name = draw(secret_headers)
    header_value = planted[0] if "auth" not in header_name.lower() else f"Bearer {planted[0]}"
    key_json, key_form, key_query = draw(secret_keys), draw(secret_keys), draw(secret_keys)
    json_body = json.dumps(draw(nested_json(key_json, planted[1]))).encode()
    form = urllib.parse.urlencode({"username": "demo", key_form: planted[2]}).encode()
    as_form = draw(st.booleans())
    request = Request(
        method="POST",
        path="/auth/login",
        query=[(key_query, planted[3]), ("limit", "5")],
        headers=[
            (header_name, header_value),
            ("Cookie", f"session={planted[4]}; theme=dark"),
            ("content-type", FORM if as_form else "application/json"),
        ],
        body=Body.from_bytes(form if as_form else json_body),
    )
    answer_body = json.dumps({"access_token": planted[5], "token_type": "bearer"}).encode()
    response = Response(
        200,
        [("content-type", "application/json"),
         ("set-cookie", f"refresh={planted[4]}; HttpOnly; Secure; Path=/")],
        Body.from_bytes(answer_body),
    )
    diff = Difference("access_token", Kind.CHANGED, planted[5], planted[1], f"{planted[5]} differs")
    exchange = Exchange(request=request, primary=response, candidate=response,
                        differences=[diff])
    return exchange, planted


FORM = "application/x-www-form-urlencoded"


def forms_of(secret: str) -> set[str]:
    return {secret, urllib.parse.quote(secret), urllib.parse.quote_plus(secret),
            json.dumps(secret)[1:-1]}


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=secret_exchanges())
def test_no_generated_secret_reaches_disk(tmp_path, case):
    exchange, planted = case
    directory = tmp_path / f"rec-{id(exchange)}"
    with SegmentWriter(directory) as writer:
        writer.write(exchange)
    written = b"".join(p.read_bytes() for p in directory.iterdir()).decode()
    for secret in planted:
        for form in forms_of(secret):
            assert form not in written, (secret, form)


@settings(max_examples=200, deadline=None)
@given(secret=secrets)
def test_equal_secrets_get_equal_fingerprints(secret):
    assert fingerprint(secret) == fingerprint(secret)
    assert fingerprint(secret) != fingerprint(secret + "x")
    assert fingerprint(secret).startswith("redacted:sha256:")


@settings(max_examples=200, deadline=None)
@given(secret=secrets, key=secret_keys)
def test_redact_text_scrubs_pairs_and_jwts(secret, key):
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIn0.c2lnbmF0dXJl"
    text = f'log: {key}={secret} and "{key}": "{secret}" token {jwt}'
    scrubbed = redact_text(text)
    assert secret not in scrubbed and jwt not in scrubbed


@settings(max_examples=50, deadline=None)
@given(case=secret_exchanges())
def test_input_is_never_mutated(case):
    from harness.store import redact_exchange

    exchange, _ = case
    before = exchange.to_dict()
    redact_exchange(exchange)
    assert exchange.to_dict() == before


def test_a_cut_json_body_is_scrubbed_too(tmp_path):
    body = b'{"user": "demo", "password": "s3cret-pass-123", "notes": "' + b"x" * 5000 + b'"}'
    exchange = Exchange(request=Request("POST", "/auth/users", body=Body.from_bytes(body)),
                        primary=Response(201, [], Body.from_bytes(b"{}")))
    exchange.request.body = Body.from_bytes(body, cap=100)
    with SegmentWriter(tmp_path) as writer:
        writer.write(exchange)
    assert b"s3cret-pass-123" not in b"".join(p.read_bytes() for p in tmp_path.iterdir())


def test_token_type_and_expiry_are_not_secrets():
    assert not is_secret_key("token_type")
    assert not is_secret_key("expires_in")
    assert is_secret_key("Refresh-Token")
