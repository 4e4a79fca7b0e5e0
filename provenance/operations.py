"""What operators see: a request id and a JSON log line per request, /metrics, /openapi.json."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from flask import Blueprint, Response, g, request

from provenance import logs
from provenance.metrics import CONTENT_TYPE
from provenance.records import RecordStore
from provenance.services import request_db, services

operations = Blueprint("operations", __name__)
access_log = logging.getLogger("provenance.access")
OPENAPI_DOCUMENT = Path(__file__).parent / "openapi.json"
REQUEST_ID = "X-Request-Id"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@operations.before_app_request
def _start() -> None:
    g.started = time.perf_counter()
    g.request_id = logs.request_id_for(request.headers.get(REQUEST_ID))
    g.request_id_token = logs.request_id.set(g.request_id)


@operations.after_app_request
def _finish(response: Response) -> Response:
    seconds = time.perf_counter() - g.started
    response.headers[REQUEST_ID] = g.request_id
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    found = services()
    # Any upper-case token is a method to gunicorn: each new one would be a new series for good.
    method = request.method if request.method in _METHODS else "other"
    found.metrics.answered(route, method, response.status_code, seconds)
    found.metrics.index_state(found.index.records, found.index.last_record_id)
    access_log.info(
        "%s %s %d",
        request.method,
        request.path,
        response.status_code,
        extra={
            "request_id": g.request_id,
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 2),
        },
    )
    return response


@operations.teardown_app_request
def _forget(_: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        logs.request_id.reset(token)


@operations.get("/metrics")
def metrics() -> Response:
    found = services()
    found.metrics.index_state(found.index.records, found.index.last_record_id)
    body = found.metrics.exposition(RecordStore(request_db()).last_id())
    return Response(body, mimetype=None, content_type=CONTENT_TYPE)


@operations.get("/openapi.json")
def openapi_document() -> Response:
    response = Response(OPENAPI_DOCUMENT.read_bytes(), mimetype="application/json")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
