"""The read path: suspect image bytes -> manifest report, exact and perceptual matches, a verdict."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from index import (
    Calibration,
    Evidence,
    FingerprintStore,
    Matcher,
    MethodEvidence,
    QueryDetail,
    SearchIndex,
    SmoothRecords,
    StoredPreview,
    verdict_for,
)
from provenance.config import Settings
from provenance.engines import Database
from provenance.imaging import decode_image
from provenance.manifest import ManifestReader, ManifestReport
from provenance.records import GenerationRecord, RecordStore, Tombstone


@dataclass(frozen=True)
class RecordMatch:
    record: GenerationRecord
    confidence: float
    verdict: str
    methods: tuple[MethodEvidence, ...]
    region: tuple[tuple[float, float], ...] | None = None
    coverage: float | None = None


@dataclass(frozen=True)
class VerificationResult:
    verdict: str  # authentic | deleted | matched | possible_match | no_match
    manifest: ManifestReport
    matches: tuple[RecordMatch, ...]
    query: QueryDetail | None = None  # None when an exact match made the search unnecessary
    timings_ms: dict[str, float] = field(default_factory=dict)
    # Set with verdict "deleted": our Trusted manifest names a generation whose record was deleted.
    deleted: Tombstone | None = None


class Verifier:
    """Runs the stages cheapest first. One per process; the index is shared by its requests."""

    def __init__(
        self,
        settings: Settings,
        index: SearchIndex,
        reader: ManifestReader,
        calibration: Calibration | None = None,
        smooth: SmoothRecords | None = None,
    ) -> None:
        self._settings = settings
        self._index = index
        self._reader = reader
        self.calibration = calibration or Calibration()
        self._matcher = Matcher(index, self.calibration, smooth=smooth)

    def verify(self, connection: Database, data: bytes) -> VerificationResult:
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
            tolerate_damage=True,  # a copy is judged by what viewers show of it
        )
        lap("decode")
        manifest = self._reader.read(data, decoded.mime_type)
        lap("c2pa")
        records = RecordStore(connection)
        evidence: dict[int, Evidence] = {}
        self._exact(records, decoded.sha256, decoded.pixels_sha256(), manifest, evidence)
        lap("exact")
        store = FingerprintStore(connection)
        self._index.catch_up(store)
        lap("catch_up")
        detail = None
        if not any(e.confidence >= 1.0 for e in evidence.values()):
            detail = self._matcher.search(decoded.image, _previews(records), store, evidence, lap)
        matches = self._matches(records, evidence)
        lap("rank")
        authentic = manifest.generation_id is not None and any(
            m.record.generation_id == manifest.generation_id for m in matches
        )
        deleted = None
        if manifest.generation_id is not None and not authentic:
            deleted = records.tombstone(manifest.generation_id)
        if authentic:
            verdict = "authentic"
        elif deleted is not None:
            verdict = "deleted"
        else:
            verdict = matches[0].verdict if matches else "no_match"
        return VerificationResult(verdict, manifest, matches, detail, timings, deleted)

    def _exact(
        self,
        records: RecordStore,
        bytes_sha256: str,
        pixels_sha256: str,
        manifest: ManifestReport,
        evidence: dict[int, Evidence],
    ) -> None:
        found = [
            ("exact_bytes", records.by_signed_sha256(bytes_sha256)),
            ("exact_pixels", records.by_pixels_sha256(pixels_sha256)),
        ]
        if manifest.generation_id:
            found.append(("c2pa", records.by_generation_id(manifest.generation_id)))
        for method, record in found:
            if record is not None:
                evidence.setdefault(record.id, Evidence()).methods.append(
                    MethodEvidence(method, confidence=1.0)
                )

    def _matches(self, records: RecordStore, evidence: dict[int, Evidence]) -> tuple[RecordMatch, ...]:
        matches = []
        for record_id, found in evidence.items():
            confidence = found.confidence
            if confidence <= 0:
                continue
            record = records.by_id(record_id)
            if record is None:
                continue
            matches.append(
                RecordMatch(
                    record=record,
                    confidence=round(confidence, 4),
                    verdict=verdict_for(confidence),
                    methods=tuple(m for m in found.methods if m.confidence > 0),
                    region=found.region,
                    coverage=found.coverage,
                )
            )
        matches.sort(key=lambda m: m.confidence, reverse=True)
        return tuple(matches)


def catch_up_smooth_records(smooth: SmoothRecords, connection: Database) -> None:
    """Take the records registered and deleted since ``smooth`` last looked into it. A process
    does it before it serves, and a server's master before it forks its workers, so that no
    request waits for a first scan of the store (index.smooth.SmoothRecords)."""
    smooth.catch_up(FingerprintStore(connection), _previews(RecordStore(connection)))


def _previews(records: RecordStore) -> Callable[[int], StoredPreview | None]:
    """The matcher's view of a record: the original's size and its stored preview."""

    def preview(record_id: int) -> StoredPreview | None:
        record = records.by_id(record_id)
        return None if record is None else StoredPreview(record.width, record.height, record.thumbnail)

    return preview
