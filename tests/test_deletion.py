"""Deleting a generation: nothing of it is matched or served again, by any process or after a rebuild;
a copy still carrying our manifest is answered "signed by us; the record was deleted"."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from index import pdq
from provenance import db
from provenance.app import create_app, services
from provenance.config import Settings
from tests import transforms
from tests.conftest import Signed, api_key, as_format, fixture_bytes, register
from tests.test_api import assert_problem, verify_as
from tests.test_cli import run
from tests.test_sbr import soft_binding_value


def delete(client: FlaskClient, generation_id: str, key: str | None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.delete(f"/v1/generations/{generation_id}", headers=headers)


def stored(settings: Settings, generation_id: str, record_id: int) -> dict[str, int]:
    with db.open_database(settings.database) as connection:
        return {
            table: connection.execute(
                f"SELECT count(*) FROM {table} WHERE {column} = ?", (value,)
            ).fetchone()[0]
            for table, column, value in (
                ("records", "generation_id", generation_id),
                ("manifest_stores", "record_id", record_id),
                ("fingerprints", "record_id", record_id),
                ("tombstones", "generation_id", generation_id),
            )
        }


@pytest.fixture
def admin_key(settings: Settings) -> str:
    return api_key(settings, "admin")


@pytest.fixture
def two(client: FlaskClient, signing_key: str) -> tuple[Signed, Signed]:
    """The record to delete and one to keep."""
    return (
        register(client, signing_key, fixture_bytes("rocket.jpg")),
        register(client, signing_key, fixture_bytes("coffee.jpg")),
    )


def test_deleting_needs_scope_admin(
    client: FlaskClient, settings: Settings, two: tuple[Signed, Signed]
) -> None:
    gone, _ = two
    assert_problem(delete(client, gone.generation_id, None), 401)
    assert_problem(delete(client, gone.generation_id, api_key(settings, "sign,read,verify")), 403)
    assert verify_as(client, gone.data).get_json()["verdict"] == "authentic"


def test_a_deleted_record_leaves_a_tombstone_and_nothing_else(
    client: FlaskClient, settings: Settings, admin_key: str, two: tuple[Signed, Signed]
) -> None:
    gone, _ = two
    assert stored(settings, gone.generation_id, 1) == {
        "records": 1,
        "manifest_stores": 1,
        "fingerprints": 2,
        "tombstones": 0,
    }
    response = delete(client, gone.generation_id, admin_key)
    assert response.status_code == 200
    tombstone = response.get_json()
    assert set(tombstone) == {"generation_id", "created_at", "deleted_at"}
    assert (
        tombstone["generation_id"] == gone.generation_id and tombstone["created_at"] < tombstone["deleted_at"]
    )
    assert stored(settings, gone.generation_id, 1) == {
        "records": 0,
        "manifest_stores": 0,
        "fingerprints": 0,
        "tombstones": 1,
    }
    again = assert_problem(delete(client, gone.generation_id, admin_key), 404)
    assert tombstone["deleted_at"] in again["detail"]
    assert_problem(delete(client, "00000000-0000-4000-8000-000000000000", admin_key), 404)


def test_a_deleted_record_is_neither_matched_nor_served(
    client: FlaskClient, settings: Settings, signing_key: str, admin_key: str, two: tuple[Signed, Signed]
) -> None:
    gone, kept = two
    link = verify_as(client, transforms.strip(gone.data)).get_json()["matches"][0]["record"]["thumbnail_url"]
    fetch = api_key(settings, "fetch:manifests")
    assert delete(client, gone.generation_id, admin_key).status_code == 200
    pixels_alike = as_format(gone.data, "PNG")  # same pixels, other bytes: an exact pixel hash hit before
    for suspect in (transforms.strip(gone.data), transforms.crop(gone.data, 0.5)[0], pixels_alike):
        body = verify_as(client, suspect, signing_key).get_json()
        assert body["verdict"] == "no_match" and body["matches"] == [] and body["deleted"] is None
    assert verify_as(client, transforms.strip(kept.data)).get_json()["verdict"] == "matched"
    assert_problem(client.get(f"/v1/generations/{gone.generation_id}", headers=bearer(signing_key)), 404)
    assert_problem(client.get(link), 404)
    assert_problem(
        client.get(f"/v1/generations/{gone.generation_id}/thumbnail", headers=bearer(signing_key)), 404
    )
    assert_problem(client.get(f"/sbr/v1/manifests/urn:c2pa:{gone.generation_id}", headers=bearer(fetch)), 404)
    by_binding = client.get(
        "/sbr/v1/matches/byBinding",
        query_string={"alg": "dev.provenance.pdq.1", "value": soft_binding_value(gone.data)},
        headers=bearer(fetch),
    )
    assert by_binding.get_json() == {"matches": []}
    by_content = client.post(
        "/sbr/v1/matches/byContent", data=gone.data, content_type="image/jpeg", headers=bearer(fetch)
    )
    assert by_content.get_json() == {"matches": []}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_copy_still_carrying_our_manifest_is_answered_deleted_without_data(
    client: FlaskClient, signing_key: str, admin_key: str, two: tuple[Signed, Signed]
) -> None:
    gone, _ = two
    tombstone = delete(client, gone.generation_id, admin_key).get_json()
    for key in (None, signing_key):
        body = verify_as(client, gone.data, key).get_json()
        assert body["verdict"] == "deleted"
        assert body["deleted"] == tombstone
        assert body["c2pa"]["validation_state"] == "Trusted" and body["c2pa"]["signed_by_us"] is True
        assert body["matches"] == []


def test_another_process_drops_the_deleted_record_before_its_next_search(
    settings: Settings, signing_key: str, admin_key: str, two: tuple[Signed, Signed]
) -> None:
    gone, _ = two
    other = create_app(settings).test_client()  # its own index, loaded before the deletion
    suspect = transforms.crop(gone.data, 0.5)[0]
    assert verify_as(other, suspect).get_json()["verdict"] == "matched"
    assert delete(create_app(settings).test_client(), gone.generation_id, admin_key).status_code == 200
    assert verify_as(other, suspect, signing_key).get_json()["matches"] == []
    with other.application.app_context():  # its index holds nothing of the record any more
        index = services().index
        assert index.records == 1
        assert index.search_pdq([pdq(transforms.decode(gone.data))], 31) == {}


def test_record_delete_on_the_command_line_survives_an_index_rebuild(
    runner: CliRunner, settings: Settings, signing_key: str, two: tuple[Signed, Signed]
) -> None:
    gone, kept = two
    assert run(runner, settings, "index", "rebuild").exit_code == 0  # saved before the deletion
    result = run(runner, settings, "record", "delete", "--json", gone.generation_id)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["generation_id"] == gone.generation_id
    missing = run(runner, settings, "record", "delete", gone.generation_id)
    assert missing.exit_code == 1 and "was deleted at" in missing.output
    for _ in range(2):  # the file the command refreshed, then one rebuilt from the store
        client = create_app(settings).test_client()
        assert verify_as(client, transforms.strip(gone.data), signing_key).get_json()["matches"] == []
        assert verify_as(client, transforms.strip(kept.data)).get_json()["verdict"] == "matched"
        assert run(runner, settings, "index", "rebuild").exit_code == 0


def test_a_retry_with_the_key_of_a_deleted_generation_registers_it_anew(
    client: FlaskClient, signing_key: str, admin_key: str
) -> None:
    """The kept answer holds the deleted image's manifest: it goes with the record, and the key
    no longer replays (it used to fail an assertion: a 500)."""
    headers = {"Authorization": f"Bearer {signing_key}", "Idempotency-Key": '"job-1"'}

    def post():
        image = {
            "image": (io.BytesIO(fixture_bytes("rocket.jpg")), "rocket.jpg"),
            "metadata": '{"model": "m"}',
        }
        return client.post("/v1/generations", data=image, headers=headers)

    first = post()
    assert delete(client, first.headers["X-Generation-Id"], admin_key).status_code == 200
    again = post()
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.headers["X-Generation-Id"] != first.headers["X-Generation-Id"]
