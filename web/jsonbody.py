"""Reading a JSON request body safely.

Guarantees:
- :func:`read_body` never holds more than the configured limit: a declared
  ``Content-Length`` over it, or a chunked body that grows past it, is 413
  ``payload_too_large`` (the stream is cut off at the limit);
- :func:`require_json` answers 415 unless the body is declared ``application/json``
  (or a ``+json`` type);
- :func:`parse_json` answers 400 ``malformed_json`` for bytes that are not JSON
  (invalid UTF-8, syntax errors, ``NaN``, nesting too deep) without echoing them;
- :func:`validate` answers 400 ``invalid_body`` naming each bad field and why,
  never quoting the values sent.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from web.errors import ApiError

Model = TypeVar("Model", bound=BaseModel)

_MAX_ERRORS_SHOWN = 5


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"Request body exceeds the limit of {max_bytes} bytes.")


def read_body(max_bytes: int) -> bytes:
    """The raw request body, at most ``max_bytes`` long, or 413.

    The stream is limited to ``max_bytes + 1`` for this request (Flask's per-request
    ``max_content_length``), so a chunked body one byte over the limit is seen as such.
    """
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(max_bytes)
    request.max_content_length = max_bytes + 1
    body = request.stream.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise too_large(max_bytes)
    return body


def require_json() -> None:
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        shown = mimetype or "none"
        raise ApiError(415, "unsupported_media_type", f"Send the body as application/json (got {shown}).")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise ApiError(400, "malformed_json", "The body is not UTF-8 text.") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            "malformed_json",
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.",
        ) from None
    except (ValueError, RecursionError):
        raise ApiError(400, "malformed_json", "The body is not valid JSON (constants or nesting).") from None


def describe_errors(error: ValidationError) -> str:
    """``field: problem`` for the first few errors (pure; the input values are left out)."""
    parts = []
    for item in error.errors(include_input=False, include_url=False)[:_MAX_ERRORS_SHOWN]:
        where = ".".join(str(part) for part in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def validate(model: type[Model], data: Any) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid_body", describe_errors(exc)) from None


def json_body(model: type[Model], max_bytes: int) -> Model:
    """Read, type-check, parse and validate the request body in one step."""
    body = read_body(max_bytes)
    require_json()
    return validate(model, parse_json(body))
