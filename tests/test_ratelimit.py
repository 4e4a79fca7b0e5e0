"""Verification allowances: per address without a key, per key with one, shared by processes."""

from __future__ import annotations

import contextlib
import io
from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from PIL import Image

from provenance import db
from provenance.app import create_app
from provenance.config import Settings
from provenance.ratelimit import RateLimiter
from tests.conftest import api_key
from tests.test_api import assert_problem


def suspect() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(out, "PNG")
    return out.getvalue()


def post_verify(client: FlaskClient, headers: dict[str, str] | None = None, address: str = "198.51.100.7"):
    return client.post(
        "/v1/verify",
        data={"image": (io.BytesIO(suspect()), "suspect.png")},
        headers=headers or {},
        environ_base={"REMOTE_ADDR": address},
    )


def limited_client(settings: Settings, **limits: int) -> FlaskClient:
    return create_app(replace(settings, **limits)).test_client()


def test_an_address_without_a_key_gets_its_allowance_then_429_with_retry_after(settings: Settings) -> None:
    client = limited_client(settings, verify_per_minute=3)
    for _ in range(3):
        assert post_verify(client).status_code == 200
    refused = post_verify(client)
    body = assert_problem(refused, 429)
    assert body["type"] == "/problems/too-many-requests"
    assert "3 images a minute" in body["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 20  # one image's worth of refill: 20 s
    assert f"try again in {refused.headers['Retry-After']} s" in body["detail"]
    # Others are not held back by that client: another address, and a key holder.
    assert post_verify(client, address="198.51.100.8").status_code == 200
    key = api_key(settings, "verify")
    assert post_verify(client, {"Authorization": f"Bearer {key}"}).status_code == 200


def test_each_image_of_a_batch_counts_against_its_key(settings: Settings) -> None:
    client = limited_client(settings, verify_per_minute_with_key=4)
    headers = {"Authorization": f"Bearer {api_key(settings, 'verify')}"}

    def batch(images: int):
        parts = {"image": [(io.BytesIO(suspect()), f"{i}.png") for i in range(images)]}
        return client.post("/v1/verify/batch", data=parts, headers=headers)

    assert batch(3).status_code == 200
    assert_problem(batch(2), 429)
    assert batch(1).status_code == 200  # what is left is still there: nothing was taken by the refusal


def test_no_limit_when_set_to_zero(settings: Settings) -> None:
    client = limited_client(settings, verify_per_minute=0)
    assert all(post_verify(client).status_code == 200 for _ in range(40))


def test_behind_a_proxy_the_forwarded_address_is_the_client(settings: Settings) -> None:
    proxied = limited_client(settings, verify_per_minute=1, proxy_hops=1)
    assert post_verify(proxied, {"X-Forwarded-For": "203.0.113.1"}).status_code == 200
    assert post_verify(proxied, {"X-Forwarded-For": "203.0.113.2"}).status_code == 200
    assert post_verify(proxied, {"X-Forwarded-For": "203.0.113.1"}).status_code == 429
    # Without proxy_hops the header is the client's own claim, and changing it gains nothing.
    direct = limited_client(settings, verify_per_minute=1)
    assert post_verify(direct, {"X-Forwarded-For": "203.0.113.3"}, address="192.0.2.9").status_code == 200
    assert post_verify(direct, {"X-Forwarded-For": "203.0.113.4"}, address="192.0.2.9").status_code == 429


def test_allowances_are_shared_by_processes_and_refill_with_time(settings: Settings) -> None:
    """Shared by the processes of one data directory, or with PostgreSQL by every host."""
    first, second = RateLimiter(settings.rate_limits), RateLimiter(settings.rate_limits)
    assert first.take("a", 60, per_minute=60, now=1000.0) == 0
    assert second.take("a", 1, per_minute=60, now=1000.0) == 1.0  # one a second comes back
    assert second.take("b", 1, per_minute=60, now=1000.0) == 0
    assert second.take("a", 30, per_minute=60, now=1030.0) == 0
    assert first.take("a", 1, per_minute=60, now=1030.0) == 1.0


def test_unreadable_state_is_dropped_for_full_allowances(tmp_path: Path) -> None:
    """Buckets are kept without fsync: a torn file after a crash must not keep the service down."""
    path = tmp_path / "limits.sqlite3"
    path.write_bytes(b"not a database, just what a crash left behind" * 100)
    assert RateLimiter(path).take("a", 1, per_minute=60, now=1000.0) == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_limiter_outlives_its_database_connections(settings: Settings) -> None:
    """A database restart or failover ends every connection; a limiter that held one for the
    process's life failed every later take."""
    limiter = RateLimiter(settings.rate_limits)
    assert limiter.take("a", 1, per_minute=60, now=1000.0) == 0
    with contextlib.closing(db.connect(settings.database)) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    assert limiter.take("a", 1, per_minute=60, now=1000.0) == 0
