"""Every signing certificate we ever used, and from when a compromised one stopped being ours.

A signature is ours when its leaf certificate is in this record as ``current`` (what we sign with
now) or ``retired`` (rotated out; its images stay ours), or ``revoked`` with the signature made
before ``revoked_from``. The record lives in the store, not in the keys folder: every API host
reads the same one, so a revocation holds everywhere within REFRESH_SECONDS, and KMS-backed
hosts have no keys folder at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from provenance.engines import Database

CURRENT, RETIRED, REVOKED = "current", "retired", "revoked"
REFRESH_SECONDS = 5.0  # how soon a verifying process sees another's revocation
_COLUMNS = "serial, fingerprint, subject, not_after, status, added_at, revoked_from, certificate_pem"


def utc_time(text: str) -> datetime:
    """An ISO 8601 time; one without a zone is taken as UTC. Raises ValueError."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")  # fine enough to list in order


@dataclass(frozen=True)
class Signer:
    """One leaf certificate we signed with. ``serial`` is decimal, as c2pa reports it."""

    serial: str
    fingerprint: str  # SHA-256 of the certificate's DER, hex
    subject: str
    not_after: str
    status: str  # current | retired | revoked
    added_at: str
    revoked_from: str | None
    certificate_pem: str

    def ours_at(self, signed_at: datetime | None) -> bool:
        """Whether a signature made at ``signed_at`` (None: unknown) by this certificate is ours.

        A revoked certificate's signature counts only when it is known to predate the revocation.
        """
        if self.status != REVOKED:
            return True
        assert self.revoked_from is not None
        return signed_at is not None and signed_at < utc_time(self.revoked_from)


def leaf_certificate(chain_pem: bytes) -> x509.Certificate:
    """The first certificate of a PEM chain (the leaf). Raises ValueError for anything else."""
    certificates = x509.load_pem_x509_certificates(chain_pem)
    return certificates[0]


def _signer(certificate: x509.Certificate, status: str) -> Signer:
    return Signer(
        serial=str(certificate.serial_number),
        fingerprint=certificate.fingerprint(hashes.SHA256()).hex(),
        subject=certificate.subject.rfc4514_string(),
        not_after=certificate.not_valid_after_utc.isoformat(),
        status=status,
        added_at=_now(),
        revoked_from=None,
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
    )


class SignerStore:
    """Reads and writes the signers table on a caller-owned connection."""

    def __init__(self, connection: Database) -> None:
        self._db = connection

    def all(self) -> list[Signer]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM signers ORDER BY added_at, serial").fetchall()
        return [Signer(*row) for row in rows]

    def by_serial(self, serial: str) -> Signer | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM signers WHERE serial = ?", (serial,)).fetchone()
        return Signer(*row) if row else None

    def _insert(self, signer: Signer) -> None:
        self._db.execute(
            f"INSERT INTO signers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (serial) DO NOTHING",
            (
                signer.serial,
                signer.fingerprint,
                signer.subject,
                signer.not_after,
                signer.status,
                signer.added_at,
                signer.revoked_from,
                signer.certificate_pem,
            ),
        )

    def enroll(self, chain_pem: bytes) -> Signer:
        """Record the chain's leaf as current unless it is known; returns its record as stored.

        Every process that signs enrolls its leaf at start, so a certificate is on record before
        its first signature, and an existing install's certificate is recorded on upgrade.
        """
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._insert(_signer(leaf_certificate(chain_pem), CURRENT))
        found = self.by_serial(str(leaf_certificate(chain_pem).serial_number))
        assert found is not None
        return found

    def for_signing(self, chain_pem: bytes) -> Signer:
        """The record of the leaf a process signs with, enrolling it if it is new."""
        return self.by_serial(str(leaf_certificate(chain_pem).serial_number)) or self.enroll(chain_pem)

    def rotate(self, old_chain_pem: bytes | None, new_chain_pem: bytes) -> tuple[Signer, list[Signer]]:
        """Make the new chain's leaf current and retire every other current one (they stay ours).

        Returns the new signer and those retired.

        Raises:
            ValueError: the new certificate is on record as revoked.
        """
        new = _signer(leaf_certificate(new_chain_pem), CURRENT)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if old_chain_pem is not None:
                self._insert(_signer(leaf_certificate(old_chain_pem), CURRENT))
            self._insert(new)
            known = self.by_serial(new.serial)
            assert known is not None
            if known.status == REVOKED:
                raise ValueError(f"certificate {new.serial} is revoked; it cannot sign for us again")
            self._db.execute("UPDATE signers SET status = ? WHERE serial = ?", (CURRENT, new.serial))
            retired = [s for s in self.all() if s.status == CURRENT and s.serial != new.serial]
            self._db.execute(
                "UPDATE signers SET status = ? WHERE status = ? AND serial <> ?",
                (RETIRED, CURRENT, new.serial),
            )
        found = self.by_serial(new.serial)
        assert found is not None
        return found, retired

    def revoke(self, serial: str, revoked_from: datetime) -> Signer:
        """Mark a certificate compromised: its signatures from ``revoked_from`` on are not ours.

        Raises:
            LookupError: no such certificate on record.
            ValueError: it is already revoked from an earlier time (a later one would make
                signatures ours again).
        """
        when = revoked_from.astimezone(UTC).isoformat(timespec="seconds")
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            signer = self.by_serial(serial)
            if signer is None:
                raise LookupError(f"no signing certificate with serial {serial} on record")
            if signer.revoked_from is not None and utc_time(signer.revoked_from) <= revoked_from:
                raise ValueError(f"certificate {serial} is already revoked from {signer.revoked_from}")
            self._db.execute(
                "UPDATE signers SET status = ?, revoked_from = ? WHERE serial = ?", (REVOKED, when, serial)
            )
        found = self.by_serial(serial)
        assert found is not None
        return found


class SignerCache:
    """The signers record as one process's verifications read it: reloaded once it is
    ``max_age`` seconds old, and at once for a serial it does not know (a certificate that
    another host has just rotated in signs images that must verify as ours right away)."""

    def __init__(self, load: Callable[[], list[Signer]], max_age: float = REFRESH_SECONDS) -> None:
        self._load = load
        self._max_age = max_age
        self._lock = threading.Lock()
        self._signers: dict[str, Signer] = {}
        self._loaded_at = -float("inf")

    def find(self, serial: str) -> Signer | None:
        with self._lock:
            stale = time.monotonic() - self._loaded_at > self._max_age
            if stale or serial not in self._signers:
                self._signers = {signer.serial: signer for signer in self._load()}
                self._loaded_at = time.monotonic()
            return self._signers.get(serial)
