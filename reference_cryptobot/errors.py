"""Errors in FastAPI's own shapes, for checks that cannot live in a pydantic model."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError


def invalid(loc: tuple[str | int, ...], message: str, value: Any) -> RequestValidationError:
    """A 422 answered exactly as FastAPI answers a failed field validation:
    `{"detail": [{"type": "value_error", "loc": [...], "msg": "Value error, ...", "input": ...}]}`.
    """
    return RequestValidationError([{
        "type": "value_error",
        "loc": loc,
        "msg": f"Value error, {message}",
        "input": value,
        "ctx": {"error": message},
    }])
