"""Decoding request bodies: malformed JSON is a 400, a wrong field a 422 that names it."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, HTTPException

T = TypeVar("T")

_FIELD = re.compile(r"at `\$\.?([^`]*)`")


class UnprocessableEntity(HTTPException):
    status_code = 422


def field_error(message: str) -> UnprocessableEntity:
    """A msgspec validation message as a 422 whose detail starts with the field's name."""
    m = _FIELD.search(message)
    missing = re.search(r"missing required field `([^`]+)`", message)
    if missing:  # named by its full path: "items[0].quantity: field required"
        where = f"{m.group(1)}." if m and m.group(1) else ""
        return UnprocessableEntity(detail=f"{where}{missing.group(1)}: field required")
    text = _FIELD.sub("", message).strip().rstrip("-").strip()
    if m:
        return UnprocessableEntity(detail=f"{m.group(1) or 'body'}: {text}")
    return UnprocessableEntity(detail=f"body: {text}")


def decode_json(raw: bytes, type_: type[T]) -> T:
    if not raw.strip():
        raise ClientException(detail="request body is empty; expected a JSON object")
    try:
        return msgspec.json.decode(raw, type=type_, strict=True)
    except msgspec.ValidationError as exc:
        raise field_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ClientException(detail=f"malformed JSON: {exc}") from None


async def decode(request: Request[Any, Any, Any], type_: type[T]) -> T:
    """The request's JSON body as ``type_``."""
    return decode_json(await request.body(), type_)
