"""Preview links: signed, expiring, refused when forged; the secret behind them; the thumbnail endpoint."""

from __future__ import annotations

import io
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from provenance.app import create_app
from provenance.config import Settings
from provenance.previews import PreviewLinks, ensure_secret
from provenance.services import services
from tests import transforms
from tests.conftest import Signed, api_key
from tests.test_api import assert_problem

SECRET = bytes(range(32))


def test_a_link_opens_its_own_preview_until_it_expires() -> None:
    links = PreviewLinks(SECRET, 600)
    link = links.issue("g1", now=1000.0)
    assert link.expires == 1600
    assert links.refusal("g1", str(link.expires), link.signature, now=1599.0) is None
    assert "expired" in (links.refusal("g1", str(link.expires), link.signature, now=1600.0) or "")


@pytest.mark.parametrize(
    ("generation_id", "expires", "signature"),
    [
        ("g2", None, None),  # another record's preview
        ("g1", "99999999999", None),  # a later expiry
        ("g1", None, "A" * 43),  # a made-up signature
        ("g1", None, ""),
        ("g1", None, "é" * 43),  # not ASCII
        ("g1", "soon", None),
    ],
)
def test_a_forged_or_altered_link_is_refused(
    generation_id: str, expires: str | None, signature: str | None
) -> None:
    links = PreviewLinks(SECRET, 600)
    link = links.issue("g1", now=1000.0)
    given = (generation_id, expires or str(link.expires), link.signature if signature is None else signature)
    assert links.refusal(*given, now=1001.0) == "the preview link is not valid"


def test_a_link_signed_with_another_secret_is_refused() -> None:
    link = PreviewLinks(bytes(32), 600).issue("g1", now=1000.0)
    assert PreviewLinks(SECRET, 600).refusal("g1", str(link.expires), link.signature, now=1001.0)


def test_the_secret_is_created_once_owner_only_and_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "preview-links.key"
    first = ensure_secret(path)
    assert len(first) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert ensure_secret(path) == first
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no candidate file left behind
    path.write_text("too short\n")
    with pytest.raises(ValueError):
        ensure_secret(path)


def preview_link(client: FlaskClient, signed: Signed) -> str:
    body = client.post("/v1/verify", data={"image": (io.BytesIO(transforms.strip(signed.data)), "s.jpg")})
    url: str = body.get_json()["matches"][0]["record"]["thumbnail_url"]
    return url


def thumbnail(client: FlaskClient, generation_id: str, query: str = "", key: str | None = None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.get(f"/v1/generations/{generation_id}/thumbnail{query}", headers=headers)


def test_the_thumbnail_needs_a_valid_link_or_a_read_key(
    app: Flask, client: FlaskClient, settings: Settings, signed_image: Signed
) -> None:
    gid = signed_image.generation_id
    assert_problem(thumbnail(client, gid), 401)
    assert_problem(thumbnail(client, gid, key=api_key(settings, "verify")), 403)
    assert thumbnail(client, gid, key=api_key(settings, "read")).status_code == 200
    url = preview_link(client, signed_image)
    assert client.get(url).status_code == 200
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    sig = params["sig"]
    # Change the first character: a fixed suffix would be the real one by chance now and then.
    forged = f"?expires={params['expires']}&sig={'B' if sig[0] == 'A' else 'A'}{sig[1:]}"
    assert "not valid" in assert_problem(thumbnail(client, gid, forged), 403)["detail"]
    later = f"?expires={int(params['expires']) + 60}&sig={params['sig']}"
    assert_problem(thumbnail(client, gid, later), 403)
    with app.app_context():
        old = services().preview_links.issue(gid, now=time.time() - 601)  # type: ignore[union-attr]
    expired = f"?expires={old.expires}&sig={old.signature}"
    assert "expired" in assert_problem(thumbnail(client, gid, expired), 403)["detail"]
    assert_problem(thumbnail(client, gid, "?sig=x"), 403)


def test_the_thumbnail_answers_tell_no_one_without_a_link_or_key_which_ids_exist(
    app: Flask, client: FlaskClient, settings: Settings, signed_image: Signed
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_problem(thumbnail(client, unknown), 401)
    assert_problem(thumbnail(client, unknown, "?expires=1&sig=x"), 403)
    with app.app_context():
        link = services().preview_links.issue(unknown)  # type: ignore[union-attr]
    assert_problem(thumbnail(client, unknown, f"?expires={link.expires}&sig={link.signature}"), 404)


def test_a_data_dir_with_keys_but_no_secret_gets_one_when_the_server_starts(
    settings: Settings, signing_key: str, signed_image: Signed
) -> None:
    settings.preview_key.unlink()
    client = create_app(settings).test_client()
    assert settings.preview_key.exists()
    assert client.get(preview_link(client, signed_image)).status_code == 200


def test_an_unusable_secret_costs_the_links_but_not_the_service(
    settings: Settings, signing_key: str, signed_image: Signed
) -> None:
    settings.preview_key.write_text("not hex\n")
    client = create_app(settings).test_client()
    body = client.post("/v1/verify", data={"image": (io.BytesIO(transforms.strip(signed_image.data)), "s")})
    assert body.get_json()["verdict"] == "matched"
    assert body.get_json()["matches"][0]["record"]["thumbnail_url"] is None
    assert thumbnail(client, signed_image.generation_id, key=signing_key).status_code == 200
    assert_problem(thumbnail(client, signed_image.generation_id, "?expires=1&sig=x"), 403)
