"""Fresh credentials for replay: recordings hold only fingerprints of secrets, so the replay logs in
with a configured service account on each environment and puts that environment's own tokens where
the recording has fingerprints — but only for tokens a login (or refresh) answer of the same
recorded session minted, to a request the replay could send as it was (the service account's
login, a refresh with a token so swapped). Any other fingerprint (a garbage refresh token, a token
from before the recording started, another user's) is left as recorded: the replay sends it when
the primary refused it, so a negative test stays negative, and skips the exchange when the primary
accepted it (see `harness.replay.runner`). A recorded password is restored only when its
fingerprint is the service account's; record traffic of the service account to replay logins.

The service account's password never comes from the command line (every user of the host sees
it there): `--password-file`, the environment (PARITY_PASSWORD) or a prompt."""

from __future__ import annotations

import getpass
import os
import sys
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from harness.errors import UserError
from harness.mirror.transport import Client, send
from harness.model import Body, Request, Response
from harness.store.redact import PREFIX, fingerprint

REDACTED = PREFIX  # what a recorded secret starts with
PASSWORD_ENV = "PARITY_PASSWORD"
# The unattended form, read by the systemd units (deploy/parity.env.example).
USERNAME_ENV = "PARITY_REPLAY_USERNAME"
LEGACY_PASSWORD_ENV = "PARITY_REPLAY_PASSWORD"
# Answer fields that mint a credential, and which fresh token replaces it.
MINTING_FIELDS = {"access_token": "access", "token": "access", "refresh_token": "refresh"}
MAX_SESSIONS = 100_000

Prompt = Callable[[str], str | None]  # None: no answer (no terminal)


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The account the replay logs in with (OAuth2 password form at `login_path`)."""

    username: str
    password: str = field(repr=False)
    login_path: str = "/auth/login"

    @classmethod
    def from_sources(
        cls,
        user: str | None,
        config_table: dict[str, Any] | None = None,
        *,
        password_file: str | None = None,
        prompt: Prompt | None = None,
        option: str = "--login",
    ) -> ServiceAccount | None:
        """The user from `--login USER`, else `[replay] username` in parity.toml, else
        PARITY_REPLAY_USERNAME; its password from `password_file`, else PARITY_PASSWORD (or
        PARITY_REPLAY_PASSWORD), else `[replay] password`, else `prompt` (None: no prompt).
        None when no user is set; UserError when a user has no password."""
        table = config_table or {}
        login_path = table.get("login_path", "/auth/login")
        if user is not None and ":" in user:
            raise UserError(
                f"{option} takes the user name only: give the password with "
                f"{_password_file_option(option)} FILE, {PASSWORD_ENV} or at the prompt "
                "(a password on the command line is visible to every user of the host)"
            )
        if user is not None and not user:
            raise UserError(f"{option}: the user name is empty")
        user = user or table.get("username") or os.environ.get(USERNAME_ENV)
        if not user:
            return None
        password = _password(password_file, table, option)
        if password is None and prompt is not None:
            password = prompt(f"password for {user} (replay service account): ")
        if password is None:
            raise UserError(
                f"no password for the replay login {user!r}: give "
                f"{_password_file_option(option)} FILE or set {PASSWORD_ENV} "
                "(no prompt: stdin is not a terminal)"
            )
        return cls(user, password, login_path)


def _password_file_option(option: str) -> str:
    return "--parity-password-file" if option.startswith("--parity") else "--password-file"


def _password(password_file: str | None, table: dict[str, Any], option: str) -> str | None:
    if password_file:
        try:
            text = Path(password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{_password_file_option(option)} {password_file}: cannot read it "
                            f"({exc.__class__.__name__})") from None
        password = text.splitlines()[0] if text else ""
        if not password:
            raise UserError(f"{_password_file_option(option)} {password_file}: the file is empty")
        return password
    for name in (PASSWORD_ENV, LEGACY_PASSWORD_ENV):
        if os.environ.get(name):
            return os.environ[name]
    return table.get("password") or None


def terminal_prompt(message: str) -> str | None:
    """Ask for the password on the terminal (not echoed) when stdin is one; None otherwise."""
    if not sys.stdin or not sys.stdin.isatty():
        return None
    return getpass.getpass(message)


# --- do the recordings need a login? -------------------------------------------------------------


def first_credential(records: Iterable[dict[str, Any]]) -> str | None:
    """'METHOD /path' of the first recorded request that carries a redacted credential (a header,
    query or body fingerprint), or None when none does. Stops at the first one."""
    for record in records:
        request = record.get("request")
        if not isinstance(request, dict):
            continue
        try:
            parsed = Request.from_dict(request)
        except (KeyError, TypeError, ValueError):
            continue  # not an exchange line: the replay reports it
        if carries_redacted(parsed):
            return f"{parsed.method} {parsed.path}"
    return None


def require_login(account: ServiceAccount | None, records: Iterable[dict[str, Any]],
                  option: str = "--login") -> None:
    """UserError (a usage error, before anything is replayed) when the recorded requests carry
    credentials and no service account was given: the replay would only report false auth
    findings."""
    if account is None and (where := first_credential(records)):
        raise UserError(
            f"the recorded requests carry credentials (first: {where}) and no service account "
            f"was given: pass {option} USER (password from {_password_file_option(option)}, "
            f"{PASSWORD_ENV} or a prompt)"
        )


def carries_redacted(request: Request) -> bool:
    """Whether `request` still holds a fingerprint where the client sent a secret: sent like this,
    it cannot be what the client sent."""
    return (any(REDACTED in value for _, value in request.headers)
            or any(REDACTED in value for _, value in request.query)
            or REDACTED in (request.body.text or ""))


# --- tokens minted by the recorded sessions ------------------------------------------------------


def _fingerprint_of(value: str) -> str | None:
    """The fingerprint part of a redacted value (a JWT keeps its header and claims before it)."""
    at = value.find(REDACTED)
    return value[at:] if at >= 0 else None


class MintedTokens:
    """Per recorded session, the fingerprints of the tokens its recorded answers minted (a login,
    a refresh; the caller learns only answers to requests it could restore) and their kind.
    Requests of one session are replayed in order, so a login is seen before the requests that
    use its tokens. Bounded: the least recently seen sessions go first."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self._sessions: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._max = max_sessions

    def learn(self, session: str, answer: Response | None) -> None:
        """Remember the tokens the recorded `answer` of `session` minted."""
        if answer is None or answer.error or not 200 <= answer.status < 300:
            return
        text = answer.body.text
        if not text or REDACTED not in text or "token" not in text:
            return
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            return
        if not isinstance(data, dict):
            return
        minted = {
            fp: kind
            for name, kind in MINTING_FIELDS.items()
            if isinstance(data.get(name), str) and (fp := _fingerprint_of(data[name]))
        }
        if not minted:
            return
        known = self._sessions.setdefault(session, {})
        known.update(minted)
        self._sessions.move_to_end(session)
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)

    def kind(self, session: str, value: str) -> str | None:
        """'access' or 'refresh' when `value` is a token `session`'s recorded answers minted."""
        fp = _fingerprint_of(value)
        known = self._sessions.get(session)
        return known.get(fp) if known and fp else None


# --- logging in and swapping -------------------------------------------------------------------


@dataclass(slots=True)
class Tokens:
    """One environment's fresh tokens."""

    access_token: str | None = None
    refresh_token: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def of_kind(self, kind: str | None) -> str | None:
        """The fresh token standing in for a recorded one of `kind`."""
        return {"access": self.access_token, "refresh": self.refresh_token}.get(kind or "")


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
            "account (--login USER with --password-file or PARITY_PASSWORD, or [replay] "
            "username in parity.toml)"
        )
    try:
        data = orjson.loads(answer.body.raw)
    except orjson.JSONDecodeError:
        raise UserError(f"replay login on {base_url}: the answer is not JSON") from None
    return Tokens(data.get("access_token"), data.get("refresh_token"))


Minted = Callable[[str], "str | None"]  # recorded value -> kind of token the session minted


def with_fresh_credentials(request: Request, tokens: Tokens, account: ServiceAccount,
                           minted: Minted) -> Request:
    """`request` with every credential the recorded session minted replaced by this environment's
    fresh one (and the service account's own password restored); anything else as recorded."""
    headers = [(k, _fresh_header(k, v, tokens, minted)) for k, v in request.headers]
    body = _fresh_body(request, tokens, account, minted)
    if headers == request.headers and body is request.body:
        return request
    return replace(request, headers=headers, body=body)


def _fresh_header(name: str, value: str, tokens: Tokens, minted: Minted) -> str:
    if name.lower() != "authorization" or REDACTED not in value:
        return value
    scheme, sep, credential = value.partition(" ")
    fresh = tokens.of_kind(minted(credential if sep else value))
    if not fresh:
        return value
    return f"{scheme if sep else 'Bearer'} {fresh}"


def _fresh_body(request: Request, tokens: Tokens, account: ServiceAccount,
                minted: Minted) -> Body:
    text = request.body.text
    if not text or REDACTED not in text:
        return request.body
    content_type = next((v for k, v in request.headers if k.lower() == "content-type"), "")
    if "x-www-form-urlencoded" in content_type:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
        fresh = [(k, _fresh_value(k, v, tokens, account, minted)) for k, v in pairs]
        if fresh == pairs:
            return request.body
        return Body.from_bytes(urllib.parse.urlencode(fresh).encode())
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return request.body
    if isinstance(data, dict):
        fresh_data = {k: _fresh_value(k, v, tokens, account, minted) for k, v in data.items()}
        if fresh_data != data:
            return Body.from_bytes(orjson.dumps(fresh_data))
    return request.body


def _fresh_value(key: str, value: object, tokens: Tokens, account: ServiceAccount,
                 minted: Minted) -> object:
    if not isinstance(value, str) or REDACTED not in value:
        return value
    if key.lower() == "password":
        # Only the service account's own password can be restored; any other stays a fingerprint,
        # which replays as the wrong password it most likely was (or a user we cannot log in as).
        return account.password if value == fingerprint(account.password) else value
    return tokens.of_kind(minted(value)) or value
