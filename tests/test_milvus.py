"""The index on Milvus (PROVENANCE_MILVUS_URI), against a real Milvus server (tests/milvus.py): the
verdicts FAISS gives, records found as they commit and gone once deleted, the store as the truth
hosts catch up from, a rebuild into fresh collections, readiness while Milvus loads, and API
hosts that keep no index of their own."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from index import FingerprintStore, MilvusIndex, fingerprint_image
from index.calibration import Retrieval
from index.features import extract_local_features
from index.fingerprints import pdq
from provenance import db
from provenance.app import create_app
from provenance.cli import main
from provenance.config import Settings
from tests import transforms
from tests.conftest import Signed, api_key, data_dir_with_keys, fixture_bytes, register
from tests.milvus import MilvusCluster
from tests.test_api import assert_problem, verify_as
from tests.test_cli import run
from tests.test_deletion import delete
from tests.test_verify import verify

KINDS = ("pdq", "local", "cursor")


@pytest.fixture
def shared(
    settings: Settings, milvus_cluster: MilvusCluster, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """The test's settings with the index on Milvus, under a collection prefix of its own."""
    with milvus_cluster.prefix() as prefix:
        monkeypatch.setenv("PROVENANCE_MILVUS_URI", milvus_cluster.uri)
        monkeypatch.setenv("PROVENANCE_MILVUS_COLLECTION", prefix)
        yield dataclasses.replace(settings, milvus_uri=milvus_cluster.uri, milvus_collection=prefix)


def host(settings: Settings) -> FlaskClient:
    return create_app(settings).test_client()


def answer(result: dict) -> tuple[str, list[tuple[str | None, str]]]:
    """What a user reads in a verification: the verdict, and which generations matched how."""
    return result["verdict"], [(m.get("generation_id"), m["verdict"]) for m in result["matches"]]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_copies_get_the_verdicts_faiss_gives(shared: Settings, signing_key: str) -> None:
    with_milvus = host(shared)
    signed = {
        name: register(with_milvus, signing_key, fixture_bytes(f"{name}.jpg"))
        for name in ("coffee", "chelsea", "astronaut", "rocket")
    }
    with_faiss = host(dataclasses.replace(shared, milvus_uri=None))  # built from the same store
    suspects = {
        "stripped": (signed["coffee"], transforms.strip(signed["coffee"].data, quality=60)),
        "cropped": (signed["chelsea"], transforms.crop(signed["chelsea"].data, 0.4)[0]),
        "resized": (signed["astronaut"], transforms.resize(signed["astronaut"].data, 0.5)),
        "padded": (signed["rocket"], transforms.pad(signed["rocket"].data, 60)),
        "unrelated": (None, transforms.strip(fixture_bytes("hubble.jpg"))),
    }
    for label, (original, data) in suspects.items():
        found = answer(verify(with_milvus, data))
        assert found == answer(verify(with_faiss, data)), label
        if original is None:
            assert found == ("no_match", []), label
        else:
            assert found[0] == "matched" and found[1][0] == (original.generation_id, "matched"), label


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_deleted_record_leaves_milvus_for_every_host(shared: Settings, signing_key: str) -> None:
    client = host(shared)
    gone = register(client, signing_key, fixture_bytes("rocket.jpg"))
    kept = register(client, signing_key, fixture_bytes("coffee.jpg"))
    assert delete(client, gone.generation_id, api_key(shared, "admin")).status_code == 200

    later = MilvusIndex(shared.milvus_uri or "", shared.milvus_collection)  # a host started afterwards
    with contextlib.closing(db.open_database(shared.database)) as connection:
        later.catch_up(FingerprintStore(connection))
    picture = transforms.decode(gone.data)
    assert later.search_pdq([pdq(picture)], 31) == {}
    voted = later.search_local(extract_local_features(picture).descriptors[:500], Retrieval())
    assert 1 not in {c.record_id for c in voted}
    assert 2 in later.search_pdq([pdq(transforms.decode(kept.data))], 31)
    assert later.records == 1
    assert verify(client, transforms.strip(gone.data))["verdict"] == "no_match"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_hosts_catch_up_from_the_store_what_no_host_indexed(shared: Settings) -> None:
    """A record committed by a host that died before indexing it is added by the next host to
    catch up, once; a removal logged in the store leaves Milvus at the next catch-up too."""
    first = MilvusIndex(shared.milvus_uri or "", shared.milvus_collection)
    picture = transforms.decode(fixture_bytes("chelsea.jpg"))
    with contextlib.closing(db.open_database(shared.database)) as connection:
        store = FingerprintStore(connection)
        assert first.catch_up(store) == 0
        with connection:
            store.add(1, fingerprint_image(picture))
        assert first.catch_up(store) == 1
        assert set(first.search_pdq([pdq(picture)], 31)) == {1}

        second = MilvusIndex(shared.milvus_uri or "", shared.milvus_collection)
        assert second.catch_up(store) == 0  # the shared cursor says record 1 is in already
        assert second.last_record_id == 1 and second.records == 1

        with connection:
            store.remove(1)
        second.catch_up(store)
        assert first.catch_up(store) == 0  # as before every search: nothing to add, one removal
        assert first.search_pdq([pdq(picture)], 31) == {}
        assert first.records == 0 and first.last_removal_seq == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_index_rebuild_fills_fresh_collections_and_drops_the_old(
    shared: Settings, signing_key: str, runner: CliRunner, milvus_cluster: MilvusCluster
) -> None:
    client = host(shared)
    signed = register(client, signing_key, fixture_bytes("astronaut.jpg"))
    register(client, signing_key, fixture_bytes("coffee.jpg"))
    milvus = milvus_cluster.client()
    before = {
        kind: milvus.describe_alias(f"{shared.milvus_collection}_{kind}")["collection_name"] for kind in KINDS
    }

    result = run(runner, shared, "index", "rebuild")
    assert result.exit_code == 0, result.output
    assert f"indexed 2 records into Milvus at {shared.milvus_uri}" in result.output
    after = {
        kind: milvus.describe_alias(f"{shared.milvus_collection}_{kind}")["collection_name"] for kind in KINDS
    }
    assert set(after.values()).isdisjoint(before.values())
    assert set(before.values()).isdisjoint(milvus.list_collections())
    assert verify(client, transforms.strip(signed.data))["verdict"] == "matched"
    assert not shared.index_directory.exists()  # no index file: the host is stateless


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_readyz_is_503_while_milvus_loads_the_collections(
    shared: Settings, signing_key: str, milvus_cluster: MilvusCluster
) -> None:
    signed = register(host(shared), signing_key, fixture_bytes("coffee.jpg"))
    milvus = milvus_cluster.client()

    def release() -> None:  # as after a Milvus restart: the collections exist but are not in memory
        for kind in KINDS:
            milvus.release_collection(f"{shared.milvus_collection}_{kind}")

    release()
    starting = host(shared)
    ready = starting.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["status"].startswith("index not ready")
    release()  # the host asked Milvus to load them: not loaded yet again, for the next request
    problem = assert_problem(verify_as(starting, transforms.strip(signed.data)), 503)
    assert problem["type"].endswith("/index-unavailable")

    deadline = time.monotonic() + 120
    while starting.get("/readyz").status_code != 200:  # the first /readyz asked Milvus to load
        assert time.monotonic() < deadline, "Milvus never loaded the collections"
        time.sleep(0.5)
    assert verify(starting, transforms.strip(signed.data))["verdict"] == "matched"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_second_host_finds_what_the_first_registered(
    shared: Settings, signing_key: str, dev_keys: Path, tmp_path: Path
) -> None:
    first = host(shared)
    second = host(dataclasses.replace(shared, data_dir=data_dir_with_keys(tmp_path / "second", dev_keys)))
    signed: Signed = register(first, signing_key, fixture_bytes("chelsea.jpg"))
    result = verify(second, transforms.crop(signed.data, 0.5)[0])
    assert answer(result) == ("matched", [(signed.generation_id, "matched")])
    assert second.get("/readyz").get_json()["indexed_through"] == 1
    for data_dir in (shared.data_dir, tmp_path / "second"):
        assert not (Path(data_dir) / "index").exists()


def test_a_collection_prefix_milvus_would_refuse_is_a_settings_error(runner: CliRunner) -> None:
    with pytest.raises(ValueError, match="MILVUS_COLLECTION"):
        Settings(milvus_collection="provenance-prod")
    result = runner.invoke(
        main, ["index", "rebuild"], env={"PROVENANCE_MILVUS_COLLECTION": "9lives"}, catch_exceptions=False
    )
    assert result.exit_code == 2 and "MILVUS_COLLECTION" in result.output
