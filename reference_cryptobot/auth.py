"""Auth service: OAuth2 password login → HS256 JWTs, refresh, validate, users/me, API keys."""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import jwt
from fastapi import APIRouter, Depends, Form, Header, HTTPException, Request
from pydantic import BaseModel

from reference_cryptobot.settings import Settings

USERS = {
    "demo": {"password": "demo", "roles": ["trader"], "email": "demo@cryptobot.local"},
    "admin": {"password": "admin", "roles": ["admin", "trader"], "email": "admin@cryptobot.local"},
}
ACCESS_MINUTES = 30
DRIFTED_ACCESS_MINUTES = 15
REFRESH_SECONDS = 7 * 24 * 3600
BAD_LOGIN = "Incorrect username or password"


def access_lifetime(settings: Settings) -> int:
    """Seconds an access token lives (the token-lifetime drift forgot the env var)."""
    minutes = DRIFTED_ACCESS_MINUTES if settings.has("token-lifetime") else ACCESS_MINUTES
    return minutes * 60


def _token(settings: Settings, user: str, kind: str, lifetime: int) -> str:
    now = int(time.time())
    claims = {
        "sub": user,
        "roles": USERS[user]["roles"],
        "email": USERS[user]["email"],
        "token_type": kind,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + lifetime,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def _tokens(settings: Settings, user: str) -> dict[str, Any]:
    lifetime = access_lifetime(settings)
    return {
        "access_token": _token(settings, user, "access", lifetime),
        "refresh_token": _token(settings, user, "refresh", REFRESH_SECONDS),
        "token_type": "bearer",
        "expires_in": lifetime,
    }


def _decode(settings: Settings, token: str, kind: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(token, settings.jwt_secret, algorithms=["HS256"])
    except jwt.PyJWTError:
        raise HTTPException(status_code=401, detail="Invalid authentication credentials",
                            headers={"WWW-Authenticate": "Bearer"}) from None
    if claims.get("token_type") != kind or claims.get("sub") not in USERS:
        raise HTTPException(status_code=401, detail="Invalid authentication credentials",
                            headers={"WWW-Authenticate": "Bearer"})
    return claims


def current_user(request: Request,
                 authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    """The claims of the bearer token; 401 without a valid one."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(status_code=401, detail="Not authenticated",
                            headers={"WWW-Authenticate": "Bearer"})
    return _decode(request.app.state.settings, token, "access")


class RefreshRequest(BaseModel):
    """RefreshTokenRequest as in the spec."""

    refresh_token: str


class APIKeyCreate(BaseModel):
    """APIKeyCreate as in the spec."""

    description: str = ""
    exchange: str = "binance"
    is_test: bool = False


router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login")
def login(request: Request, username: Annotated[str, Form()],
          password: Annotated[str, Form()]) -> dict[str, Any]:
    """OAuth2 password login. Unknown user and wrong password get the same answer."""
    user = USERS.get(username)
    if user is None or not secrets.compare_digest(user["password"], password):
        raise HTTPException(status_code=401, detail=BAD_LOGIN,
                            headers={"WWW-Authenticate": "Bearer"})
    return _tokens(request.app.state.settings, username)


@router.post("/refresh")
def refresh(request: Request, body: RefreshRequest) -> dict[str, Any]:
    """New tokens for a valid refresh token."""
    settings = request.app.state.settings
    claims = _decode(settings, body.refresh_token, "refresh")
    return _tokens(settings, claims["sub"])


@router.get("/validate")
def validate(claims: Annotated[dict, Depends(current_user)]) -> dict[str, Any]:
    """Whether the bearer token is valid, and whose it is."""
    return {"valid": True, "username": claims["sub"], "roles": claims["roles"]}


@router.get("/users/me")
def me(claims: Annotated[dict, Depends(current_user)]) -> dict[str, Any]:
    """The logged-in user."""
    user = USERS[claims["sub"]]
    return {"username": claims["sub"], "email": user["email"], "roles": user["roles"],
            "is_active": True}


@router.get("/api-keys")
def list_keys(request: Request,
              claims: Annotated[dict, Depends(current_user)]) -> list[dict[str, Any]]:
    """The user's API keys (never with their secret)."""
    keys = request.app.state.api_keys.get(claims["sub"], {})
    return [{k: v for k, v in key.items() if k != "key"} for key in keys.values()]


@router.post("/api-keys", status_code=201)
def create_key(request: Request, body: APIKeyCreate,
               claims: Annotated[dict, Depends(current_user)]) -> dict[str, Any]:
    """A new API key; its secret is shown once."""
    key_id = str(uuid.uuid4())
    key = {"id": key_id, "key": "ck_" + secrets.token_urlsafe(24), "description": body.description,
           "exchange": body.exchange, "is_test": body.is_test,
           "created_at": datetime.now(UTC).isoformat()}
    request.app.state.api_keys.setdefault(claims["sub"], {})[key_id] = key
    return key


@router.delete("/api-keys/{key_id}")
def delete_key(request: Request, key_id: str,
               claims: Annotated[dict, Depends(current_user)]) -> dict[str, Any]:
    """Revoke an API key."""
    keys = request.app.state.api_keys.get(claims["sub"], {})
    if keys.pop(key_id, None) is None:
        raise HTTPException(status_code=404, detail="API key not found")
    return {"id": key_id, "deleted": True}
