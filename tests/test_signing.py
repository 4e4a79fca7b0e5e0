"""Signed images validate as Trusted with our root, in every format, through both signer kinds."""

from __future__ import annotations

import dataclasses
import io

import c2pa
import pytest
from flask.testing import FlaskClient
from PIL import Image

from provenance.app import create_app
from provenance.config import Settings
from provenance.manifest import GENERATION_ASSERTION, SOFT_BINDING_ALG, TRAINED_ALGORITHMIC_MEDIA
from tests.conftest import api_key, as_format, fixture_bytes, register


def read_back(data: bytes, settings: Settings) -> tuple[str, dict]:
    context = c2pa.Context.from_dict(
        {
            "trust": {"trust_anchors": settings.trust_anchors.read_text()},
            "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
        }
    )
    with c2pa.Reader(None, io.BytesIO(data), context=context) as reader:
        return reader.get_validation_state(), reader.get_active_manifest()


def pixels(data: bytes) -> bytes:
    return Image.open(io.BytesIO(data)).convert("RGBA").tobytes()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_every_format_is_trusted_with_pixels_unchanged(
    fmt: str, client: FlaskClient, signing_key: str, settings: Settings
) -> None:
    original = as_format(fixture_bytes("chelsea.jpg"), fmt)
    signed = register(client, signing_key, original, model="diffusion-xl")

    assert Image.open(io.BytesIO(signed.data)).format == fmt
    assert pixels(signed.data) == pixels(original)
    state, manifest = read_back(signed.data, settings)
    assert state == "Trusted"
    assert manifest["label"] == f"urn:c2pa:{signed.generation_id}"
    assert "thumbnail" not in manifest
    assert manifest["claim_generator_info"][0]["name"] == "provenance-service"
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    created = assertions["c2pa.actions.v2"]["actions"][0]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert created["softwareAgent"]["name"] == "diffusion-xl"
    assert assertions[GENERATION_ASSERTION]["generation_id"] == signed.generation_id
    assert assertions["c2pa.soft-binding"]["alg"] == SOFT_BINDING_ALG


def test_callback_signer_interface_signs_trusted(settings: Settings) -> None:
    """The KMS/HSM path: a RawSigner factory from settings, here the in-process implementation."""
    callback_settings = dataclasses.replace(settings, signer_factory="provenance.signing:key_file_signer")
    client = create_app(callback_settings).test_client()
    key = api_key(callback_settings, "sign")
    signed = register(client, key, fixture_bytes("rocket.jpg"))
    state, manifest = read_back(signed.data, callback_settings)
    assert state == "Trusted"
    assert manifest["signature_info"]["common_name"] == "Provenance Dev Signer"


def test_missing_keys_disable_signing_with_a_clear_error(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path / "nokeys")
    client = create_app(settings).test_client()
    key = api_key(settings, "sign")
    response = client.post(
        "/v1/generations",
        data={"image": (io.BytesIO(fixture_bytes("rocket.jpg")), "r.jpg"), "metadata": '{"model": "m"}'},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 503
    assert "keys init" in response.get_json()["detail"]
