from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from provenance import db
from provenance.apikeys import create_api_key
from provenance.app import create_app
from provenance.config import Settings
from provenance.devkeys import KeyFiles, generate_dev_keys
from tests.milvus import MilvusCluster
from tests.postgres import PostgresCluster

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def dev_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One development chain for the whole run (copied into each test's data dir)."""
    keys = tmp_path_factory.mktemp("keys")
    generate_dev_keys(KeyFiles.under(keys, keys / "chain.pem", keys / "signer.key", keys / "root.pem"))
    return keys


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL server for the run, started when the first test needs it."""
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def milvus_cluster() -> Iterator[MilvusCluster]:
    """One Milvus server for the run, started when the first test needs it."""
    cluster = MilvusCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The store every test that builds Settings runs on: SQLite (None: the default file) and a
    fresh PostgreSQL database. A test bound to one engine says so with
    ``@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)``."""
    if request.param == "sqlite":
        yield None
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    with cluster.database() as url:
        yield url


def data_dir_with_keys(directory: Path, dev_keys: Path) -> Path:
    (directory / "keys").mkdir(parents=True)
    for item in dev_keys.iterdir():
        (directory / "keys" / item.name).write_bytes(item.read_bytes())
    return directory


@pytest.fixture
def settings(
    tmp_path: Path, dev_keys: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    # The commands and servers a test starts find the store as in production: in the environment.
    monkeypatch.setenv("PROVENANCE_DATABASE_URL", database_url or "")
    return Settings(data_dir=data_dir_with_keys(tmp_path / "data", dev_keys), database_url=database_url)


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def api_key(settings: Settings, scopes: str) -> str:
    with db.open_database(settings.database) as connection:
        return create_api_key(connection, frozenset(scopes.split(",")), "test")


@pytest.fixture
def signing_key(settings: Settings) -> str:
    return api_key(settings, "sign,read,verify")


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def as_format(data: bytes, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, fmt)
    return out.getvalue()


@pytest.fixture
def sample_image() -> bytes:
    return fixture_bytes("coffee.jpg")


@dataclass(frozen=True)
class Signed:
    data: bytes
    generation_id: str


def register(
    client: FlaskClient, key: str, data: bytes, model: str = "test-diffusion", filename: str = "x.jpg"
) -> Signed:
    response = client.post(
        "/v1/generations",
        data={
            "image": (io.BytesIO(data), filename),
            "metadata": json.dumps({"model": model, "public": {"prompt_id": 7}, "private": {"user": "u1"}}),
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.get_json()
    return Signed(response.data, response.headers["X-Generation-Id"])


@pytest.fixture
def signed_image(client: FlaskClient, signing_key: str, sample_image: bytes) -> Signed:
    return register(client, signing_key, sample_image)


@pytest.fixture
def registered_set(client: FlaskClient, signing_key: str) -> Iterator[dict[str, Signed]]:
    """The four registered fixtures (hubble.jpg stays unregistered)."""
    yield {
        name: register(client, signing_key, fixture_bytes(f"{name}.jpg"), filename=f"{name}.jpg")
        for name in ("coffee", "chelsea", "astronaut", "rocket")
    }
