"""JSON rendering of records, manifests and verification results, shared by the HTTP API and the CLI.

No Flask here: the one thing that depends on how the service is reached, a record's preview
link, is passed in (``PreviewUrl``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from provenance.manifest import ManifestReport
from provenance.previews import PreviewLink
from provenance.records import GenerationRecord, Tombstone
from provenance.verify import RecordMatch, VerificationResult

# What a caller without scope "read" learns of the records it does not hold a copy of.
REVIEW_NOTICE = "possibly a copy of an image we generated; ask us to review it"
# A generation id's preview link for this answer; None where none can be issued.
PreviewUrl = Callable[[str], str | None]


def preview_path(generation_id: str, link: PreviewLink) -> str:
    """The path of the API's preview route (GET /v1/generations/<id>/thumbnail) opened by ``link``."""
    return f"/v1/generations/{generation_id}/thumbnail?expires={link.expires}&sig={link.signature}"


def tombstone_json(tombstone: Tombstone) -> dict[str, Any]:
    return {
        "generation_id": tombstone.generation_id,
        "created_at": tombstone.created_at,
        "deleted_at": tombstone.deleted_at,
    }


def record_json(record: GenerationRecord, *, private: bool, preview_url: PreviewUrl) -> dict[str, Any]:
    body: dict[str, Any] = {
        "generation_id": record.generation_id,
        "created_at": record.created_at,
        "model": record.model,
        "public": record.public,
        "mime_type": record.mime_type,
        "width": record.width,
        "height": record.height,
        "manifest_label": record.manifest_label,
        "thumbnail_url": preview_url(record.generation_id),
    }
    if private:
        body.update(
            private=record.private,
            sha256_signed=record.sha256_signed,
            sha256_pixels=record.sha256_pixels,
            c2pa_sdk=record.c2pa_sdk,
        )
    return body


def manifest_json(report: ManifestReport) -> dict[str, Any]:
    return {
        "present": report.present,
        "validation_state": report.state,
        "failures": list(report.failures),
        "signer": report.signer,
        "issuer": report.issuer,
        "signed_at": report.signed_at,
        "claim_generator": report.claim_generator,
        "digital_source_type": report.digital_source_type,
        "signed_by_us": report.signed_by_us,
        "signer_status": report.signer_status,
        "generation_id": report.generation_id,
        "claimed_generation_id": report.claimed_generation_id,
        "label": report.label,
        "error": report.error,
    }


def match_json(match: RecordMatch, *, private: bool, preview_url: PreviewUrl) -> dict[str, Any]:
    return {
        "generation_id": match.record.generation_id,
        "confidence": match.confidence,
        "verdict": match.verdict,
        "withheld": False,
        "methods": [
            {
                key: value
                for key, value in (
                    ("method", m.method),
                    ("distance", m.distance),
                    ("score", m.score),
                    ("agreement", m.agreement),
                    ("blocks", m.blocks),
                    ("confidence", m.confidence),
                )
                if value is not None
            }
            for m in match.methods
        ],
        "region": [list(point) for point in match.region] if match.region else None,
        "coverage": match.coverage,
        "record": record_json(match.record, private=private, preview_url=preview_url),
    }


def withheld_json(confidence: float) -> dict[str, Any]:
    return {"verdict": "possible_match", "withheld": True, "confidence": confidence, "detail": REVIEW_NOTICE}


def matches_json(
    result: VerificationResult, *, private: bool, disclose_all: bool, preview_url: PreviewUrl
) -> list[dict[str, Any]]:
    """Each match, except that without ``disclose_all`` only ``matched`` records are shown (the
    authentic one has confidence 1.0, so it is among them): the caller holds a copy of those.
    Possible matches become one entry naming no record, with the best of their confidences."""
    shown = [
        match_json(m, private=private, preview_url=preview_url)
        for m in result.matches
        if disclose_all or m.verdict == "matched"
    ]
    hidden = [m.confidence for m in result.matches if not disclose_all and m.verdict != "matched"]
    return shown + ([withheld_json(max(hidden))] if hidden else [])


def verification_json(
    result: VerificationResult,
    *,
    private: bool,
    elapsed_ms: float,
    disclose_all: bool,
    preview_url: PreviewUrl,
) -> dict[str, Any]:
    return {
        "verdict": result.verdict,
        "c2pa": manifest_json(result.manifest),
        "deleted": tombstone_json(result.deleted) if result.deleted else None,
        "matches": matches_json(result, private=private, disclose_all=disclose_all, preview_url=preview_url),
        "query": None
        if result.query is None
        else {
            "pdq_quality": result.query.pdq_quality,
            "keypoints": result.query.keypoints,
            "low_detail": result.query.low_detail,
        },
        "elapsed_ms": round(elapsed_ms, 1),
        "timings_ms": result.timings_ms,
    }
