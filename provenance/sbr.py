"""C2PA Soft Binding Resolution API v1.0.0: Blueprint "sbr" at /sbr/v1, request parsing and rendering.

Validators and browser extensions that meet an image without credentials ask this API which
manifests its fingerprint or its pixels resolve to, then fetch one. Every operation but
supportedAlgorithms needs the spec's OAuth2 scope ``fetch:manifests``, which is our API-key scope
of the same name, sent as ``Authorization: Bearer <api key>``.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request

from index import PdqHash
from provenance.access import limit_verification, require_scope
from provenance.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, UriTooLong
from provenance.resolution import (
    FINGERPRINT_ALGORITHMS,
    ManifestMatch,
    check_algorithm,
    decode_binding,
    manifest_store,
    matches_by_binding,
    matches_by_content,
    merge,
)
from provenance.services import request_db, services

sbr = Blueprint("sbr", __name__, url_prefix="/sbr/v1")
SCOPE = "fetch:manifests"
C2PA_MANIFEST = "application/c2pa"
# Well below the request line gunicorn accepts (8190 bytes, set in server.py), so an over-long
# query gets our 414 and not gunicorn's plain-text 400.
MAX_QUERY_BYTES = 2048
MAX_QUERY_BODY_BYTES = 64 * 1024
DEFAULT_RESULTS = 10
MAX_RESULTS = 100


@sbr.before_request
def _limit_query() -> None:
    if len(request.query_string) > MAX_QUERY_BYTES:
        raise UriTooLong(
            f"the query string has {len(request.query_string)} bytes; the limit is {MAX_QUERY_BYTES}"
            " (send a large binding value with POST /matches/byBinding)"
        )


@sbr.after_request
def _bearer_challenge(response: Response) -> Response:
    # RFC 6750 section 3: tell OAuth2 clients which scheme and scope the operation wants.
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = f'Bearer scope="{SCOPE}"'
    elif response.status_code == 403:
        response.headers["WWW-Authenticate"] = f'Bearer error="insufficient_scope", scope="{SCOPE}"'
    return response


def _max_results() -> int:
    raw = request.args.get("maxResults")
    if raw is None:
        return DEFAULT_RESULTS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise BadRequest(f"maxResults must be an integer of at least 1, got {raw[:40]!r}")
    return min(value, MAX_RESULTS)


def _check_boolean(name: str) -> None:
    raw = request.args.get(name, "false")
    if raw not in ("true", "false"):
        raise BadRequest(f"{name} must be true or false, got {raw[:40]!r}")


def _required_arg(name: str) -> str:
    value = request.args.get(name)
    if not value:
        raise BadRequest(f"the query parameter {name!r} is required")
    return value


def _body(limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body has {request.content_length} bytes; the limit is {limit}")
    request.max_content_length = limit  # a chunked body without a length is cut off too
    return request.get_data(cache=False)


def _result(matches: tuple[ManifestMatch, ...]) -> Response:
    # No "endpoint": every manifest we name is served by this API's /manifests.
    return jsonify(
        {"matches": [{"manifestId": m.manifest_id, "similarityScore": m.similarity_score} for m in matches]}
    )


def _binding_matches(query: PdqHash, max_results: int) -> tuple[ManifestMatch, ...]:
    found = services()
    return matches_by_binding(
        request_db(), found.index, found.verifier.calibration.thresholds, query, max_results
    )


@sbr.get("/services/supportedAlgorithms")
def supported_algorithms() -> Response:
    """Public, as in the spec: which algorithm ids the matches endpoints accept."""
    return jsonify({"watermarks": [], "fingerprints": [{"alg": alg} for alg in FINGERPRINT_ALGORITHMS]})


@sbr.get("/matches/byBinding")
def query_by_binding() -> Response:
    # Each lookup counts as a verification: a hash computed after each edit would otherwise be an
    # unlimited oracle for editing a picture until it no longer matches.
    limit_verification(require_scope(SCOPE))
    query = decode_binding(_required_arg("alg"), _required_arg("value"))
    return _result(_binding_matches(query, _max_results()))


@sbr.post("/matches/byBinding")
def query_by_large_binding() -> Response:
    limit_verification(require_scope(SCOPE))
    if request.mimetype != "application/json":
        raise UnsupportedMediaType('send {"alg": ..., "value": ...} as application/json')
    try:
        query: Any = json.loads(_body(MAX_QUERY_BODY_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from exc
    if not isinstance(query, dict) or not all(isinstance(query.get(k), str) for k in ("alg", "value")):
        raise BadRequest('the body must be a JSON object with string fields "alg" and "value"')
    return _result(_binding_matches(decode_binding(query["alg"], query["value"]), _max_results()))


@sbr.post("/matches/byContent")
def query_by_content() -> Response:
    """The raw image as the body; the same search as /v1/verify, plus an optional binding hint."""
    limit_verification(require_scope(SCOPE))
    if request.mimetype.partition("/")[0] != "image":
        given = request.mimetype or "no content type"
        raise UnsupportedMediaType(f"send the image itself as the body with its image/* type, not {given}")
    alg = request.args.get("alg")
    if alg is not None:
        check_algorithm(alg)
    hint_alg, hint_value = request.args.get("hintAlg"), request.args.get("hintValue")
    if (hint_alg is None) != (hint_value is None):
        raise BadRequest("hintAlg and hintValue go together")
    # A hint in an algorithm we do not know cannot help and is not an error: it is only a hint.
    hint = None
    if hint_alg in FINGERPRINT_ALGORITHMS and hint_value is not None:
        hint = decode_binding(hint_alg, hint_value)
    max_results = _max_results()
    data = _body(services().settings.max_upload_bytes)
    with services().compute:
        result = services().verifier.verify(request_db(), data)
    services().metrics.verified(result.verdict, result.timings_ms)
    found = matches_by_content(request_db(), result, max_results)
    if hint is not None:
        found = merge(found, _binding_matches(hint, max_results), max_results=max_results)
    return _result(found)


@sbr.get("/manifests/<manifest_id>")
def get_manifest(manifest_id: str) -> Response:
    """The manifest store embedded in the signed image, as ``application/c2pa``.

    Our stores hold exactly one manifest, the active one (we sign without ingredients), so the
    store and the active manifest alone are the same bytes whatever returnActiveManifest says.
    """
    require_scope(SCOPE)
    _check_boolean("returnActiveManifest")  # for the spec's 400; both values answer the same bytes
    return Response(manifest_store(request_db(), manifest_id), mimetype=C2PA_MANIFEST)
