"""Who may call what: bearer tokens and Intercom's webhook signature.

Guarantees:
- secrets are compared with :func:`hmac.compare_digest` on bytes (constant time
  in the secret's content);
- a route whose secret is not configured refuses every call (403
  ``not_configured``), whatever the caller sends: an unset token never means open;
- a missing credential is 401 ``missing_token`` / ``missing_signature``, a wrong one
  401 ``invalid_token`` / ``invalid_signature``; messages never echo what was sent.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import request
from pydantic import SecretStr

from web.context import web_context
from web.errors import ApiError

SIGNATURE_HEADER = "X-Hub-Signature"
_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="intercom-sync"'}


def plain_secret(secret: SecretStr | None) -> bytes | None:
    if secret is None:
        return None
    value = secret.get_secret_value()
    return value.encode() if value else None


def configured_token(expected: SecretStr | None, *, setting: str) -> bytes:
    """The route's secret as bytes, or the 403 ``not_configured`` naming ``setting``."""
    token = plain_secret(expected)
    if token is None:
        raise ApiError(403, "not_configured", f"{setting} is not set: this route is disabled.")
    return token


def require_bearer(authorization: str | None, expected: SecretStr | None, *, setting: str) -> None:
    """Raise :class:`ApiError` unless ``authorization`` is ``Bearer <expected>``."""
    token = configured_token(expected, setting=setting)
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(
            401,
            "missing_token",
            "Send the token as 'Authorization: Bearer <token>'.",
            headers=_BEARER_CHALLENGE,
        )
    if not hmac.compare_digest(presented.strip().encode(), token):
        raise ApiError(401, "invalid_token", "The bearer token is not valid.", headers=_BEARER_CHALLENGE)


def require_header_token(
    presented: str | None, expected: SecretStr | None, *, setting: str, header: str
) -> None:
    """Raise :class:`ApiError` unless the ``header`` value ``presented`` is ``expected`` (a token a
    caller sends in a header of its own, e.g. the referral program's ``X-Referral-Token``)."""
    token = configured_token(expected, setting=setting)
    if not (presented or "").strip():
        raise ApiError(401, "missing_token", f"Send the token as '{header}: <token>'.")
    if not hmac.compare_digest((presented or "").strip().encode(), token):
        raise ApiError(401, "invalid_token", f"The {header} header is not valid.")


def require_admin() -> None:
    """The admin routes' ``before_request``: the caller must hold ``SYNC_ADMIN_TOKEN``."""
    require_bearer(
        request.headers.get("Authorization"),
        web_context().settings.sync_admin_token,
        setting="SYNC_ADMIN_TOKEN",
    )


def sign(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature`` value Intercom sends for ``body``: ``sha1=<hex HMAC-SHA1>``."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def signature_matches(body: bytes, header: str, key: bytes) -> bool:
    """``header`` is ``body``'s ``X-Hub-Signature`` with ``key`` (compared in constant time)."""
    expected = ("sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest()).encode()
    return hmac.compare_digest(header.strip().lower().encode(), expected)


def require_signature(body: bytes, header: str | None, secret: SecretStr | None) -> None:
    """Raise :class:`ApiError` unless ``header`` is the body's signature with ``secret``."""
    key = plain_secret(secret)
    if key is None:
        raise ApiError(
            403, "not_configured", "INTERCOM_CLIENT_SECRET is not set: webhooks are refused until it is."
        )
    if not header:
        raise ApiError(401, "missing_signature", f"The {SIGNATURE_HEADER} header is required.")
    if not signature_matches(body, header, key):
        raise ApiError(
            401,
            "invalid_signature",
            f"{SIGNATURE_HEADER} does not match the body signed with the client secret.",
        )
