"""Replay credentials: only tokens a recorded session's login minted are swapped for fresh ones (a
garbage token stays garbage); the service account's password never comes from the command line."""

from __future__ import annotations

import base64
import json

import orjson
import pytest

from harness.errors import UserError
from harness.model import Body, Request, Response
from harness.replay.credentials import (
    MintedTokens,
    ServiceAccount,
    Tokens,
    first_credential,
    require_login,
    with_fresh_credentials,
)
from harness.store.redact import redact_request, redact_response

JSON = [("content-type", "application/json")]
FORM = [("content-type", "application/x-www-form-urlencoded")]
ACCOUNT = ServiceAccount("demo", "demo")
FRESH = Tokens("fresh-access", "fresh-refresh")


def jwt(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJlLWJ5dGVz"


ACCESS = jwt({"sub": "demo", "token_type": "access", "jti": "a1"})
REFRESH = jwt({"sub": "demo", "token_type": "refresh", "jti": "r1"})


def recorded_login() -> Response:
    body = {"access_token": ACCESS, "refresh_token": REFRESH, "token_type": "bearer"}
    return redact_response(Response(200, JSON, Body.from_bytes(orjson.dumps(body))))


def recorded(request: Request) -> Request:
    return redact_request(request)


def refresh_with(token: str) -> Request:
    return recorded(Request("POST", "/auth/refresh", headers=JSON,
                            body=Body.from_bytes(orjson.dumps({"refresh_token": token}))))


def swap(request: Request, minted: MintedTokens, session: str = "s1") -> Request:
    return with_fresh_credentials(request, FRESH, ACCOUNT,
                                  lambda value: minted.kind(session, value))


def test_tokens_the_sessions_login_minted_are_swapped_for_fresh_ones():
    minted = MintedTokens()
    minted.learn("s1", recorded_login())
    call = recorded(Request("GET", "/auth/users/me", headers=[("authorization",
                                                               f"Bearer {ACCESS}")]))
    assert "redacted:sha256:" in call.headers[0][1]
    assert swap(call, minted).headers == [("authorization", "Bearer fresh-access")]
    refreshed = swap(refresh_with(REFRESH), minted)
    assert orjson.loads(refreshed.body.text) == {"refresh_token": "fresh-refresh"}


def test_a_garbage_token_stays_as_recorded():
    minted = MintedTokens()
    minted.learn("s1", recorded_login())
    garbage = refresh_with("not-a-token-at-all")
    assert "redacted:sha256:" in garbage.body.text
    assert swap(garbage, minted) is garbage
    forged = refresh_with(jwt({"sub": "demo", "token_type": "refresh", "jti": "forged"}))
    assert swap(forged, minted) is forged


def test_tokens_minted_in_another_session_or_by_a_failed_login_stay_as_recorded():
    minted = MintedTokens()
    minted.learn("s1", recorded_login())
    failed = recorded_login()
    failed.status = 401
    minted.learn("s2", failed)
    call = refresh_with(REFRESH)
    assert swap(call, minted, session="s2") is call
    assert swap(call, minted, session="s3") is call


def test_only_the_service_accounts_password_is_restored():
    minted = MintedTokens()
    own = recorded(Request("POST", "/auth/login", headers=FORM,
                           body=Body.from_bytes(b"username=demo&password=demo")))
    other = recorded(Request("POST", "/auth/login", headers=FORM,
                             body=Body.from_bytes(b"username=demo&password=wrong-password")))
    assert swap(own, minted).body.text == "username=demo&password=demo"
    assert swap(other, minted) is other


def test_recordings_with_credentials_are_recognised():
    plain = {"request": {"method": "GET", "path": "/health", "headers": [], "query": []}}
    login = {"request": recorded(Request("POST", "/auth/login", headers=FORM, body=Body.from_bytes(
        b"username=demo&password=demo"))).to_dict()}
    assert first_credential([plain, plain]) is None
    assert first_credential([plain, login]) == "POST /auth/login"
    require_login(None, [plain])  # nothing to log in for
    require_login(ACCOUNT, [login])
    with pytest.raises(UserError, match=r"pass --parity-login USER \(password from "
                                        r"--parity-password-file, PARITY_PASSWORD or a prompt\)"):
        require_login(None, [plain, login], option="--parity-login")


def test_the_password_comes_from_a_file_the_environment_or_a_prompt(tmp_path, monkeypatch):
    monkeypatch.delenv("PARITY_PASSWORD", raising=False)
    monkeypatch.delenv("PARITY_REPLAY_PASSWORD", raising=False)
    monkeypatch.delenv("PARITY_REPLAY_USERNAME", raising=False)
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    assert ServiceAccount.from_sources("demo", password_file=str(secret)).password == "from-file"
    asked: list[str] = []
    prompted = ServiceAccount.from_sources("demo", prompt=lambda m: asked.append(m) or "typed")
    assert prompted.password == "typed" and "demo" in asked[0]
    monkeypatch.setenv("PARITY_PASSWORD", "from-env")
    assert ServiceAccount.from_sources("demo").password == "from-env"
    assert ServiceAccount.from_sources(None) is None
    monkeypatch.delenv("PARITY_PASSWORD")
    with pytest.raises(UserError, match="--password-file FILE or set PARITY_PASSWORD"):
        ServiceAccount.from_sources("demo", prompt=lambda m: None)
    with pytest.raises(UserError, match="--parity-login takes the user name only"):
        ServiceAccount.from_sources("demo:demo", option="--parity-login")
    (tmp_path / "empty").write_text("")
    with pytest.raises(UserError, match="empty"):
        ServiceAccount.from_sources("demo", password_file=str(tmp_path / "empty"))
    assert "demo" not in repr(ServiceAccount("u", "demo"))
