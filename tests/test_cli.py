"""The `provenance` command as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from provenance.cli import main
from provenance.config import Settings
from tests import transforms
from tests.conftest import FIXTURES, fixture_bytes


def run(runner: CliRunner, settings: Settings, *args: str):
    return runner.invoke(main, ["--data-dir", str(settings.data_dir), *args], catch_exceptions=False)


def test_keys_init_refuses_to_overwrite(runner: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    first = runner.invoke(main, ["--data-dir", str(data), "keys", "init"])
    assert first.exit_code == 0
    key = (data / "keys" / "signer.key").read_bytes()
    second = runner.invoke(main, ["--data-dir", str(data), "keys", "init"])
    assert second.exit_code == 1
    assert "--force" in second.output
    assert (data / "keys" / "signer.key").read_bytes() == key
    assert runner.invoke(main, ["--data-dir", str(data), "keys", "init", "--if-missing"]).exit_code == 0


def test_sign_json_then_verify_json(runner: CliRunner, settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "signed"
    inputs = [str(FIXTURES / name) for name in ("coffee.jpg", "rocket.jpg")]
    signed = run(runner, settings, "sign", "--model", "diffusion-xl", "--out", str(out), "--json", *inputs)
    assert signed.exit_code == 0, signed.output
    lines = [json.loads(line) for line in signed.output.splitlines()]
    assert [line["file"] for line in lines] == inputs
    assert all(Path(line["output"]).parent == out for line in lines)

    stripped = tmp_path / "stripped.jpg"
    stripped.write_bytes(transforms.strip(Path(lines[1]["output"]).read_bytes()))
    unrelated = FIXTURES / "hubble.jpg"
    verified = run(runner, settings, "verify", "--json", lines[0]["output"], str(stripped), str(unrelated))
    assert verified.exit_code == 0, verified.output
    results = [json.loads(line) for line in verified.output.splitlines()]
    assert [r["verdict"] for r in results] == ["authentic", "matched", "no_match"]
    assert results[1]["matches"][0]["generation_id"] == lines[1]["generation_id"]
    assert results[2]["file"] == str(unrelated)


def test_sign_reports_bad_files_and_exits_non_zero(
    runner: CliRunner, settings: Settings, tmp_path: Path
) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    good = tmp_path / "good.jpg"
    good.write_bytes(fixture_bytes("chelsea.jpg"))
    result = runner.invoke(
        main, ["--data-dir", str(settings.data_dir), "sign", "--model", "m", str(bad), str(good)]
    )
    assert result.exit_code == 1
    assert f"error: {bad}" in result.output
    assert (tmp_path / "good-signed.jpg").exists()
    assert not (tmp_path / "notes-signed.txt").exists()


def test_apikey_create_prints_a_working_key_once(runner: CliRunner, settings: Settings) -> None:
    from provenance import db
    from provenance.apikeys import authenticate

    created = run(runner, settings, "apikey", "create", "--scope", "sign,read")
    token = created.output.strip()
    with db.open_database(settings.database) as connection:
        assert authenticate(connection, token).scopes == {"sign", "read"}
        stored = connection.execute("SELECT key_hash FROM api_keys").fetchone()[0]
    assert token not in stored
    bad = runner.invoke(main, ["--data-dir", str(settings.data_dir), "apikey", "create", "--scope", "admin"])
    assert bad.exit_code == 2


def test_index_rebuild_reports_the_records(runner: CliRunner, settings: Settings) -> None:
    run(
        runner,
        settings,
        "sign",
        "--model",
        "m",
        "--out",
        str(settings.data_dir / "o"),
        str(FIXTURES / "coffee.jpg"),
    )
    result = run(runner, settings, "index", "rebuild")
    assert result.exit_code == 0
    assert "indexed 1 records" in result.output
    assert (settings.index_directory / "fingerprints.npz").exists()
