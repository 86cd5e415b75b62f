"""The token-exchange check: sessions survive the move only if a token minted by one side is
accepted by the other. Before the auth group, or a group whose routes need auth (`[cutover]
needs_auth`), moves past 0 %, the service account (the replay's: `[replay] username`,
PARITY_REPLAY_USERNAME, PARITY_PASSWORD) logs in on both sides and each side is asked
`[cutover] token_check_path` with the other's token; anything but 200 refuses the advance."""

from __future__ import annotations

from typing import Any

import aiohttp


async def _login(client: aiohttp.ClientSession, base: str, account: Any) -> tuple[str | None, str]:
    try:
        async with client.post(base + account.login_path,
                               data={"username": account.username,
                                     "password": account.password}) as answer:
            body = await answer.json(content_type=None) if answer.status == 200 else None
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        return None, f"login failed ({type(exc).__name__})"
    token = body.get("access_token") if isinstance(body, dict) else None
    return (token, "") if isinstance(token, str) else (None, f"login answered {answer.status}")


async def _accepts(client: aiohttp.ClientSession, base: str, path: str, token: str) -> int | str:
    try:
        async with client.get(base + path, headers={"Authorization": f"Bearer {token}"}) as answer:
            return answer.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return type(exc).__name__


async def token_exchange_problem(client: aiohttp.ClientSession, primary: str, candidate: str,
                                 account: Any, path: str) -> str | None:
    """Why a session would not survive the move (one line), or None when each side accepts a
    token minted by the other."""
    if account is None:
        return ("no service account to check that sessions survive the move: set [replay] "
                "username (or PARITY_REPLAY_USERNAME) and PARITY_PASSWORD for the proxy")
    tokens = {}
    for side, base in (("primary", primary), ("candidate", candidate)):
        token, why = await _login(client, base, account)
        if token is None:
            return f"token check: the {side} did not mint a token for {account.username} ({why})"
        tokens[side] = token
    for side, base, minter in (("candidate", candidate, "primary"),
                               ("primary", primary, "candidate")):
        status = await _accepts(client, base, path, tokens[minter])
        if status != 200:
            return (f"token check: the {side} refuses a token minted by the {minter} (GET {path} "
                    f"answered {status}): sessions would not survive the move")
    return None


def session_for(timeout_s: float, verify: Any) -> aiohttp.ClientSession:
    """The client of the token check (no cookies kept, no proxy from the environment)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=verify),
                                 cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                                 timeout=aiohttp.ClientTimeout(total=timeout_s))
