"""What a process loads once (Services) and how a request reaches it and its database connection."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flask import current_app, g

from index import (
    Calibration,
    FingerprintIndex,
    FingerprintStore,
    IndexNotReady,
    MilvusIndex,
    SearchIndex,
    SmoothRecords,
)
from provenance import db
from provenance.config import Settings
from provenance.engines import Database
from provenance.errors import SigningUnavailable
from provenance.manifest import ManifestReader
from provenance.metrics import Metrics
from provenance.previews import PreviewLinks, ensure_secret
from provenance.ratelimit import RateLimiter
from provenance.registry import Registry
from provenance.signers import REFRESH_SECONDS, Signer, SignerCache, SignerStore
from provenance.signing import ManifestSigner
from provenance.verify import Verifier, catch_up_smooth_records

logger = logging.getLogger(__name__)


def index_file(settings: Settings) -> Path:
    return settings.index_directory / "fingerprints.npz"


def load_index(settings: Settings, connection: Database) -> SearchIndex:
    """With Milvus, its shared collections, caught up when Milvus can serve (/readyz says when it
    cannot); otherwise the saved FAISS index caught up with the store, or one rebuilt from it."""
    if settings.milvus_uri:
        shared = MilvusIndex(settings.milvus_uri, settings.milvus_collection)
        try:
            shared.catch_up(FingerprintStore(connection))
        except IndexNotReady as exc:
            logger.warning("the index is not ready yet: %s", exc)
        return shared
    try:
        index = FingerprintIndex.load(index_file(settings))
    except IndexNotReady as exc:
        logger.info("rebuilding the index from the store: %s", exc)
        index = FingerprintIndex()
    index.catch_up(FingerprintStore(connection))
    return index


def save_index(settings: Settings, index: SearchIndex) -> None:
    """Save a FAISS index under index_dir; Milvus keeps its own."""
    if isinstance(index, FingerprintIndex):
        index.save(index_file(settings))


@dataclass
class Services:
    """Everything a worker process loads once. c2pa objects are created here, after fork."""

    settings: Settings
    index: SearchIndex
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


def preview_links(settings: Settings) -> PreviewLinks | None:
    """This server's preview links; None where its secret is unusable."""
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


def build_registry(
    settings: Settings,
    connection: Database,
    after_commit: Callable[[Database], None] | None = None,
) -> Registry:
    """The write path, its signer on record before its first signature.

    Raises:
        SigningUnavailable: no usable signing key or certificate.
    """
    registry = Registry(settings, ManifestSigner(settings), after_commit=after_commit)
    registry.signer_on_record(connection)
    return registry


def build_verifier(
    settings: Settings,
    index: SearchIndex,
    calibration: Calibration | None = None,
    smooth: SmoothRecords | None = None,
) -> Verifier:
    """The read path over ``index``, trusting our anchors and our signers on record."""
    reader = ManifestReader(_trust_anchors(settings), signer_lookup(settings))
    return Verifier(settings, index, reader, calibration, smooth)


def index_new_records(index: SearchIndex, connection: Database) -> None:
    """Feed the index what was just committed. An index that cannot take it now (Milvus down)
    takes it at its next catch-up: the store holds it, and the commit stands."""
    try:
        index.catch_up(FingerprintStore(connection))
    except IndexNotReady as exc:
        logger.warning("the index will catch up later: %s", exc)


def build_services(
    settings: Settings,
    calibration: Calibration | None = None,
    index: FingerprintIndex | None = None,
    smooth: SmoothRecords | None = None,
) -> Services:
    """A process's services, over ``index`` and ``smooth`` where given (a server's workers share
    what their master loaded), else over the index load_index opens here and the smooth records
    read here; all caught up with the store."""

    def after_commit(connection: Database) -> None:
        index_new_records(searched, connection)

    registry: Registry | None = None
    signer_error = None
    with contextlib.closing(db.open_database(settings.database)) as connection:
        searched: SearchIndex
        if index is None:
            searched = load_index(settings, connection)
        else:
            searched = index
            searched.catch_up(FingerprintStore(connection))
        if smooth is None:
            smooth = SmoothRecords(calibration or Calibration())
        catch_up_smooth_records(smooth, connection)
        try:
            registry = build_registry(settings, connection, after_commit=after_commit)
        except SigningUnavailable as exc:
            registry, signer_error = None, exc.detail
            logger.warning("signing disabled: %s", exc.detail)
    return Services(
        settings,
        searched,
        build_verifier(settings, searched, calibration, smooth),
        signer_error,
        registry,
        RateLimiter(settings.rate_limits),
        threading.BoundedSemaphore(max(1, settings.compute_slots)),
        Metrics(settings.metrics_dir),
        preview_links=preview_links(settings),
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


def release_request_db() -> None:
    """Give this request's connection back now (closed at teardown otherwise): a request that
    waits again, like a batch between its images, must not hold one of the store's pooled
    connections meanwhile."""
    connection = g.pop("db", None)
    if connection is not None:
        connection.close()
