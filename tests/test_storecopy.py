"""Moving a SQLite store into PostgreSQL: interrupted and resumed, then served from PostgreSQL."""

from __future__ import annotations

import contextlib
import io
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from provenance import db
from provenance.app import create_app
from provenance.cli import main
from provenance.config import Settings
from provenance.storecopy import copy_store
from tests.conftest import api_key, data_dir_with_keys, fixture_bytes, register
from tests.postgres import PostgresCluster


class Interrupted(Exception):
    pass


def test_an_interrupted_copy_resumes_and_the_copy_serves_every_record(
    tmp_path: Path, dev_keys: Path, postgres_cluster: PostgresCluster, runner: CliRunner
) -> None:
    local = Settings(data_dir=data_dir_with_keys(tmp_path / "data", dev_keys))
    key = api_key(local, "sign,read,verify")
    client = create_app(local).test_client()
    signed = [register(client, key, fixture_bytes(f"{name}.jpg")) for name in ("coffee", "rocket", "chelsea")]

    with postgres_cluster.database() as url:
        batches = []

        def stop_after_two(table: str, rows: int) -> None:
            batches.append(table)
            if len(batches) == 2:
                raise Interrupted

        with contextlib.closing(db.open_database(local.database)) as source:
            with contextlib.closing(db.open_database(url)) as target, pytest.raises(Interrupted):
                copy_store(source, target, batch_rows=1, after_batch=stop_after_two)

        environment = {"PROVENANCE_DATABASE_URL": ""}
        copied = runner.invoke(
            main, ["--data-dir", str(local.data_dir), "db", "copy", "--to", url], env=environment
        )
        assert copied.exit_code == 0, copied.output
        assert "records: 3 rows (1 copied now)" in copied.output  # two were copied before the interruption
        assert "api_keys: 1 rows (1 copied now)" in copied.output

        shared = replace(local, data_dir=data_dir_with_keys(tmp_path / "host", dev_keys), database_url=url)
        rebuilt = runner.invoke(
            main,
            ["--data-dir", str(shared.data_dir), "index", "rebuild"],
            env={"PROVENANCE_DATABASE_URL": url},
        )
        assert "indexed 3 records" in rebuilt.output, rebuilt.output

        served = create_app(shared).test_client()
        for image in signed:  # the API key came along, and every record is found
            found = served.post(
                "/v1/verify",
                data={"image": (io.BytesIO(image.data), "s.jpg")},
                headers={"Authorization": f"Bearer {key}"},
            ).get_json()
            assert (
                found["verdict"] == "authentic"
                and found["matches"][0]["generation_id"] == image.generation_id
            )
        new = register(served, key, fixture_bytes("astronaut.jpg"))  # new ids follow the copied ones
        assert (
            served.get(
                f"/v1/generations/{new.generation_id}", headers={"Authorization": f"Bearer {key}"}
            ).status_code
            == 200
        )


def test_copy_refuses_a_target_that_is_not_postgresql(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["--data-dir", str(tmp_path), "db", "copy", "--to", "sqlite:///elsewhere"])
    assert result.exit_code == 2
    assert "postgresql://" in result.output


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_db_migrate_reports_what_it_applied(runner: CliRunner, settings: Settings) -> None:
    result = runner.invoke(main, ["--data-dir", str(settings.data_dir), "db", "migrate"])
    assert result.exit_code == 0
    # The PostgreSQL test databases start from a migrated template; a SQLite one is new.
    assert ("applied 0001_records" in result.output) == (settings.database_url is None)
    assert ("up to date" in result.output) == (settings.database_url is not None)


def test_a_copy_never_issues_again_the_id_of_a_deleted_record(
    tmp_path: Path, dev_keys: Path, postgres_cluster: PostgresCluster
) -> None:
    """SQLite never reuses a deleted record's id, and the removal log still names it: a new
    record under it in PostgreSQL would be dropped from every index at once."""
    local = Settings(data_dir=data_dir_with_keys(tmp_path / "data", dev_keys))
    key = api_key(local, "sign,read,verify,admin")
    client = create_app(local).test_client()
    register(client, key, fixture_bytes("coffee.jpg"))
    newest = register(client, key, fixture_bytes("rocket.jpg"))
    assert client.delete(f"/v1/generations/{newest.generation_id}", headers=bearer(key)).status_code == 200

    with postgres_cluster.database() as url:
        with contextlib.closing(db.open_database(local.database)) as source:
            with contextlib.closing(db.open_database(url)) as target:
                copy_store(source, target)
        shared = replace(local, data_dir=data_dir_with_keys(tmp_path / "host", dev_keys), database_url=url)
        served = create_app(shared).test_client()
        new = register(served, key, fixture_bytes("chelsea.jpg"))
        found = served.post(
            "/v1/verify", data={"image": (io.BytesIO(new.data), "s.jpg")}, headers=bearer(key)
        ).get_json()
        assert found["verdict"] == "authentic" and found["matches"][0]["generation_id"] == new.generation_id
        assert served.delete(f"/v1/generations/{new.generation_id}", headers=bearer(key)).status_code == 200


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
