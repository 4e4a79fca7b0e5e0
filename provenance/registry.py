"""The write path: fingerprint, sign, and commit the record with its manifest store and fingerprints."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from index import FingerprintStore, fingerprint_image
from provenance.config import Settings
from provenance.engines import Database
from provenance.errors import InvalidMetadata
from provenance.imaging import SIGNABLE_FORMATS, decode_image, thumbnail_jpeg
from provenance.manifest import SDK_VERSION, build_manifest, manifest_label
from provenance.records import GenerationRecord, RecordStore
from provenance.signing import ManifestSigner

MAX_METADATA_BYTES = 64 * 1024


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
        if not isinstance(model, str) or not model.strip() or len(model) > 200:
            raise InvalidMetadata("metadata.model must be a non-empty string of at most 200 chars")
        for part in ("public", "private"):
            if not isinstance(value.get(part, {}), dict):
                raise InvalidMetadata(f"metadata.{part} must be a JSON object")
        return cls(model=model.strip(), public=value.get("public", {}), private=value.get("private", {}))


@dataclass(frozen=True)
class Registration:
    """A signed image and its committed record, with where the time went (ms)."""

    record: GenerationRecord
    signed: bytes
    timings_ms: dict[str, float]


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

    def register(
        self,
        connection: Database,
        data: bytes,
        request: GenerationRequest,
        filename: str = "image",
    ) -> Registration:
        """Sign the image and durably record it; nothing is written when any step fails."""
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
        manifest = build_manifest(
            generation_id=generation_id,
            model=request.model,
            generator_name=self._settings.generator_name,
            title=filename,
            pdq_hash=fingerprints.pdq.bits,
        )
        signed = self._signer.sign(manifest, data, decoded.mime_type)
        lap("sign")
        record = GenerationRecord(
            generation_id=generation_id,
            created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
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
        # One transaction; SQLite serialises writers, so record ids commit in increasing order
        # and an index tailing "id > last seen" never skips one.
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            records = RecordStore(connection)
            record_id = records.add(record)
            records.add_manifest_store(record_id, signed.manifest_store)
            FingerprintStore(connection).add(record_id, fingerprints)
        lap("commit")
        if self._after_commit is not None:
            self._after_commit(connection)
        lap("index")
        return Registration(replace(record, id=record_id), signed.data, timings)
