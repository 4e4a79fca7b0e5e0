"""Fuzzing the upload endpoints: malformed images and metadata get a verdict or a 4xx, never a 5xx,
and no request hangs. Seeded and bounded (about 20 s on two cores); scripts/fuzz_uploads.py sends
the same kinds of input, thousands of them, to a real server."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import signal
import time
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from provenance.app import create_app
from provenance.config import Settings
from tests import mutations
from tests.conftest import api_key, fixture_bytes, register
from tests.transforms import decode, encode

SEED = 20261202
UPLOADS = 160
# Generous: a request on a busy two-core machine takes well under a second; a hang never ends.
REQUEST_DEADLINE_S = 30


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Interrupt the test-client request (it runs in this thread) if it hangs."""

    def expire(*_: object) -> None:
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def send(client: FlaskClient, upload: mutations.Upload, key: str):
    headers = {"Authorization": f"Bearer {key}"}
    if upload.endpoint == mutations.BY_CONTENT:
        return client.post(
            upload.endpoint, data=upload.images[0], content_type=upload.content_type, headers=headers
        )
    fields: dict = {
        "image": [FileStorage(io.BytesIO(image), f"f{i}") for i, image in enumerate(upload.images)]
    }
    if upload.metadata is not None:
        fields["metadata"] = upload.metadata
    # Encoded in memory: the test client spools a large body to a file it leaves open.
    boundary, body = encode_multipart(fields)
    return client.post(
        upload.endpoint, data=body, content_type=f"multipart/form-data; boundary={boundary}", headers=headers
    )


def small(name: str, fmt: str) -> bytes:
    image = decode(fixture_bytes(name))
    return encode(image.resize((256, round(256 * image.height / image.width))), fmt)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM to bound each request")
def test_malformed_uploads_never_get_a_5xx_nor_hang(settings: Settings) -> None:
    unlimited = dataclasses.replace(settings, verify_per_minute=0, verify_per_minute_with_key=0)
    client = create_app(unlimited).test_client()
    key = api_key(unlimited, "sign,read,verify,fetch:manifests")
    originals = [
        register(client, key, small("coffee.jpg", "JPEG")).data,
        register(client, key, small("rocket.jpg", "PNG"), filename="r.png").data,
        register(client, key, small("chelsea.jpg", "WEBP"), filename="c.webp").data,
    ]
    statuses: dict[int, int] = {}
    slowest = 0.0
    for number, upload in enumerate(mutations.uploads(originals, SEED, UPLOADS)):
        started = time.perf_counter()
        with deadline(REQUEST_DEADLINE_S):
            response = send(client, upload, key)
        slowest = max(slowest, time.perf_counter() - started)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (number, upload.endpoint, upload.kind, response.get_json())
        if upload.endpoint == mutations.BATCH:
            assert len(response.get_json()["results"]) == len(upload.images)
    # Every kind of answer was provoked, so the inputs reach past the first check.
    assert {200, 201} <= set(statuses) and any(400 <= status < 500 for status in statuses), statuses
