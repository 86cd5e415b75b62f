"""What looks volatile: values that legitimately differ between two copies of the same deployment
(uuids, ISO timestamps, epochs near the exchange's time, JWTs and long random tokens, hex ids,
generated ids and counters). A difference between the two Docker copies at such a value is noise;
anywhere else it makes the route untestable."""

from __future__ import annotations

import re
import time
from typing import Any

from harness.diff.paths import last_key

# An epoch (seconds or milliseconds) this close to the exchange's time is "now".
NEAR_NOW_S = 2 * 86_400

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                   r"[0-9a-fA-F]{12}$")
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_HTTP_DATE = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")
_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_HEX = re.compile(r"^[0-9a-fA-F]{16,}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_\-.~+/=:]{20,}$")
_VOLATILE_KEY = re.compile(
    r"(^|_)(id|uuid|guid|jti|iat|exp|nbf|nonce|request_id|trace_id|timestamp|time|date|"
    r"created|updated|created_at|updated_at|started_at|completed_at|finished_at|expires_at|"
    r"last_login|token|etag|version_id|duration|elapsed|latency|process_time|"
    r"seq|sequence|counter|nonce|revision|generated_at|as_of|server_time)$",
    re.IGNORECASE,
)


def looks_volatile_value(value: Any, now: float | None = None) -> bool:
    """Whether a single value looks generated: uuid, timestamp, token, fingerprint, or an epoch
    (seconds or milliseconds) within two days of `now` (the exchange's time)."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        now = time.time() if now is None else now
        return abs(value - now) <= NEAR_NOW_S or abs(value - now * 1000) <= NEAR_NOW_S * 1000
    if not isinstance(value, str):
        return False
    return bool(
        value.startswith("redacted:sha256:")
        or _UUID.match(value)
        or _ISO_TIME.match(value)
        or _HTTP_DATE.match(value)
        or _JWT.match(value)
        or _HEX.match(value)
        or (_TOKEN.match(value) and any(c.isdigit() for c in value)
            and any(c.isalpha() for c in value))
    )


def is_volatile(path: str, primary: Any, secondary: Any, now: float | None = None) -> bool:
    """Whether the two Docker copies may differ here without anything being wrong: a header, a
    member named like an id, time or token, or two values that both look generated."""
    if path.startswith("@headers."):
        return True
    if _VOLATILE_KEY.search(last_key(path)):
        return True
    return looks_volatile_value(primary, now) and looks_volatile_value(secondary, now)
