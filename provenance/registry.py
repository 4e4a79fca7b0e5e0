"""The write path: fingerprint, sign, and commit the record with its manifest store and fingerprints."""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from index import FingerprintStore, ImageFingerprints, fingerprint_image
from provenance.config import Settings
from provenance.engines import Database
from provenance.errors import IdempotencyKeyReused, InvalidMetadata, SigningUnavailable
from provenance.idempotency import IdempotencyKey, IdempotencyStore, SignedDelta, StoredAnswer, request_sha256
from provenance.imaging import SIGNABLE_FORMATS, decode_image, thumbnail_jpeg
from provenance.manifest import SDK_VERSION, build_manifest, manifest_label
from provenance.records import GenerationRecord, RecordStore
from provenance.signers import Signer, SignerStore
from provenance.signing import ManifestSigner, SignedImage

MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_DEPTH = 32
# JavaScript's safe integers: the verification page and most JSON readers hold numbers as doubles.
MAX_METADATA_INTEGER = 2**53 - 1


def parse_metadata(text: str, what: str = "metadata") -> Any:
    """Untrusted JSON text -> the value, within bounds every reader of it can handle: at most
    MAX_METADATA_BYTES, nested at most MAX_METADATA_DEPTH deep, integers JavaScript holds
    exactly, finite numbers (JSON has no NaN or Infinity) and text that is valid Unicode.

    Raises:
        InvalidMetadata naming what is wrong.
    """
    try:
        size = len(text.encode())
    except UnicodeEncodeError as exc:  # a command line's undecodable bytes
        raise InvalidMetadata(f"{what} is not valid UTF-8") from exc
    if size > MAX_METADATA_BYTES:
        raise InvalidMetadata(f"{what} is larger than {MAX_METADATA_BYTES} bytes")

    def integer(literal: str) -> int:
        # Checked before int(): Python refuses to convert more than 4,300 digits with a ValueError.
        value = int(literal) if len(literal.lstrip("-")) <= len(str(MAX_METADATA_INTEGER)) else None
        if value is None or abs(value) > MAX_METADATA_INTEGER:
            raise InvalidMetadata(f"{what} holds an integer beyond ±{MAX_METADATA_INTEGER}: {literal[:40]}")
        return value

    def number(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise InvalidMetadata(f"{what} holds a number too large for a double: {literal[:40]}")
        return value

    def constant(name: str) -> Any:
        raise InvalidMetadata(f"{what} holds {name}, which is not JSON")

    try:
        value = json.loads(text, parse_int=integer, parse_float=number, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise InvalidMetadata(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidMetadata(f"{what} is nested more than {MAX_METADATA_DEPTH} levels deep") from exc
    _check_nesting_and_text(value, what)
    return value


def _check_nesting_and_text(value: Any, what: str) -> None:
    """Depth and string checks without recursion, so that no input can exhaust the stack."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list) and depth > MAX_METADATA_DEPTH:
            raise InvalidMetadata(f"{what} is nested more than {MAX_METADATA_DEPTH} levels deep")
        if isinstance(item, dict):
            pending.extend((key, depth) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError as exc:  # "\ud800": a lone surrogate, escaped
                raise InvalidMetadata(f"{what} holds text that is not valid Unicode") from exc


@dataclass(frozen=True)
class GenerationRequest:
    """What the generator tells us about an image."""

    model: str
    public: dict[str, Any] = field(default_factory=dict)
    private: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, value: object) -> GenerationRequest:
        """Validate decoded JSON metadata. Raises InvalidMetadata naming what is wrong."""
        if not isinstance(value, dict):
            raise InvalidMetadata("metadata must be a JSON object")
        unknown = set(value) - {"model", "public", "private"}
        if unknown:
            raise InvalidMetadata(f"unknown metadata field(s): {', '.join(sorted(unknown))}")
        model = value.get("model")
        if not isinstance(model, str) or not model.strip() or len(model) > 200 or "\x00" in model:
            raise InvalidMetadata("metadata.model must be a non-empty string of at most 200 chars, no NUL")
        for part in ("public", "private"):
            if not isinstance(value.get(part, {}), dict):
                raise InvalidMetadata(f"metadata.{part} must be a JSON object")
        return cls(model=model.strip(), public=value.get("public", {}), private=value.get("private", {}))

    def canonical_json(self) -> str:
        """One spelling per request, for telling a retry from a different request."""
        return json.dumps(
            {"model": self.model, "public": self.public, "private": self.private},
            sort_keys=True,
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class Registration:
    """A signed image and its committed record, with where the time went (ms)."""

    record: GenerationRecord
    signed: bytes
    timings_ms: dict[str, float]
    replayed: bool = False  # the answer kept for an Idempotency-Key, not a new record


class Registry:
    """Signs and records generated images. One per process; ``after_commit`` feeds the indexes."""

    def __init__(
        self,
        settings: Settings,
        signer: ManifestSigner,
        after_commit: Callable[[Database], None] | None = None,
    ) -> None:
        self._settings = settings
        self._signer = signer
        self._after_commit = after_commit

    def signer_on_record(self, connection: Database) -> Signer:
        """Our signing certificate as the signers record has it (enrolled on first use).

        Raises:
            SigningUnavailable: it has been revoked, so what it signs now would not be ours.
        """
        signer = SignerStore(connection).for_signing(self._signer.certificate_chain)
        if not signer.ours_at(datetime.now(UTC)):
            raise SigningUnavailable(
                f"the signing certificate {signer.serial} is revoked from {signer.revoked_from}; "
                "configure a new one and run `provenance keys rotate`"
            )
        return signer

    def register(
        self,
        connection: Database,
        data: bytes,
        request: GenerationRequest,
        filename: str = "image",
        idempotency: IdempotencyKey | None = None,
    ) -> Registration:
        """Sign the image and durably record it; nothing is written when any step fails.

        With an ``idempotency`` key already used for this request, nothing is signed or written:
        the first answer comes back. Raises IdempotencyKeyReused when it was used for another.
        """
        fingerprint = request_sha256(data, request.canonical_json(), filename) if idempotency else ""
        if idempotency is not None:
            replay = self._replay(connection, idempotency, fingerprint, data)
            if replay is not None:
                return replay
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = round((now - clock) * 1000, 2)
            clock = now

        decoded = decode_image(
            data,
            max_bytes=self._settings.max_upload_bytes,
            max_pixels=self._settings.max_pixels,
            formats=SIGNABLE_FORMATS,
        )
        pixels_sha256 = decoded.pixels_sha256()
        lap("decode")
        fingerprints = fingerprint_image(decoded.image)
        thumbnail = thumbnail_jpeg(decoded.image, self._settings.thumbnail_side)
        lap("fingerprint")
        generation_id = str(uuid.uuid4())
        created_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        manifest = build_manifest(
            generation_id=generation_id,
            model=request.model,
            generator_name=self._settings.generator_name,
            title=filename,
            pdq_hash=fingerprints.pdq.bits,
            signed_at=created_at,
        )
        self.signer_on_record(connection)
        signed = self._signer.sign(manifest, data, decoded.mime_type)
        lap("sign")
        record = GenerationRecord(
            generation_id=generation_id,
            created_at=created_at,
            model=request.model,
            public=request.public,
            private=request.private,
            mime_type=decoded.mime_type,
            width=decoded.image.width,
            height=decoded.image.height,
            sha256_signed=hashlib.sha256(signed.data).hexdigest(),
            sha256_pixels=pixels_sha256,
            manifest_label=manifest_label(generation_id),
            c2pa_sdk=SDK_VERSION,
            thumbnail=thumbnail,
        )
        # Worked out before the write lock is taken: it compares the whole files.
        delta = SignedDelta.between(data, signed.data) if idempotency else None
        # One transaction; SQLite serialises writers, so record ids commit in increasing order
        # and an index tailing "id > last seen" never skips one.
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            claimed = (
                idempotency is None
                or delta is None
                or IdempotencyStore(connection).claim(
                    idempotency,
                    StoredAnswer(fingerprint, generation_id, delta),
                    datetime.now(UTC),
                    timedelta(hours=self._settings.idempotency_hours),
                )
            )
            record_id = self._insert(connection, record, signed, fingerprints) if claimed else 0
        if idempotency is not None and not claimed:
            # The same key committed by a concurrent request while this one was signing: its
            # answer is the answer, and this signature is thrown away.
            replay = self._replay(connection, idempotency, fingerprint, data)
            assert replay is not None, "a claimed key is kept for idempotency_hours"
            return replay
        lap("commit")
        if self._after_commit is not None:
            self._after_commit(connection)
        lap("index")
        return Registration(replace(record, id=record_id), signed.data, timings)

    @staticmethod
    def _insert(
        connection: Database,
        record: GenerationRecord,
        signed: SignedImage,
        fingerprints: ImageFingerprints,
    ) -> int:
        records = RecordStore(connection)
        record_id = records.add(record)
        records.add_manifest_store(record_id, signed.manifest_store)
        FingerprintStore(connection).add(record_id, fingerprints)
        return record_id

    @staticmethod
    def _replay(
        connection: Database, key: IdempotencyKey, fingerprint: str, data: bytes
    ) -> Registration | None:
        """The first answer to ``key``, rebuilt from this (identical) upload; None for a new key."""
        started = time.perf_counter()
        stored = IdempotencyStore(connection).find(key, datetime.now(UTC))
        if stored is None:
            return None
        if stored.request_sha256 != fingerprint:
            raise IdempotencyKeyReused(
                f"the Idempotency-Key {key.key!r} was used for a different image or metadata; "
                "use a new key for a new request"
            )
        record = RecordStore(connection).by_generation_id(stored.generation_id)
        if record is None:
            return None  # deleted since the key was read: its keys went with it, so this is new
        signed = stored.delta.apply(data)
        assert hashlib.sha256(signed).hexdigest() == record.sha256_signed, "the upload is the first one"
        elapsed = round((time.perf_counter() - started) * 1000, 2)
        return Registration(record, signed, {"replay": elapsed}, replayed=True)
