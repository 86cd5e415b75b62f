"""Auth service: OAuth2 password login → HS256 JWTs, refresh, logout, validate, the current
user, and the user's API keys.

    POST   /auth/login              form username, password → TokenPairResponse
    POST   /auth/refresh            {"refresh_token"} → TokenResponse
    POST   /auth/logout             ?refresh_token= → revokes it
    GET    /auth/validate           Bearer → TokenValidationResponse (200, valid or not)
    GET    /auth/users/me           Bearer → UserOut
    GET    /auth/api-keys           Bearer → [APIKeyOut]
    POST   /auth/api-keys           Bearer, APIKeyCreate → APIKeyResponse (+ id)
    DELETE /auth/api-keys/{key_id}  Bearer

Claims: sub, roles, email, token_type ("access"/"refresh"), jti, iat, exp. Access tokens live
30 min (15 with the `token-lifetime` drift), refresh tokens 7 days. Unknown users and wrong
passwords get the same 401.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from pydantic import BaseModel, Field

from reference_cryptobot.clock import now_iso
from reference_cryptobot.settings import Settings

ACCESS_SECONDS = 30 * 60
DRIFTED_ACCESS_SECONDS = 15 * 60
REFRESH_SECONDS = 7 * 24 * 3600
BAD_LOGIN = "Incorrect username or password"
BAD_TOKEN = "Could not validate credentials"


@dataclass(frozen=True, slots=True)
class User:
    """A seeded user."""

    id: int
    username: str
    password: str
    email: str
    full_name: str
    roles: tuple[str, ...]

    def public(self) -> dict[str, Any]:
        """The user as UserOut."""
        return {"id": self.id, "username": self.username, "email": self.email,
                "full_name": self.full_name, "disabled": False, "mfa_enabled": False,
                "mfa_setup": False, "roles": list(self.roles)}


USERS = {
    user.username: user
    for user in (
        User(1, "demo", "demo", "demo@cryptobot.local", "Demo Trader", ("trader",)),
        User(2, "admin", "admin", "admin@cryptobot.local", "Administrator", ("admin", "trader")),
    )
}


def access_lifetime(settings: Settings) -> int:
    """Seconds an access token lives (the `token-lifetime` drift lost the configured 30 min)."""
    return DRIFTED_ACCESS_SECONDS if settings.has("token-lifetime") else ACCESS_SECONDS


class AuthState:
    """Revoked refresh tokens and the users' API keys (kept in memory, like sessions)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._revoked: set[str] = set()
        self._keys: dict[int, dict[str, Any]] = {}
        self._next_key = 1
        self._lock = threading.Lock()

    def token(self, user: User, kind: str, lifetime: int) -> str:
        """A signed JWT of `kind` ("access" or "refresh")."""
        now = int(time.time())
        claims = {"sub": user.username, "roles": list(user.roles), "email": user.email,
                  "token_type": kind, "jti": str(uuid.uuid4()), "iat": now, "exp": now + lifetime}
        return jwt.encode(claims, self.settings.jwt_secret, algorithm="HS256")

    def claims(self, token: str, kind: str) -> dict[str, Any] | None:
        """The claims of a valid, unrevoked token of `kind`, else None."""
        try:
            claims = jwt.decode(token, self.settings.jwt_secret, algorithms=["HS256"])
        except jwt.PyJWTError:
            return None
        if claims.get("token_type") != kind or claims.get("sub") not in USERS:
            return None
        if claims.get("jti") in self._revoked:
            return None
        return claims

    def revoke(self, jti: str) -> None:
        """A refresh token can no longer be used."""
        with self._lock:
            self._revoked.add(jti)

    def add_key(self, owner: str, body: APIKeyCreate) -> dict[str, Any]:
        """A new API key for `owner`."""
        with self._lock:
            key_id, self._next_key = self._next_key, self._next_key + 1
            key = {"id": key_id, "owner": owner, "description": body.description,
                   "exchange": body.exchange, "is_test": body.is_test,
                   "key": "cbk_" + secrets.token_hex(16), "created_at": now_iso()}
            self._keys[key_id] = key
        return key

    def keys(self, owner: str) -> list[dict[str, Any]]:
        """The owner's keys, by id."""
        with self._lock:
            return [key for key in self._keys.values() if key["owner"] == owner]

    def delete_key(self, owner: str, key_id: int) -> bool:
        """Delete one of the owner's keys; whether it existed."""
        with self._lock:
            key = self._keys.get(key_id)
            if key is None or key["owner"] != owner:
                return False
            del self._keys[key_id]
            return True


class RefreshTokenRequest(BaseModel):
    """RefreshTokenRequest of the spec."""

    refresh_token: str


class APIKeyCreate(BaseModel):
    """APIKeyCreate of the spec."""

    description: str = Field(max_length=200)
    exchange: str = Field(min_length=1, max_length=50)
    is_test: bool = False


router = APIRouter(prefix="/auth", tags=["auth"])
bearer = OAuth2PasswordBearer(tokenUrl="/auth/login", auto_error=False)


def _state(request: Request) -> AuthState:
    return request.app.state.auth


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def current_claims(request: Request,
                   token: Annotated[str | None, Depends(bearer)]) -> dict[str, Any]:
    """The claims of the request's bearer access token; 401 without a valid one."""
    if token is None:
        raise _unauthorized("Not authenticated")
    claims = _state(request).claims(token, "access")
    if claims is None:
        raise _unauthorized(BAD_TOKEN)
    return claims


Claims = Annotated[dict[str, Any], Depends(current_claims)]


@router.post("/login")
def login(request: Request,
          form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> dict[str, Any]:
    """OAuth2 password login. Unknown users and wrong passwords get the same answer."""
    user = USERS.get(form.username)
    expected = user.password if user else secrets.token_hex(8)
    if not hmac.compare_digest(expected.encode(), form.password.encode()) or user is None:
        raise _unauthorized(BAD_LOGIN)
    state = _state(request)
    lifetime = access_lifetime(state.settings)
    return {
        "access_token": state.token(user, "access", lifetime),
        "refresh_token": state.token(user, "refresh", REFRESH_SECONDS),
        "token_type": "bearer",
        "expires_in": lifetime,
        "refresh_token_expires_in": REFRESH_SECONDS,
    }


@router.post("/refresh")
def refresh(request: Request, body: RefreshTokenRequest) -> dict[str, Any]:
    """A new access token for a valid refresh token."""
    state = _state(request)
    claims = state.claims(body.refresh_token, "refresh")
    if claims is None:
        raise _unauthorized("Invalid refresh token")
    lifetime = access_lifetime(state.settings)
    return {"access_token": state.token(USERS[claims["sub"]], "access", lifetime),
            "token_type": "bearer", "expires_in": lifetime}


@router.post("/logout")
def logout(request: Request, refresh_token: str | None = None) -> dict[str, Any]:
    """Revoke the given refresh token (if it is valid)."""
    state = _state(request)
    claims = state.claims(refresh_token, "refresh") if refresh_token else None
    if claims is not None:
        state.revoke(claims["jti"])
    return {"detail": "Successfully logged out"}


@router.get("/validate")
def validate(request: Request,
             token: Annotated[str | None, Depends(bearer)]) -> dict[str, Any]:
    """Whether the bearer token is a valid access token, and whose."""
    if token is None:
        return {"valid": False, "username": None, "roles": [], "message": "Not authenticated"}
    claims = _state(request).claims(token, "access")
    if claims is None:
        return {"valid": False, "username": None, "roles": [], "message": BAD_TOKEN}
    return {"valid": True, "username": claims["sub"], "roles": claims["roles"],
            "message": "Token is valid"}


@router.get("/users/me")
def me(claims: Claims) -> dict[str, Any]:
    """The logged-in user."""
    return USERS[claims["sub"]].public()


@router.get("/api-keys")
def list_keys(request: Request, claims: Claims) -> list[dict[str, Any]]:
    """The user's API keys."""
    return [{"id": k["id"], "description": k["description"], "exchange": k["exchange"],
             "is_test": k["is_test"], "key": k["key"]}
            for k in _state(request).keys(claims["sub"])]


@router.post("/api-keys")
def create_key(request: Request, body: APIKeyCreate, claims: Claims) -> dict[str, Any]:
    """A new API key (its value is random)."""
    key = _state(request).add_key(claims["sub"], body)
    return {"id": key["id"], "api_key": key["key"], "created_at": key["created_at"],
            "expires_at": None, "permissions": ["read", "trade"] if not body.is_test else ["read"],
            "description": body.description, "exchange": body.exchange, "is_test": body.is_test}


@router.delete("/api-keys/{key_id}")
def delete_key(request: Request, key_id: int, claims: Claims) -> dict[str, Any]:
    """Delete one of the user's API keys."""
    if not _state(request).delete_key(claims["sub"], key_id):
        raise HTTPException(status_code=404, detail="API key not found")
    return {"detail": "API key deleted", "id": key_id}


def install(app: FastAPI, settings: Settings) -> None:
    """Add the auth service (routes and state) to the app."""
    app.state.auth = AuthState(settings)
    app.include_router(router)
