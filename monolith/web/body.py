"""Decoding request bodies: malformed JSON is a 400, a wrong field a 422 that names it.

- A JSON route reads only ``Content-Type: application/json`` (or ``application/*+json``);
  anything else is a 415. A page on another site can send ``text/plain``, a form or a typeless
  blob without a CORS preflight; it cannot send ``application/json``.
- A key given twice in one object is a 400: JSON parsers disagree on which one wins, so the
  body means different things to different readers.
- A control character (NUL, ESC, ... but not tab, newline or carriage return) in a string is
  a 422 naming the field: no text field of the app holds one, and some stores and logs cut
  or mangle text at a NUL.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, HTTPException

from monolith.errors import UnsupportedType

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


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class _DuplicateKey(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _control_field(value: Any, path: str) -> str | None:
    """The path of the first string (value or key) holding a control character, if any."""
    if isinstance(value, str):
        return path if _CONTROL.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if _CONTROL.search(key):
                return where
            found = _control_field(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _control_field(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


# Every string token of a JSON text, and whether a colon follows it (then it is a key). Scanned
# left to right over valid JSON, each match starts at a real string's opening quote.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"(\s*:)?')
# An escape that may stand for a control character (or a false alarm such as ``\\u0000``).
_MAYBE_CONTROL = re.compile(rb"\\(?:u00[01][0-9a-fA-F]|u007[fF]|[bf])")


def _keys(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_keys(v) for v in value)
    return 0


def check_text(raw: bytes) -> None:
    """400 for a key given twice in one object; 422 naming a string with a control character.

    Run after msgspec accepted the body (so it is well-formed JSON): msgspec keeps the last of
    two equal keys silently. The usual body costs an untyped msgspec decode and two regex
    scans (a key given twice leaves fewer keys than the text names; a control character
    needs an escape in JSON); only a body that fails them is parsed again, by the standard
    library's parser, which can tell exactly what and where.
    """
    if _MAYBE_CONTROL.search(raw) is None:
        named = sum(1 for m in _STRING.finditer(raw) if m.group(1))
        if _keys(msgspec.json.decode(raw)) == named:
            return
    try:
        tree = json.loads(raw, object_pairs_hook=_pairs)
    except _DuplicateKey as exc:
        raise ClientException(detail=f"malformed JSON: key {str(exc)!r} given twice") from None
    except ValueError as exc:
        raise ClientException(detail=f"malformed JSON: {exc}") from None
    field = _control_field(tree, "")
    if field is not None:
        raise UnprocessableEntity(detail=f"{field or 'body'}: control characters are not allowed")


def decode_json(raw: bytes, type_: type[T]) -> T:
    if not raw.strip():
        raise ClientException(detail="request body is empty; expected a JSON object")
    try:
        value = msgspec.json.decode(raw, type=type_, strict=True)
    except msgspec.ValidationError as exc:
        raise field_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ClientException(detail=f"malformed JSON: {exc}") from None
    check_text(raw)
    return value


def is_json(content_type: str) -> bool:
    """``application/json`` or ``application/<something>+json``, any parameters."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def require_json(request: Request[Any, Any, Any], raw: bytes) -> None:
    """415 unless a body with content is declared JSON (an empty body says nothing)."""
    content_type = request.headers.get("content-type", "")
    if (content_type or raw.strip()) and not is_json(content_type):
        shown = content_type.partition(";")[0].strip() or "none"
        raise UnsupportedType(f"Content-Type must be application/json, not {shown}")


async def decode(request: Request[Any, Any, Any], type_: type[T]) -> T:
    """The request's JSON body as ``type_`` (415 unless it is declared JSON)."""
    raw = await request.body()
    require_json(request, raw)
    return decode_json(raw, type_)
