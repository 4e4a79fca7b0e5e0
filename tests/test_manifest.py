"""Manifests on their own: what we sign into an image, and how a reader judges what it finds."""

from __future__ import annotations

import pytest

from index.fingerprints import pdq
from provenance.config import Settings
from provenance.manifest import SOFT_BINDING_ALG, ManifestReader, build_manifest, manifest_label
from provenance.signing import ManifestSigner
from tests import transforms
from tests.conftest import fixture_bytes

# Manifests do not touch the store: one engine is enough.
ONE_ENGINE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
GENERATION = "0b7e3c9a-5d2f-4f21-9a53-0c1d2e3f4a5b"


def manifest(image: bytes) -> dict:
    return build_manifest(
        generation_id=GENERATION,
        model="diffusion-xl",
        generator_name="provenance-test",
        title="coffee.jpg",
        pdq_hash=pdq(transforms.decode(image)).bits,
        signed_at="2026-12-02T00:00:00.000+00:00",
    )


@pytest.fixture
def reader(settings: Settings) -> ManifestReader:
    return ManifestReader(settings.trust_anchors.read_text(), lambda serial: None)


def test_the_manifest_names_its_generation_and_binds_the_pdq_hash() -> None:
    image = fixture_bytes("coffee.jpg")
    built = manifest(image)
    assert built["label"] == manifest_label(GENERATION) == f"urn:c2pa:{GENERATION}"
    by_label = {a["label"]: a["data"] for a in built["assertions"]}
    assert by_label["c2pa.actions.v2"]["actions"][0]["action"] == "c2pa.created"
    binding = by_label["c2pa.soft-binding"]
    assert binding["alg"] == SOFT_BINDING_ALG
    assert bytes(binding["blocks"][0]["value"]) == pdq(transforms.decode(image)).bits


@ONE_ENGINE
def test_a_signed_image_reads_back_as_trusted_with_its_generation(
    settings: Settings, reader: ManifestReader
) -> None:
    image = fixture_bytes("coffee.jpg")
    signed = ManifestSigner(settings).sign(manifest(image), image, "image/jpeg")
    report = reader.read(signed.data, "image/jpeg")
    assert report.present and report.state == "Trusted"
    assert report.claimed_generation_id == GENERATION and report.label == manifest_label(GENERATION)


@ONE_ENGINE
def test_an_image_without_a_manifest_or_with_a_broken_one(settings: Settings, reader: ManifestReader) -> None:
    image = fixture_bytes("coffee.jpg")
    assert not reader.read(image, "image/jpeg").present
    signed = ManifestSigner(settings).sign(manifest(image), image, "image/jpeg")
    broken = reader.read(transforms.break_manifest(signed.data), "image/jpeg")
    assert broken.state != "Trusted" and broken.generation_id is None
