"""Runtime control of the reference app, so a test or the demo can make the candidate drift while
it serves (`--control-token T`; without it the endpoint does not exist):

    PUT /_reference/drifts   {"drifts": ["tz-offset"]}   Authorization: Bearer T
        → 200 {"drifts": ["tz-offset"]}: exactly these drifts are on from the next request on
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request

from reference_cryptobot.drifts import UnknownDriftError, parse_drifts

router = APIRouter(prefix="/_reference", include_in_schema=False)


@router.put("/drifts")
async def put_drifts(request: Request) -> dict[str, Any]:
    """Switch the drifts on or off (the full set is given)."""
    expected: str = request.app.state.control_token
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, "a valid control token is required",
                            headers={"WWW-Authenticate": "Bearer"})
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(422, "expected JSON: {\"drifts\": [NAME, ...]}") from None
    names = body.get("drifts") if isinstance(body, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise HTTPException(422, "expected JSON: {\"drifts\": [NAME, ...]}")
    try:
        drifts = parse_drifts(names)
    except UnknownDriftError as exc:
        raise HTTPException(422, str(exc)) from None
    request.app.state.settings.switch_drifts(drifts)
    return {"drifts": sorted(drifts)}


def install(app: FastAPI, token: str) -> None:
    """Add the control endpoint, guarded by `token`."""
    app.state.control_token = token
    app.include_router(router)
