"""Fresh credentials for replay: recordings hold only fingerprints of secrets, so the replay logs in
with a configured service account on each environment and puts that environment's own tokens where
the recording has `redacted:sha256:...` fingerprints. A recorded password is restored only when its
fingerprint is the service account's; record traffic of the service account to replay logins."""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field, replace

import orjson

from harness.errors import UserError
from harness.model import Body, Request
from harness.store.redact import fingerprint
from harness.transport import Client, send

REDACTED = "redacted:sha256:"


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The account the replay logs in with (OAuth2 password form at `login_path`)."""

    username: str
    password: str
    login_path: str = "/auth/login"

    @classmethod
    def from_sources(
        cls, spec: str | None, config_table: dict | None = None
    ) -> ServiceAccount | None:
        """From `--login USER:PASSWORD`, else `[replay]` in parity.toml, else the environment
        variables PARITY_REPLAY_USERNAME / PARITY_REPLAY_PASSWORD; None when none is set."""
        table = config_table or {}
        if spec:
            user, sep, password = spec.partition(":")
            if not sep or not user:
                raise UserError("--login: expected USER:PASSWORD")
            return cls(user, password, table.get("login_path", "/auth/login"))
        user = table.get("username") or os.environ.get("PARITY_REPLAY_USERNAME")
        password = table.get("password") or os.environ.get("PARITY_REPLAY_PASSWORD")
        if user and password:
            return cls(user, password, table.get("login_path", "/auth/login"))
        return None


@dataclass(slots=True)
class Tokens:
    """One environment's fresh tokens."""

    access_token: str | None = None
    refresh_token: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


async def login(client: Client, base_url: str, account: ServiceAccount,
                timeout_s: float = 10.0) -> Tokens:
    """Log the service account in on one environment; UserError saying which one on failure."""
    form = urllib.parse.urlencode({"username": account.username, "password": account.password})
    request = Request("POST", account.login_path,
                      headers=[("content-type", "application/x-www-form-urlencoded")],
                      body=Body.from_bytes(form.encode()))
    answer = await send(client, base_url, request, timeout_s=timeout_s)
    if answer.error:
        raise UserError(f"replay login on {base_url} failed: {answer.error}")
    if answer.status != 200:
        raise UserError(
            f"replay login on {base_url} failed with HTTP {answer.status}: check the service "
            "account (--login USER:PASSWORD or [replay] username/password in parity.toml)"
        )
    try:
        data = orjson.loads(answer.body.raw)
    except orjson.JSONDecodeError:
        raise UserError(f"replay login on {base_url}: the answer is not JSON") from None
    return Tokens(data.get("access_token"), data.get("refresh_token"))


def with_fresh_credentials(request: Request, tokens: Tokens, account: ServiceAccount) -> Request:
    """`request` with every redacted credential replaced by this environment's fresh one."""
    headers = [(k, _fresh_header(k, v, tokens)) for k, v in request.headers]
    body = _fresh_body(request, tokens, account)
    if headers == request.headers and body is request.body:
        return request
    return replace(request, headers=headers, body=body)


def _fresh_header(name: str, value: str, tokens: Tokens) -> str:
    if name.lower() == "authorization" and REDACTED in value and tokens.access_token:
        scheme = value.split(" ", 1)[0] if " " in value else "Bearer"
        return f"{scheme} {tokens.access_token}"
    return value


def _fresh_body(request: Request, tokens: Tokens, account: ServiceAccount) -> Body:
    text = request.body.text
    if not text or REDACTED not in text:
        return request.body
    content_type = next((v for k, v in request.headers if k.lower() == "content-type"), "")
    if "x-www-form-urlencoded" in content_type:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
        fresh = [(k, _fresh_value(k, v, tokens, account)) for k, v in pairs]
        return Body.from_bytes(urllib.parse.urlencode(fresh).encode())
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return request.body
    if isinstance(data, dict):
        fresh_data = {k: _fresh_value(k, v, tokens, account) for k, v in data.items()}
        return Body.from_bytes(orjson.dumps(fresh_data))
    return request.body


def _fresh_value(key: str, value: object, tokens: Tokens, account: ServiceAccount) -> object:
    if not isinstance(value, str) or not value.startswith(REDACTED):
        return value
    lowered = key.lower()
    if lowered == "password":
        # Only the service account's own password can be restored; any other stays a fingerprint,
        # which replays as the wrong password it most likely was (or a user we cannot log in as).
        return account.password if value == fingerprint(account.password) else value
    if lowered == "refresh_token" and tokens.refresh_token:
        return tokens.refresh_token
    if lowered in ("access_token", "token") and tokens.access_token:
        return tokens.access_token
    return value
