"""HTTP behaviour of the write path: the happy path, auth, and every bad input as problem+json."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import zlib

import pytest
from flask.testing import FlaskClient
from PIL import Image, ImageDraw
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from provenance import db
from provenance.app import create_app
from provenance.config import Settings
from tests import transforms
from tests.conftest import Signed, api_key, as_format, fixture_bytes, register

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
        '{"model": "a\\u0000b"}',  # PostgreSQL's text cannot hold a NUL: it was a 500 there
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


def post_with_key(client: FlaskClient, key: str, image: bytes, idempotency_key: str, model: str = "m"):
    return client.post(
        "/v1/generations",
        data={"image": (io.BytesIO(image), "gen.jpg"), "metadata": json.dumps({"model": model})},
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key},
    )


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_retry_with_the_idempotency_key_gets_the_first_answer_and_no_second_record(
    fmt: str, client: FlaskClient, signing_key: str, settings: Settings
) -> None:
    image = as_format(fixture_bytes("coffee.jpg"), fmt)
    first = post_with_key(client, signing_key, image, '"8e03978e-40d5-43e8-bc93-6894a57f9324"')
    retry = post_with_key(client, signing_key, image, '"8e03978e-40d5-43e8-bc93-6894a57f9324"')
    assert first.status_code == retry.status_code == 201
    assert retry.headers["X-Generation-Id"] == first.headers["X-Generation-Id"]
    assert retry.headers["Location"] == first.headers["Location"]
    assert retry.data == first.data
    assert retry.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert stored_rows(settings) == (1, 2)
    verified = client.post("/v1/verify", data={"image": (io.BytesIO(retry.data), "r")})
    assert verified.json["verdict"] == "authentic"


def test_an_idempotency_key_reused_for_another_request_is_422_and_writes_nothing(
    client: FlaskClient, signing_key: str, settings: Settings
) -> None:
    image = fixture_bytes("coffee.jpg")
    assert post_with_key(client, signing_key, image, "k-1").status_code == 201
    body = assert_problem(post_with_key(client, signing_key, fixture_bytes("rocket.jpg"), "k-1"), 422)
    assert body["type"] == "/problems/idempotency-key-reused"
    assert_problem(post_with_key(client, signing_key, image, "k-1", model="other"), 422)
    assert stored_rows(settings) == (1, 2)


def test_idempotency_keys_are_scoped_to_the_api_key(
    client: FlaskClient, signing_key: str, settings: Settings
) -> None:
    image = fixture_bytes("coffee.jpg")
    first = post_with_key(client, signing_key, image, "shared")
    other = post_with_key(client, api_key(settings, "sign"), image, "shared")
    assert other.status_code == 201 and "Idempotent-Replayed" not in other.headers
    assert other.headers["X-Generation-Id"] != first.headers["X-Generation-Id"]
    assert stored_rows(settings) == (2, 4)


@pytest.mark.parametrize("header", ["", '""', "x" * 256, "caf\u00e9", '"a\\"b"'])
def test_a_malformed_idempotency_key_is_400(
    header: str, client: FlaskClient, signing_key: str, settings: Settings
) -> None:
    body = assert_problem(post_with_key(client, signing_key, fixture_bytes("coffee.jpg"), header), 400)
    assert "Idempotency-Key" in body["detail"]
    assert stored_rows(settings) == (0, 0)


def test_an_expired_idempotency_key_starts_afresh(settings: Settings, signing_key: str) -> None:
    client = create_app(dataclasses.replace(settings, idempotency_hours=0)).test_client()
    image = fixture_bytes("coffee.jpg")
    first = post_with_key(client, signing_key, image, "k")
    again = post_with_key(client, signing_key, image, "k")
    assert again.headers["X-Generation-Id"] != first.headers["X-Generation-Id"]
    with db.open_database(settings.database) as connection:
        assert connection.execute("SELECT count(*) FROM idempotency_keys").fetchone()[0] == 1


def test_a_running_service_stops_signing_once_its_certificate_is_revoked(
    client: FlaskClient, signing_key: str, settings: Settings
) -> None:
    from datetime import UTC, datetime

    from provenance.signers import SignerStore

    assert post_generation(client, signing_key, fixture_bytes("coffee.jpg")).status_code == 201
    with db.open_database(settings.database) as connection:
        (signer,) = SignerStore(connection).all()
        SignerStore(connection).revoke(signer.serial, datetime.now(UTC))
    body = assert_problem(post_generation(client, signing_key, fixture_bytes("rocket.jpg")), 503)
    assert body["type"] == "/problems/signing-unavailable" and "revoked" in body["detail"]
    restarted = create_app(settings).test_client()
    assert_problem(post_generation(restarted, signing_key, fixture_bytes("rocket.jpg")), 503)
    assert restarted.get("/readyz").get_json()["signing"] is False
    assert stored_rows(settings) == (1, 2)


def grille_and_panel() -> tuple[bytes, bytes]:
    """A speaker grille to register, and a plain panel of its size that PDQ finds close to it but
    that does not agree with it: a possible match, never a match."""
    grille = Image.new("RGB", (800, 600), "white")
    draw = ImageDraw.Draw(grille)
    draw.rectangle((200, 100, 699, 499), fill="#303030")
    for y in range(104, 496, 20):
        for x in range(204, 696, 20):
            draw.ellipse((x, y, x + 8, y + 8), fill="#b0b0b0")
    panel = Image.new("RGB", (800, 600), "white")
    ImageDraw.Draw(panel).rectangle((200, 100, 699, 499), fill="#555555")
    return transforms.encode(grille, "PNG"), transforms.encode(panel, "PNG")


def verify_as(client: FlaskClient, data: bytes, key: str | None = None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post("/v1/verify", data={"image": (io.BytesIO(data), "suspect.png")}, headers=headers)


@pytest.fixture
def possible_match(client: FlaskClient, signing_key: str) -> tuple[Signed, bytes]:
    """A registered grille (and the coffee photo) and a suspect that is only a possible match."""
    register(client, signing_key, fixture_bytes("coffee.jpg"))
    grille, panel = grille_and_panel()
    return register(client, signing_key, grille, filename="grille.png"), panel


def test_without_scope_read_a_possible_match_names_no_record_and_shows_no_preview(
    client: FlaskClient, settings: Settings, possible_match: tuple[Signed, bytes]
) -> None:
    signed, panel = possible_match
    for key in (None, api_key(settings, "verify,sign")):
        response = verify_as(client, panel, key)
        body = response.get_json()
        assert body["verdict"] == "possible_match"
        (withheld,) = body["matches"]
        assert withheld == {
            "verdict": "possible_match",
            "withheld": True,
            "confidence": withheld["confidence"],
            "detail": "possibly a copy of an image we generated; ask us to review it",
        }
        assert 0 < withheld["confidence"] < 0.9
        assert signed.generation_id not in response.get_data(as_text=True)
        assert "thumbnail" not in response.get_data(as_text=True)


def test_scope_read_sees_a_possible_match_in_full(
    client: FlaskClient, signing_key: str, possible_match: tuple[Signed, bytes]
) -> None:
    signed, panel = possible_match
    (match,) = verify_as(client, panel, signing_key).get_json()["matches"]
    assert match["verdict"] == "possible_match" and match["withheld"] is False
    assert match["generation_id"] == signed.generation_id
    assert match["record"]["private"] == {"user": "u1"}
    assert client.get(match["record"]["thumbnail_url"]).status_code == 200


def test_an_anonymous_caller_sees_the_record_its_copy_matched_with_a_working_preview_link(
    client: FlaskClient, signed_image: Signed
) -> None:
    body = verify_as(client, transforms.strip(signed_image.data)).get_json()
    assert body["verdict"] == "matched"
    (match,) = body["matches"]
    assert match["withheld"] is False and match["generation_id"] == signed_image.generation_id
    assert match["record"]["public"] == {"prompt_id": 7} and "private" not in match["record"]
    preview = client.get(match["record"]["thumbnail_url"])
    assert preview.status_code == 200 and preview.mimetype == "image/jpeg"
    assert preview.headers["Cache-Control"].startswith("private, max-age=")


def test_a_matched_record_is_shown_and_a_possible_one_beside_it_withheld(
    client: FlaskClient, signing_key: str
) -> None:
    grille, panel = grille_and_panel()
    shown = register(client, signing_key, panel, filename="panel.png")
    hidden = register(client, signing_key, grille, filename="grille.png")
    full = verify_as(client, transforms.strip(panel), signing_key).get_json()["matches"]
    assert [m.get("generation_id") for m in full][:2] == [shown.generation_id, hidden.generation_id]
    response = verify_as(client, transforms.strip(panel))
    assert [m.get("generation_id") for m in response.get_json()["matches"]] == [shown.generation_id, None]
    assert hidden.generation_id not in response.get_data(as_text=True)


def test_disclosure_all_shows_possible_matches_to_anyone(
    settings: Settings, signing_key: str, possible_match: tuple[Signed, bytes]
) -> None:
    signed, panel = possible_match
    published = create_app(dataclasses.replace(settings, disclosure="all")).test_client()
    (match,) = verify_as(published, panel).get_json()["matches"]
    assert match["generation_id"] == signed.generation_id and "private" not in match["record"]
    assert published.get(match["record"]["thumbnail_url"]).status_code == 200


def test_disclosure_none_makes_verification_need_a_key(
    settings: Settings, possible_match: tuple[Signed, bytes]
) -> None:
    _, panel = possible_match
    internal = create_app(dataclasses.replace(settings, disclosure="none")).test_client()
    assert_problem(verify_as(internal, panel), 401)
    (match,) = verify_as(internal, panel, api_key(settings, "verify")).get_json()["matches"]
    assert match["withheld"] is True


def test_a_batch_without_scope_read_withholds_possible_matches(
    client: FlaskClient, settings: Settings, possible_match: tuple[Signed, bytes]
) -> None:
    _, panel = possible_match
    response = client.post(
        "/v1/verify/batch",
        data={"image": [(io.BytesIO(panel), "panel.png")]},
        headers={"Authorization": f"Bearer {api_key(settings, 'verify')}"},
    )
    (result,) = response.get_json()["results"]
    assert result["verdict"] == "possible_match" and result["matches"][0]["withheld"] is True


@pytest.mark.parametrize(
    "environ", [{"PROVENANCE_DISCLOSURE": "some"}, {"PROVENANCE_PREVIEW_LINK_SECONDS": "0"}]
)
def test_an_unknown_disclosure_or_a_link_lifetime_below_a_second_is_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=next(iter(environ))):
        Settings.from_env(environ)


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


def test_a_generation_id_that_is_no_uuid_names_no_generation(client: FlaskClient, settings: Settings) -> None:
    """A NUL in the path was a 500 on PostgreSQL, whose text cannot hold it."""
    headers = {"Authorization": f"Bearer {api_key(settings, 'read,admin')}"}
    for path in ("/v1/generations/a%00b", "/v1/generations/a%00b/thumbnail", "/v1/generations/missing"):
        assert_problem(client.get(path, headers=headers), 404)
    assert_problem(client.delete("/v1/generations/a%00b", headers=headers), 404)
