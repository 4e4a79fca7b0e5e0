"""Request guards for every blueprint: API keys and their scopes, and the verification rate limits."""

from __future__ import annotations

import contextlib
import math

from flask import request

from provenance import db
from provenance.apikeys import ApiKey, authenticate
from provenance.errors import Forbidden, TooManyRequests, Unauthorized
from provenance.services import services


def api_key() -> ApiKey | None:
    """The request's API key; None without an Authorization header.

    Raises:
        Unauthorized: the header is malformed or names no valid key.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return None
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use 'Authorization: Bearer <api key>'")
    # A connection of its own, given back at once: the request's body (a slow client's upload)
    # is read after this, and must not hold one of the store's pooled connections meanwhile.
    with contextlib.closing(db.connect(services().settings.database)) as connection:
        key = authenticate(connection, token.strip())
    if key is None:
        raise Unauthorized("the API key is not valid")
    return key


def require_scope(scope: str) -> ApiKey:
    key = api_key()
    if key is None:
        raise Unauthorized(f"this endpoint needs an API key with scope '{scope}'")
    if scope not in key.scopes:
        raise Forbidden(f"the API key lacks scope '{scope}'")
    return key


def limit_verification(key: ApiKey | None, images: int = 1) -> None:
    """Count ``images`` verifications against the caller's allowance (by key, else by address);
    raises TooManyRequests when it is used up."""
    settings = services().settings
    per_minute = settings.verify_per_minute_with_key if key else settings.verify_per_minute
    if per_minute <= 0:
        return
    client = f"key:{key.prefix}" if key else f"address:{request.remote_addr}"
    wait = services().limiter.take(client, images, per_minute)
    if wait:
        whose = "this API key" if key else "this address"
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"{whose} may verify {per_minute} images a minute; try again in {seconds} s", seconds
        )
