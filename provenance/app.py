"""The Flask application factory: blueprints, per-request connections closed, one error renderer."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from index import FingerprintIndex, IndexNotReady, SmoothRecords
from provenance.api import api, health
from provenance.config import Settings
from provenance.errors import (
    PROBLEM_BASE,
    BadRequest,
    IndexUnavailable,
    PayloadTooLarge,
    ProvenanceError,
    UnsupportedMediaType,
    UriTooLong,
)
from provenance.operations import operations
from provenance.sbr import sbr
from provenance.services import build_services, release_request_db
from provenance.web import web

logger = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
_MULTIPART_ALLOWANCE = 1024 * 1024  # room for the metadata part and multipart framing
# werkzeug's own errors that mean what one of ours means answer with our problem type: a body over
# MAX_CONTENT_LENGTH, or a form field over MAX_FORM_MEMORY_SIZE, is payload-too-large. Routing
# errors (404, 405) keep about:blank, as the README says.
_WERKZEUG_EQUIVALENTS: dict[int, type[ProvenanceError]] = {
    error.status: error
    for error in (BadRequest, PayloadTooLarge, UriTooLong, UnsupportedMediaType, ProvenanceError)
}


def problem(status: int, title: str, detail: str, type_uri: str = "about:blank") -> Response:
    body = {"type": type_uri, "title": title, "status": status, "detail": detail, "instance": request.path}
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    return response


def create_app(
    settings: Settings | None = None,
    index: FingerprintIndex | None = None,
    smooth: SmoothRecords | None = None,
) -> Flask:
    """The application; over ``index`` and ``smooth`` (caught up with the store) where given,
    else over the saved index loaded here and the smooth records read here."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    if settings.proxy_hops:
        # The client's address, which verification limits go by, is the one the nearest of our
        # proxies saw: anything further left in X-Forwarded-For is the client's own claim.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + _MULTIPART_ALLOWANCE
    app.extensions["provenance"] = build_services(settings, index=index, smooth=smooth)
    app.register_blueprint(operations)
    app.register_blueprint(api)
    app.register_blueprint(health)
    app.register_blueprint(web)
    app.register_blueprint(sbr)

    @app.teardown_appcontext
    def close_db(_: BaseException | None) -> None:
        release_request_db()

    @app.errorhandler(ProvenanceError)
    def provenance_error(exc: ProvenanceError) -> Response:
        response = problem(exc.status, exc.title, exc.detail, exc.type_uri)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(IndexNotReady)
    def index_not_ready(exc: IndexNotReady) -> Response:
        return provenance_error(IndexUnavailable(str(exc)))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        ours = _WERKZEUG_EQUIVALENTS.get(status)
        if ours is None:
            response = problem(status, exc.name, exc.description or exc.name)
        else:
            response = problem(status, ours.title, exc.description or exc.name, PROBLEM_BASE + ours.slug)
        # The exception's own headers (Allow on a 405, as RFC 9110 requires), not its body's type.
        response.headers.update((k, v) for k, v in exc.get_headers() if k.lower() != "content-type")
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return problem(
            500,
            ProvenanceError.title,
            "an unexpected error occurred; it has been logged",
            PROBLEM_BASE + ProvenanceError.slug,
        )

    return app
