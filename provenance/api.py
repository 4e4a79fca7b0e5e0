"""HTTP API: Blueprint "api" at /v1 and the health probes; request parsing and JSON rendering."""

from __future__ import annotations

import time
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for
from werkzeug.datastructures import FileStorage

from index import FingerprintStore, IndexNotReady
from provenance.access import api_key, limit_verification, require_scope
from provenance.apikeys import ApiKey
from provenance.deletion import delete_generation
from provenance.errors import BadRequest, Forbidden, InvalidMetadata, NotFound, ProvenanceError, Unauthorized
from provenance.idempotency import IdempotencyKey
from provenance.records import GenerationRecord, RecordStore
from provenance.registry import MAX_METADATA_BYTES, GenerationRequest, parse_metadata
from provenance.rendering import record_json, tombstone_json, verification_json
from provenance.services import index_new_records, release_request_db, request_db, services

api = Blueprint("api", __name__, url_prefix="/v1")
health = Blueprint("health", __name__)
MAX_BATCH = 32


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


def _issued_id(generation_id: str) -> str:
    """Our generation ids are UUIDs: anything else names no generation. (A NUL in one was a 500
    on PostgreSQL, whose text cannot hold it.)"""
    try:
        uuid.UUID(generation_id)
    except ValueError:
        raise NotFound(f"no generation with id {generation_id!r}") from None
    return generation_id


def _record_or_404(generation_id: str) -> GenerationRecord:
    record = RecordStore(request_db()).by_generation_id(_issued_id(generation_id))
    if record is None:
        raise NotFound(f"no generation with id {generation_id}")
    return record


@api.get("/generations/<generation_id>")
def get_generation(generation_id: str) -> Response:
    require_scope("read")
    return jsonify(record_json(_record_or_404(generation_id), private=True, preview_url=thumbnail_url))


@api.delete("/generations/<generation_id>")
def delete_generation_by_id(generation_id: str) -> Response:
    """Deletes the record, its preview, manifest store and fingerprints; answers the tombstone."""
    require_scope("admin")
    tombstone = delete_generation(request_db(), _issued_id(generation_id))
    # This process drops the record at once; the others when they next catch up (before any search).
    index_new_records(services().index, request_db())
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
        preview_url=thumbnail_url,
    )


@api.post("/verify")
def verify() -> Response:
    key = api_key()
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
            release_request_db()  # the next image waits for the compute slot
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
    try:
        found.index.catch_up(FingerprintStore(request_db()))
        ready, status = found.index.last_record_id >= store_last, "catching-up"
    except IndexNotReady as exc:  # Milvus unreachable, or loading its collections
        ready, status = False, f"index not ready: {exc}"
    body = {
        "status": "ready" if ready else status,
        "records": store_last,
        "indexed_through": found.index.last_record_id,
        "signing": found.registry is not None,
    }
    response = jsonify(body)
    response.status_code = 200 if ready else 503
    return response
