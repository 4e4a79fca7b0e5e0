"""Preview links: short-lived capability URLs for a record's preview, signed with a server secret.

A verification answer may show the caller a record's preview (see the README's "Privacy"); the
link it carries names the generation and an expiry, and an HMAC-SHA256 over both with a secret
only the server holds, so the preview cannot be fetched for another record or after the expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)
SECRET_BYTES = 32


def ensure_secret(path: Path) -> bytes:
    """The secret stored at ``path``, created (mode 0600) when missing.

    Processes starting together agree on one secret: each writes a candidate to its own file and
    hard-links it into place, which fails for all but the first, and then reads what is there.

    Raises:
        OSError: the file cannot be read or created.
        ValueError: the file does not hold a secret of at least 32 bytes in hex.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        candidate = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(SECRET_BYTES) + "\n")
        try:
            os.link(candidate, path)
            logger.info("created the preview-link secret %s", path)
        except FileExistsError:
            pass  # another process was first: use its secret
        finally:
            candidate.unlink()
    secret = bytes.fromhex(path.read_text().strip())
    if len(secret) < SECRET_BYTES:
        raise ValueError(
            f"{path} holds {len(secret)} bytes; a preview-link secret has at least {SECRET_BYTES}"
        )
    return secret


@dataclass(frozen=True)
class PreviewLink:
    """The query parameters of a preview link: its expiry (Unix seconds) and signature."""

    expires: int
    signature: str


class PreviewLinks:
    """Issues and checks preview links for one secret and lifetime."""

    def __init__(self, secret: bytes, lifetime_seconds: int) -> None:
        self._secret = secret
        self.lifetime_seconds = lifetime_seconds

    def _sign(self, generation_id: str, expires: int) -> str:
        message = f"preview\n{generation_id}\n{expires}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, generation_id: str, now: float | None = None) -> PreviewLink:
        expires = int(time.time() if now is None else now) + self.lifetime_seconds
        return PreviewLink(expires, self._sign(generation_id, expires))

    def refusal(
        self, generation_id: str, expires: str, signature: str, now: float | None = None
    ) -> str | None:
        """Why the link does not open this generation's preview, or None when it does."""
        try:
            expiry = int(expires)
        except ValueError:
            return "the preview link is not valid"
        # Constant time: a forger learns nothing from how long the comparison took.
        if not hmac.compare_digest(self._sign(generation_id, expiry).encode(), signature.encode()):
            return "the preview link is not valid"
        if expiry <= (time.time() if now is None else now):
            return "the preview link has expired; verify the image again for a fresh one"
        return None
