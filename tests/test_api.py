"""HTTP behaviour of the write path: the happy path, auth, and every bad input as problem+json."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import zlib

import pytest
from flask.testing import FlaskClient
from PIL import Image
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from provenance import db
from provenance.app import create_app
from provenance.config import Settings
from tests import transforms
from tests.conftest import api_key, as_format, fixture_bytes

PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance"}


def stored_rows(settings: Settings) -> tuple[int, int]:
    with db.open_database(settings.database) as connection:
        records = connection.execute("SELECT count(*) FROM records").fetchone()[0]
        fingerprints = connection.execute("SELECT count(*) FROM fingerprints").fetchone()[0]
    return records, fingerprints


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.data[:300]
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert PROBLEM_FIELDS <= set(body)
    assert body["status"] == status
    return body


def post_generation(
    client: FlaskClient, key: str | None, image: bytes | None, metadata: str | None = '{"model": "m"}'
):
    data: dict = {}
    if image is not None:
        data["image"] = (io.BytesIO(image), "upload.bin")
    if metadata is not None:
        data["metadata"] = metadata
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post("/v1/generations", data=data, headers=headers)


def test_registration_returns_the_signed_image_and_a_readable_record(
    client: FlaskClient, signing_key: str, settings: Settings, sample_image: bytes
) -> None:
    response = post_generation(
        client,
        signing_key,
        sample_image,
        json.dumps({"model": "diffusion-xl", "public": {"title": "A cup"}, "private": {"prompt": "coffee"}}),
    )
    assert response.status_code == 201
    assert response.mimetype == "image/jpeg"
    generation_id = response.headers["X-Generation-Id"]
    assert response.headers["Location"] == f"/v1/generations/{generation_id}"
    assert stored_rows(settings) == (1, 2)

    record = client.get(
        response.headers["Location"], headers={"Authorization": f"Bearer {signing_key}"}
    ).get_json()
    assert record["model"] == "diffusion-xl"
    assert record["public"] == {"title": "A cup"}
    assert record["private"] == {"prompt": "coffee"}
    assert (record["width"], record["height"]) == (600, 400)
    thumbnail = client.get(record["thumbnail_url"])
    assert thumbnail.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(thumbnail.data)).size == (512, 341)


def tiny_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, max_upload_bytes=40_000, max_pixels=200 * 200)


def big_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), "white").save(out, "PNG")
    return out.getvalue()


BAD_UPLOADS = {
    "not an image": (b"hello, this is text" * 10, 415),
    "truncated image": (fixture_bytes("coffee.jpg")[:5000], 422),
    "unsupported format": (as_format(fixture_bytes("coffee.jpg"), "GIF"), 415),
    "empty file": (b"", 422),
    # Not signed as it is: the signed file would keep the damage under its manifest's hash.
    "png with a broken text chunk": (
        transforms.break_png_crc(transforms.png_with_text(fixture_bytes("coffee.jpg")), b"tEXt"),
        422,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_images_are_refused_and_leave_nothing(
    case: str, client: FlaskClient, signing_key: str, settings: Settings
) -> None:
    data, status = BAD_UPLOADS[case]
    assert_problem(post_generation(client, signing_key, data), status)
    assert stored_rows(settings) == (0, 0)


def test_over_the_byte_limit_is_413(settings: Settings) -> None:
    small = tiny_settings(settings)
    client = create_app(small).test_client()
    body = assert_problem(post_generation(client, api_key(small, "sign"), fixture_bytes("hubble.jpg")), 413)
    assert "limit" in body["detail"]
    assert stored_rows(small) == (0, 0)


def test_decompression_bomb_is_refused_before_decoding(settings: Settings) -> None:
    small = tiny_settings(settings)
    client = create_app(small).test_client()
    bomb = big_png(2000)  # 4 megapixels of white compress to a few KB
    assert len(bomb) < small.max_upload_bytes
    body = assert_problem(post_generation(client, api_key(small, "sign"), bomb), 413)
    assert "pixels" in body["detail"]
    assert stored_rows(small) == (0, 0)


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        "not json",
        "[1, 2]",
        '{"public": {}}',
        '{"model": ""}',
        '{"model": "m", "public": "x"}',
        '{"model": "m", "extra": 1}',
        # Bounds every reader of the metadata can handle: the stack, int(), the page's JSON.parse.
        '{"model": "m", "public": {"a": ' + "[" * 1000 + "]" * 1000 + "}}",
        '{"model": "m", "public": {"a": ' + "[" * 40 + "]" * 40 + "}}",
        '{"model": "m", "public": {"n": ' + "9" * 5000 + "}}",
        '{"model": "m", "public": {"n": 9007199254740993}}',
        '{"model": "m", "public": {"n": NaN}}',
        '{"model": "m", "public": {"n": -Infinity}}',
        '{"model": "m", "public": {"n": 1e999}}',
        '{"model": "m", "public": {"s": "\\ud800"}}',
    ],
)
def test_missing_or_invalid_metadata_is_400(
    metadata, client: FlaskClient, signing_key: str, settings: Settings
) -> None:
    body = assert_problem(post_generation(client, signing_key, fixture_bytes("coffee.jpg"), metadata), 400)
    assert body["type"] == "/problems/invalid-metadata"
    assert stored_rows(settings) == (0, 0)


def test_missing_image_part_is_400(client: FlaskClient, signing_key: str) -> None:
    assert_problem(post_generation(client, signing_key, None), 400)


@pytest.mark.parametrize("header", [None, "Bearer pk_wrong", "Basic abc", "Bearer "])
def test_missing_or_wrong_api_key_is_401(header, client: FlaskClient, settings: Settings) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.post(
        "/v1/generations",
        data={"image": (io.BytesIO(fixture_bytes("coffee.jpg")), "a.jpg"), "metadata": '{"model": "m"}'},
        headers=headers,
    )
    assert_problem(response, 401)
    assert stored_rows(settings) == (0, 0)


def test_key_without_the_scope_is_403(client: FlaskClient, settings: Settings) -> None:
    reader = api_key(settings, "read")
    assert_problem(post_generation(client, reader, fixture_bytes("coffee.jpg")), 403)
    signer = api_key(settings, "sign")
    assert_problem(client.get("/v1/generations/x", headers={"Authorization": f"Bearer {signer}"}), 403)


def test_unknown_generation_and_route_are_404_problems(client: FlaskClient, signing_key: str) -> None:
    assert_problem(
        client.get("/v1/generations/nope", headers={"Authorization": f"Bearer {signing_key}"}), 404
    )
    assert_problem(client.get("/v1/nothing-here"), 404)
    assert_problem(client.get("/v1/verify"), 405)


def test_health_and_readiness(client: FlaskClient, signed_image) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ready"
    assert ready["indexed_through"] == ready["records"] == 1


def test_a_few_pixels_image_is_signed_and_verified_not_a_500(client: FlaskClient, signing_key: str) -> None:
    """Too small for local features is still an image: signed, and searched as featureless."""

    def tiny(colour: str) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 5), colour).save(buffer, "PNG")
        return buffer.getvalue()

    assert post_generation(client, signing_key, tiny("navy")).status_code == 201
    response = client.post("/v1/verify", data={"image": (io.BytesIO(tiny("orange")), "tiny.png")})
    assert response.status_code == 200
    body = response.get_json()
    assert body["query"]["keypoints"] == 0 and body["query"]["low_detail"]


def png_declaring(width: int, height: int) -> bytes:
    """A PNG header claiming ``width`` x ``height`` pixels, with no pixels behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_every_error_the_service_produces_has_its_documented_problem_type(
    settings: Settings, signing_key: str
) -> None:
    """The README's error table, for the errors werkzeug, Pillow and a bug raise rather than our code."""
    app = create_app(dataclasses.replace(settings, max_upload_bytes=40_000))

    @app.get("/v1/fail")
    def fail() -> None:
        raise RuntimeError("a bug")

    client = app.test_client()
    # Encoded in memory: the test client spools a large body to a file it leaves open.
    boundary, body = encode_multipart({"image": FileStorage(io.BytesIO(b"\0" * 1_200_000), "big.jpg")})
    over_the_body_limit = client.post(
        "/v1/verify", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    boundary, body = encode_multipart(
        {"metadata": "x" * 600_000, "image": FileStorage(io.BytesIO(fixture_bytes("coffee.jpg")), "a.jpg")}
    )
    form_field_too_large = client.post(
        "/v1/generations",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        headers={"Authorization": f"Bearer {signing_key}"},
    )
    # Above twice Pillow's MAX_IMAGE_PIXELS, Pillow refuses to open it before our own limit is asked.
    declared_too_large = client.post(
        "/v1/verify", data={"image": (io.BytesIO(png_declaring(20_000, 10_000)), "bomb.png")}
    )
    cases = [
        (over_the_body_limit, 413, "payload-too-large"),
        (form_field_too_large, 413, "payload-too-large"),
        (declared_too_large, 413, "image-too-large"),
        (client.get("/v1/fail"), 500, "internal-error"),
    ]
    for response, status, slug in cases:
        body = assert_problem(response, status)
        assert body["type"] == f"/problems/{slug}", body
        assert "Traceback" not in body["detail"]
