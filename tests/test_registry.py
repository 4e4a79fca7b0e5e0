"""The write path on its own: sign, record and fingerprint in one transaction, or nothing at all."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from index import FingerprintStore
from provenance import db
from provenance.config import Settings
from provenance.engines import Database
from provenance.errors import IdempotencyKeyReused, UnsupportedMediaType
from provenance.idempotency import IdempotencyKey
from provenance.manifest import ManifestReader
from provenance.records import RecordStore
from provenance.registry import GenerationRequest, Registry
from provenance.services import build_registry, signer_lookup
from tests.conftest import fixture_bytes

REQUEST = GenerationRequest(model="diffusion-xl", public={"prompt_id": 7}, private={"user": "u1"})


@pytest.fixture
def connection(settings: Settings) -> Iterator[Database]:
    with contextlib.closing(db.open_database(settings.database)) as opened:
        yield opened


@pytest.fixture
def committed() -> list[Database]:
    return []


@pytest.fixture
def registry(settings: Settings, connection: Database, committed: list[Database]) -> Registry:
    return build_registry(settings, connection, after_commit=committed.append)


def test_a_registration_is_signed_recorded_and_fingerprinted(
    settings: Settings,
    connection: Database,
    registry: Registry,
    committed: list[Database],
) -> None:
    registration = registry.register(connection, fixture_bytes("coffee.jpg"), REQUEST, "coffee.jpg")
    record = registration.record
    assert RecordStore(connection).by_generation_id(record.generation_id) == record
    assert (record.model, record.public, record.private) == ("diffusion-xl", {"prompt_id": 7}, {"user": "u1"})
    fingerprints = FingerprintStore(connection)
    assert fingerprints.pdq_quality(record.id) > 0 and fingerprints.local_features(record.id) is not None
    report = ManifestReader(settings.trust_anchors.read_text(), signer_lookup(settings)).read(
        registration.signed
    )
    assert report.state == "Trusted" and report.generation_id == record.generation_id
    assert committed == [connection]  # the indexes are told once the record is committed


def test_an_image_that_cannot_be_signed_leaves_nothing_behind(
    connection: Database, registry: Registry, committed: list[Database]
) -> None:
    with pytest.raises(UnsupportedMediaType):
        registry.register(connection, b"not an image", REQUEST)
    assert RecordStore(connection).count() == 0 and committed == []


def test_an_idempotency_key_answers_its_first_registration_again(
    connection: Database, registry: Registry
) -> None:
    key = IdempotencyKey.from_header("apikey:1", "retry-1")
    data = fixture_bytes("rocket.jpg")
    first = registry.register(connection, data, REQUEST, "rocket.jpg", key)
    again = registry.register(connection, data, REQUEST, "rocket.jpg", key)
    assert again.replayed and not first.replayed
    assert again.record.generation_id == first.record.generation_id and again.signed == first.signed
    assert RecordStore(connection).count() == 1
    with pytest.raises(IdempotencyKeyReused):
        registry.register(connection, fixture_bytes("coffee.jpg"), REQUEST, "rocket.jpg", key)
