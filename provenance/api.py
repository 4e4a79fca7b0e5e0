"""HTTP API: Blueprint "api" at /v1 and the health probes; request parsing and JSON rendering."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for
from werkzeug.datastructures import FileStorage

from index import FingerprintStore
from provenance import db
from provenance.apikeys import ApiKey, authenticate
from provenance.app import request_db, services
from provenance.deletion import delete_generation
from provenance.errors import (
    BadRequest,
    Forbidden,
    InvalidMetadata,
    NotFound,
    ProvenanceError,
    TooManyRequests,
    Unauthorized,
)
from provenance.idempotency import IdempotencyKey
from provenance.manifest import ManifestReport
from provenance.records import GenerationRecord, RecordStore, Tombstone
from provenance.registry import MAX_METADATA_BYTES, GenerationRequest, parse_metadata
from provenance.verify import RecordMatch, VerificationResult

api = Blueprint("api", __name__, url_prefix="/v1")
health = Blueprint("health", __name__)
MAX_BATCH = 32
# What a caller without scope "read" learns of the records it does not hold a copy of.
REVIEW_NOTICE = "possibly a copy of an image we generated; ask us to review it"


def _api_key() -> ApiKey | None:
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


def thumbnail_url(generation_id: str) -> str | None:
    """A preview link that opens the record's thumbnail until it expires; None when this server
    cannot sign links (then only a key with scope 'read' opens the thumbnail)."""
    links = services().preview_links
    if links is None:
        return None
    link = links.issue(generation_id)
    return url_for("api.get_thumbnail", generation_id=generation_id, expires=link.expires, sig=link.signature)


def tombstone_json(tombstone: Tombstone) -> dict[str, Any]:
    return {
        "generation_id": tombstone.generation_id,
        "created_at": tombstone.created_at,
        "deleted_at": tombstone.deleted_at,
    }


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
        "thumbnail_url": thumbnail_url(record.generation_id),
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


def match_json(match: RecordMatch, *, private: bool) -> dict[str, Any]:
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
        "record": record_json(match.record, private=private),
    }


def withheld_json(confidence: float) -> dict[str, Any]:
    return {"verdict": "possible_match", "withheld": True, "confidence": confidence, "detail": REVIEW_NOTICE}


def matches_json(result: VerificationResult, *, private: bool, disclose_all: bool) -> list[dict[str, Any]]:
    """Each match, except that without ``disclose_all`` only ``matched`` records are shown (the
    authentic one has confidence 1.0, so it is among them): the caller holds a copy of those.
    Possible matches become one entry naming no record, with the best of their confidences."""
    shown = [match_json(m, private=private) for m in result.matches if disclose_all or m.verdict == "matched"]
    hidden = [m.confidence for m in result.matches if not disclose_all and m.verdict != "matched"]
    return shown + ([withheld_json(max(hidden))] if hidden else [])


def verification_json(
    result: VerificationResult, *, private: bool, elapsed_ms: float, disclose_all: bool
) -> dict[str, Any]:
    return {
        "verdict": result.verdict,
        "c2pa": manifest_json(result.manifest),
        "deleted": tombstone_json(result.deleted) if result.deleted else None,
        "matches": matches_json(result, private=private, disclose_all=disclose_all),
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


def _idempotency_key(key: ApiKey) -> IdempotencyKey | None:
    header = request.headers.get("Idempotency-Key")
    if header is None:
        return None
    try:
        return IdempotencyKey.from_header(f"apikey:{key.id}", header)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


@api.post("/generations")
def create_generation() -> Response:
    key = require_scope("sign")
    idempotency = _idempotency_key(key)
    metadata = _metadata()
    upload = _upload()
    data = upload.read()
    registry = services().require_registry()
    with services().compute:
        registration = registry.register(
            request_db(), data, metadata, filename=upload.filename or "image", idempotency=idempotency
        )
    if not registration.replayed:
        services().metrics.registrations.inc()
    record = registration.record
    response = Response(registration.signed, status=201, mimetype=record.mime_type)
    if registration.replayed:
        response.headers["Idempotent-Replayed"] = "true"
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


@api.delete("/generations/<generation_id>")
def delete_generation_by_id(generation_id: str) -> Response:
    """Deletes the record, its preview, manifest store and fingerprints; answers the tombstone."""
    require_scope("admin")
    tombstone = delete_generation(request_db(), generation_id)
    # This process drops the record at once; the others when they next catch up (before any search).
    services().index.catch_up(FingerprintStore(request_db()))
    return jsonify(tombstone_json(tombstone))


@api.get("/generations/<generation_id>/thumbnail")
def get_thumbnail(generation_id: str) -> Response:
    """The record's preview, for a preview link from a verification answer or a key with scope 'read'.

    Who may see it is settled before whether it exists, so that the answers tell a caller
    without either nothing about which generation ids exist.
    """
    expires, signature = request.args.get("expires"), request.args.get("sig")
    if expires is None and signature is None:
        require_scope("read")
        cache = "private, no-cache"
    else:
        links = services().preview_links
        refusal = (
            links.refusal(generation_id, expires or "", signature or "")
            if links
            else "this server cannot check preview links; use an API key with scope 'read'"
        )
        if refusal:
            raise Forbidden(refusal)
        cache = f"private, max-age={max(0, int(expires or 0) - int(time.time()))}"
    response = Response(_record_or_404(generation_id).thumbnail, mimetype="image/jpeg")
    response.headers["Cache-Control"] = cache
    return response


def _verify(data: bytes, key: ApiKey | None) -> dict[str, Any]:
    started = time.perf_counter()
    private = key is not None and "read" in key.scopes
    with services().compute:
        result = services().verifier.verify(request_db(), data)
    services().metrics.verified(result.verdict, result.timings_ms)
    return verification_json(
        result,
        private=private,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        disclose_all=private or services().settings.disclosure == "all",
    )


@api.post("/verify")
def verify() -> Response:
    key = _api_key()
    if key is None and services().settings.disclosure == "none":
        raise Unauthorized("this service verifies images only for callers with an API key")
    limit_verification(key)
    return jsonify(_verify(_upload().read(), key))


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
            results.append({"file": upload.filename, **_verify(upload.read(), key)})
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
