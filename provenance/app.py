"""The Flask application: per-process services, per-request database connections, error rendering."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from index import FingerprintIndex, FingerprintStore, IndexNotReady
from provenance import db
from provenance.config import Settings
from provenance.engines import Database
from provenance.errors import (
    PROBLEM_BASE,
    BadRequest,
    PayloadTooLarge,
    ProvenanceError,
    SigningUnavailable,
    UnsupportedMediaType,
    UriTooLong,
)
from provenance.manifest import ManifestReader
from provenance.metrics import Metrics
from provenance.previews import PreviewLinks, ensure_secret
from provenance.ratelimit import RateLimiter
from provenance.registry import Registry
from provenance.signers import REFRESH_SECONDS, Signer, SignerCache, SignerStore
from provenance.signing import ManifestSigner
from provenance.verify import Verifier

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


def index_file(settings: Settings) -> Path:
    return settings.index_directory / "fingerprints.npz"


def load_index(settings: Settings, connection: Database) -> FingerprintIndex:
    """The saved index caught up with the store, or one rebuilt from the store."""
    try:
        index = FingerprintIndex.load(index_file(settings))
    except IndexNotReady as exc:
        logger.info("rebuilding the index from the store: %s", exc)
        index = FingerprintIndex()
    index.catch_up(FingerprintStore(connection))
    return index


@dataclass
class Services:
    """Everything a worker process loads once. c2pa objects are created here, after fork."""

    settings: Settings
    index: FingerprintIndex
    verifier: Verifier
    signer_error: str | None
    registry: Registry | None
    limiter: RateLimiter
    # Held while a request decodes, signs or searches; waiting on a client never holds it.
    compute: threading.BoundedSemaphore
    metrics: Metrics
    preview_links: PreviewLinks | None = None  # None: the secret is unusable; previews need a read key

    def require_registry(self) -> Registry:
        if self.registry is None:
            raise SigningUnavailable(self.signer_error or "signing is not configured")
        return self.registry


def _trust_anchors(settings: Settings) -> str:
    try:
        return settings.trust_anchors.read_text()
    except OSError:
        logger.warning("no trust anchors at %s: no manifest will verify as Trusted", settings.trust_anchors)
        return ""


def _preview_links(settings: Settings) -> PreviewLinks | None:
    # Data directories from before preview links have keys but no secret: it is created here, at
    # start, and a secret that cannot be read or made costs the links, not the service.
    try:
        return PreviewLinks(ensure_secret(settings.preview_key), settings.preview_link_seconds)
    except (OSError, ValueError) as exc:
        logger.error("no preview links (previews only with a 'read' key): %s", exc)
        return None


def signer_lookup(settings: Settings, max_age: float = REFRESH_SECONDS) -> Callable[[str], Signer | None]:
    """Finds our certificates in the store's signers record, kept ``max_age`` seconds per process."""

    def load() -> list[Signer]:
        with contextlib.closing(db.connect(settings.database)) as connection:
            return SignerStore(connection).all()

    return SignerCache(load, max_age).find


def build_services(settings: Settings) -> Services:
    def index_new_records(connection: Database) -> None:
        index.catch_up(FingerprintStore(connection))

    registry: Registry | None = None
    signer_error = None
    with contextlib.closing(db.open_database(settings.database)) as connection:
        index = load_index(settings, connection)
        try:
            registry = Registry(settings, ManifestSigner(settings), after_commit=index_new_records)
            registry.signer_on_record(connection)  # on record before its first signature
        except SigningUnavailable as exc:
            registry, signer_error = None, exc.detail
            logger.warning("signing disabled: %s", exc.detail)
    reader = ManifestReader(_trust_anchors(settings), signer_lookup(settings))
    verifier = Verifier(settings, index, reader)
    return Services(
        settings,
        index,
        verifier,
        signer_error,
        registry,
        RateLimiter(settings.rate_limits),
        threading.BoundedSemaphore(max(1, settings.compute_slots)),
        Metrics(settings.metrics_dir),
        preview_links=_preview_links(settings),
    )


def services() -> Services:
    found: Services = current_app.extensions["provenance"]
    return found


def request_db() -> Database:
    """This request's connection, opened on first use and closed at teardown."""
    if "db" not in g:
        g.db = db.connect(services().settings.database)
    connection: Database = g.db
    return connection


def problem(status: int, title: str, detail: str, type_uri: str = "about:blank") -> Response:
    body = {"type": type_uri, "title": title, "status": status, "detail": detail, "instance": request.path}
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    return response


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    if settings.proxy_hops:
        # The client's address, which verification limits go by, is the one the nearest of our
        # proxies saw: anything further left in X-Forwarded-For is the client's own claim.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + _MULTIPART_ALLOWANCE
    app.extensions["provenance"] = build_services(settings)

    from provenance.api import api, health
    from provenance.operations import operations
    from provenance.sbr import sbr
    from provenance.web import web

    app.register_blueprint(operations)
    app.register_blueprint(api)
    app.register_blueprint(health)
    app.register_blueprint(web)
    app.register_blueprint(sbr)

    @app.teardown_appcontext
    def close_db(_: BaseException | None) -> None:
        connection = g.pop("db", None)
        if connection is not None:
            connection.close()

    @app.errorhandler(ProvenanceError)
    def provenance_error(exc: ProvenanceError) -> Response:
        response = problem(exc.status, exc.title, exc.detail, exc.type_uri)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        ours = _WERKZEUG_EQUIVALENTS.get(status)
        if ours is None:
            return problem(status, exc.name, exc.description or exc.name)
        return problem(status, ours.title, exc.description or exc.name, PROBLEM_BASE + ours.slug)

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
