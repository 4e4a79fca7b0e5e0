"""Idempotency keys: what a retry is answered with, and that one key never makes two records."""

from __future__ import annotations

import random
import threading
import time

import pytest

from provenance import db
from provenance.app import build_services
from provenance.idempotency import IdempotencyKey, SignedDelta, request_sha256
from provenance.registry import GenerationRequest, Registry
from provenance.signing import ManifestSigner
from tests.conftest import as_format, fixture_bytes


def test_header_values_follow_the_draft_and_are_bounded() -> None:
    assert IdempotencyKey.from_header("o", '"8e03978e-40d5"').key == "8e03978e-40d5"
    assert IdempotencyKey.from_header("o", "plain-token").key == "plain-token"
    assert IdempotencyKey.from_header("o", "x" * 255).key == "x" * 255
    for bad in ("", '""', "x" * 256, "tab\there", "\u00e9"):
        with pytest.raises(ValueError):
            IdempotencyKey.from_header("o", bad)


def test_request_fingerprints_tell_every_part_apart() -> None:
    base = request_sha256(b"ab", '{"model":"m"}', "f.jpg")
    assert base == request_sha256(b"ab", '{"model":"m"}', "f.jpg")
    assert base != request_sha256(b"a", 'b{"model":"m"}', "f.jpg")
    assert base != request_sha256(b"ab", '{"model":"m"}', "g.jpg")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_key_keeps_only_what_signing_added_to_the_upload(settings, fmt: str) -> None:
    upload = as_format(fixture_bytes("coffee.jpg"), fmt)
    registry = build_services(settings).require_registry()
    key = IdempotencyKey("apikey:1", fmt)
    with db.open_database(settings.database) as connection:
        first = registry.register(connection, upload, GenerationRequest(model="m"), "c", key)
        (kept,) = connection.execute("SELECT signed_delta FROM idempotency_keys").fetchone()
        again = registry.register(connection, upload, GenerationRequest(model="m"), "c", key)
    assert again.replayed and again.signed == first.signed
    assert len(kept) < 5_000 < len(upload)  # the manifest c2pa wrote, not the image


def edited(original: bytes, rng: random.Random) -> bytes:
    """The original with a few insertions, same-length replacements and appends, as signers make."""
    signed = bytearray(original)
    for _ in range(rng.randrange(4)):
        at, kind = rng.randrange(len(signed) + 1), rng.randrange(3)
        if kind == 0:
            signed[at:at] = rng.randbytes(rng.randrange(1, 300))
        elif kind == 1:
            signed[at : at + 4] = rng.randbytes(4)
        else:
            signed += rng.randbytes(rng.randrange(300))
    return bytes(signed)


def test_any_signed_file_is_rebuilt_exactly_from_its_upload_and_delta() -> None:
    rng = random.Random(5)
    for _ in range(300):
        original = rng.randbytes(rng.randrange(2000)) if rng.random() < 0.5 else bytes(rng.randrange(2000))
        signed = edited(original, rng) if rng.random() < 0.9 else rng.randbytes(rng.randrange(500))
        delta = SignedDelta.decode(SignedDelta.between(original, signed).encode())
        assert delta.apply(original) == signed


class CountingSigner:
    """The real signer, counting finished signatures so the test knows both requests are in flight."""

    def __init__(self, signer: ManifestSigner) -> None:
        self._signer = signer
        self.certificate_chain = signer.certificate_chain
        self.leaf_serial = signer.leaf_serial
        self.signed = 0

    def sign(self, *args):
        result = self._signer.sign(*args)
        self.signed += 1
        return result


def test_two_concurrent_requests_with_one_key_make_one_record(settings) -> None:
    signer = CountingSigner(ManifestSigner(settings))
    registry = Registry(settings, signer)  # type: ignore[arg-type]
    with db.open_database(settings.database) as connection:
        registry.signer_on_record(connection)  # as build_services does at start
    request = GenerationRequest(model="m")
    key = IdempotencyKey("apikey:1", "same")
    image = fixture_bytes("coffee.jpg")
    answers = []

    def register() -> None:
        with db.connect(settings.database) as connection:
            answers.append(registry.register(connection, image, request, "c.jpg", key))

    # Hold the write lock so that both requests sign (each has looked for the key and found none)
    # and then wait to commit: the in-flight duplicate the key must not let through.
    blocker = db.connect(settings.database)
    blocker.execute("BEGIN IMMEDIATE")
    threads = [threading.Thread(target=register) for _ in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while signer.signed < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert signer.signed == 2
    time.sleep(0.3)
    blocker.execute("COMMIT")
    for thread in threads:
        thread.join()

    assert len(answers) == 2
    assert answers[0].record.generation_id == answers[1].record.generation_id
    assert answers[0].signed == answers[1].signed
    assert sorted(a.replayed for a in answers) == [False, True]
    with db.connect(settings.database) as connection:
        assert connection.execute("SELECT count(*) FROM records").fetchone()[0] == 1
        assert connection.execute("SELECT count(*) FROM fingerprints").fetchone()[0] == 2
