"""Who a request is, and where that identity stands in the ramp.

An identity is the first present of the plan's sources: ``sub:<JWT subject>`` (read without
verifying the signature: routing is not authentication, the services still check the token),
``key:<fingerprint>`` of an X-API-Key (the recordings' fingerprint, so an early adopter can be
named by what the report shows), ``ip:<address>`` (the first X-Forwarded-For hop, else the peer).

Its position in [0, 100) is an HMAC of the identity under the state's key: stable for the life of
the state, the same in every group (the same users move first everywhere), unpredictable without
the key. A group at share S moves exactly the identities whose position is below S, so raising S
only ever adds users.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache

import orjson

Fields = Sequence[tuple[bytes, bytes]]  # raw header fields, as mitmproxy holds them
_SCALE = 100.0 / 2**64


@lru_cache(maxsize=16384)
def jwt_subject(token: bytes) -> str | None:
    """The `sub` claim of a JWT (unverified), or None when `token` is not one."""
    parts = token.split(b".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return str(sub) if isinstance(sub, str | int) and not isinstance(sub, bool) and sub != "" \
        else None


@lru_cache(maxsize=4096)
def api_key_fingerprint(value: bytes) -> str:
    """The recordings' fingerprint of an API key (``redacted:sha256:<8 hex>``)."""
    from harness.store.redact import fingerprint

    return fingerprint(value.decode("latin-1"))


def identity_of(fields: Fields, peer: str, sources: Sequence[str]) -> str:
    """The identity of a request from its header fields and peer address (see the module)."""
    for source in sources:
        if source == "jwt-sub":
            for name, value in fields:
                if name.lower() == b"authorization":
                    scheme, _, token = value.strip().partition(b" ")
                    if scheme.lower() == b"bearer" and (sub := jwt_subject(token.strip())):
                        return "sub:" + sub
                    break
        elif source == "api-key":
            for name, value in fields:
                if name.lower() == b"x-api-key" and value.strip():
                    return "key:" + api_key_fingerprint(value.strip())
        elif source == "forwarded-for":
            for name, value in fields:
                if name.lower() == b"x-forwarded-for":
                    first = value.split(b",", 1)[0].strip()
                    if first:
                        return "ip:" + first.decode("latin-1")
                    break
        elif source == "peer" and peer:
            return "ip:" + peer
    return "ip:" + (peer or "unknown")


def position(key: bytes, identity: str) -> float:
    """The identity's stable place in [0, 100) under `key`."""
    digest = hmac.new(key, identity.encode("utf-8", "replace"), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") * _SCALE
