"""API keys: created once and shown once; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from provenance.engines import Database

SCOPES = ("sign", "read", "verify", "fetch:manifests", "admin")
_PREFIX = "pk_"


@dataclass(frozen=True)
class ApiKey:
    name: str
    prefix: str
    scopes: frozenset[str]
    id: int  # what idempotency keys are scoped to


def _digest(token: str) -> str:
    # Keys are 256-bit random strings, so a plain hash is enough; no slow KDF needed.
    return hashlib.sha256(token.encode()).hexdigest()


def parse_scopes(text: str) -> frozenset[str]:
    """Comma-separated scopes; raises ValueError naming an unknown one."""
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = scopes - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"unknown scope(s) {sorted(unknown)}; choose from {', '.join(SCOPES)}")
    return scopes


def create_api_key(connection: Database, scopes: frozenset[str], name: str = "") -> str:
    """Store a new key's hash and return the key itself (the only time it is visible)."""
    token = _PREFIX + secrets.token_urlsafe(32)
    with connection:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(
            "INSERT INTO api_keys (key_hash, prefix, name, scopes, created_at) VALUES (?, ?, ?, ?, ?)",
            (
                _digest(token),
                token[:10],
                name,
                ",".join(sorted(scopes)),
                datetime.now(UTC).isoformat(timespec="seconds"),
            ),
        )
    return token


def authenticate(connection: Database, token: str) -> ApiKey | None:
    """The key a bearer token belongs to, or None."""
    row = connection.execute(
        "SELECT name, prefix, scopes, id FROM api_keys WHERE key_hash = ?", (_digest(token),)
    ).fetchone()
    if row is None:
        return None
    return ApiKey(name=row[0], prefix=row[1], scopes=frozenset(row[2].split(",")), id=row[3])
