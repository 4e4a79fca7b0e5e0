"""HTTP API: Blueprint "api" at /v1 and the health probes; request parsing and JSON rendering."""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for
from werkzeug.datastructures import FileStorage

from index import FingerprintStore
from provenance.apikeys import ApiKey, authenticate
from provenance.app import request_db, services
from provenance.errors import (
    BadRequest,
    Forbidden,
    InvalidMetadata,
    NotFound,
    ProvenanceError,
    TooManyRequests,
    Unauthorized,
)
from provenance.manifest import ManifestReport
from provenance.records import GenerationRecord, RecordStore
from provenance.registry import MAX_METADATA_BYTES, GenerationRequest, parse_metadata
from provenance.verify import RecordMatch, VerificationResult

api = Blueprint("api", __name__, url_prefix="/v1")
health = Blueprint("health", __name__)
MAX_BATCH = 32


def _api_key() -> ApiKey | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return None
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use 'Authorization: Bearer <api key>'")
    key = authenticate(request_db(), token.strip())
    if key is None:
        raise Unauthorized("the API key is not valid")
    return key


def require_scope(scope: str) -> ApiKey:
    key = _api_key()
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


def _upload(field: str = "image") -> FileStorage:
    upload = request.files.get(field)
    if upload is None:
        raise BadRequest(f"send the image as a multipart/form-data file part named '{field}'")
    return upload


def record_json(record: GenerationRecord, *, private: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "generation_id": record.generation_id,
        "created_at": record.created_at,
        "model": record.model,
        "public": record.public,
        "mime_type": record.mime_type,
        "width": record.width,
        "height": record.height,
        "manifest_label": record.manifest_label,
        "thumbnail_url": url_for("api.get_thumbnail", generation_id=record.generation_id),
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
        "generation_id": report.generation_id,
        "claimed_generation_id": report.claimed_generation_id,
        "label": report.label,
        "error": report.error,
    }


def match_json(match: RecordMatch, *, private: bool) -> dict[str, Any]:
    return {
        "generation_id": match.record.generation_id,
        "confidence": match.confidence,
        "verdict": match.verdict,
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
        "record": record_json(match.record, private=private),
    }


def verification_json(result: VerificationResult, *, private: bool, elapsed_ms: float) -> dict[str, Any]:
    return {
        "verdict": result.verdict,
        "c2pa": manifest_json(result.manifest),
        "matches": [match_json(m, private=private) for m in result.matches],
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


def _metadata() -> GenerationRequest:
    raw = request.form.get("metadata")
    if raw is None:
        part = request.files.get("metadata")
        raw = part.read(MAX_METADATA_BYTES + 1).decode("utf-8", "replace") if part else None
    if raw is None:
        raise InvalidMetadata("send a 'metadata' part holding a JSON object with at least 'model'")
    return GenerationRequest.from_json(parse_metadata(raw))


@api.post("/generations")
def create_generation() -> Response:
    require_scope("sign")
    metadata = _metadata()
    upload = _upload()
    registration = (
        services()
        .require_registry()
        .register(request_db(), upload.read(), metadata, filename=upload.filename or "image")
    )
    record = registration.record
    response = Response(registration.signed, status=201, mimetype=record.mime_type)
    response.headers["X-Generation-Id"] = record.generation_id
    response.headers["Location"] = url_for("api.get_generation", generation_id=record.generation_id)
    response.headers["X-Manifest-Label"] = record.manifest_label
    return response


def _record_or_404(generation_id: str) -> GenerationRecord:
    record = RecordStore(request_db()).by_generation_id(generation_id)
    if record is None:
        raise NotFound(f"no generation with id {generation_id}")
    return record


@api.get("/generations/<generation_id>")
def get_generation(generation_id: str) -> Response:
    require_scope("read")
    return jsonify(record_json(_record_or_404(generation_id), private=True))


@api.get("/generations/<generation_id>/thumbnail")
def get_thumbnail(generation_id: str) -> Response:
    """Public: the thumbnail is of an image we published, shown beside a suspect copy."""
    response = Response(_record_or_404(generation_id).thumbnail, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


def _verify(data: bytes, private: bool) -> dict[str, Any]:
    started = time.perf_counter()
    result = services().verifier.verify(request_db(), data)
    return verification_json(result, private=private, elapsed_ms=(time.perf_counter() - started) * 1000)


@api.post("/verify")
def verify() -> Response:
    key = _api_key()
    limit_verification(key)
    return jsonify(_verify(_upload().read(), key is not None and "read" in key.scopes))


@api.post("/verify/batch")
def verify_batch() -> Response:
    key = require_scope("verify")
    settings = services().settings
    request.max_content_length = MAX_BATCH * settings.max_upload_bytes
    uploads = request.files.getlist("image")
    if not uploads:
        raise BadRequest("send up to 32 images as multipart/form-data file parts named 'image'")
    if len(uploads) > MAX_BATCH:
        raise BadRequest(f"a batch holds at most {MAX_BATCH} images, got {len(uploads)}")
    limit_verification(key, len(uploads))
    results = []
    for upload in uploads:
        try:
            results.append({"file": upload.filename, **_verify(upload.read(), "read" in key.scopes)})
        except ProvenanceError as exc:
            results.append(
                {
                    "file": upload.filename,
                    "error": {
                        "type": exc.type_uri,
                        "title": exc.title,
                        "status": exc.status,
                        "detail": exc.detail,
                    },
                }
            )
    return jsonify({"results": results})


@health.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@health.get("/readyz")
def readyz() -> Response:
    found = services()
    store_last = RecordStore(request_db()).last_id()
    found.index.catch_up(FingerprintStore(request_db()))
    ready = found.index.last_record_id >= store_last
    body = {
        "status": "ready" if ready else "catching-up",
        "records": store_last,
        "indexed_through": found.index.last_record_id,
        "signing": found.registry is not None,
    }
    response = jsonify(body)
    response.status_code = 200 if ready else 503
    return response
