"""The `provenance` command as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from provenance import db
from provenance.app import create_app
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


def test_keys_init_creates_the_preview_link_secret_also_beside_existing_keys(
    runner: CliRunner, settings: Settings
) -> None:
    """Data directories from before preview links hold keys but no secret."""
    assert not settings.preview_key.exists()
    chain = settings.cert_chain.read_bytes()
    assert run(runner, settings, "keys", "init", "--if-missing").exit_code == 0
    secret = settings.preview_key.read_bytes()
    assert len(bytes.fromhex(secret.decode())) == 32 and settings.preview_key.stat().st_mode & 0o777 == 0o600
    assert run(runner, settings, "keys", "init", "--force").exit_code == 0
    assert settings.preview_key.read_bytes() == secret and settings.cert_chain.read_bytes() != chain


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


def test_verify_json_carries_a_preview_link_that_a_server_on_the_same_data_opens(
    runner: CliRunner, settings: Settings, tmp_path: Path
) -> None:
    """The CLI renders without a Flask app; its link is the one the API's route answers."""
    out = ["--out", str(tmp_path)]
    signed = run(runner, settings, "sign", "--model", "m", *out, "--json", str(FIXTURES / "coffee.jpg"))
    output = json.loads(signed.output)["output"]
    verified = json.loads(run(runner, settings, "verify", "--json", output).output)
    link = verified["matches"][0]["record"]["thumbnail_url"]
    assert link.startswith(f"/v1/generations/{verified['matches'][0]['generation_id']}/thumbnail?")
    client = create_app(settings).test_client()
    opened = client.get(link)
    assert opened.status_code == 200 and opened.mimetype == "image/jpeg"
    assert client.get(link.replace("sig=", "sig=x")).status_code == 403


def test_verify_reports_a_manifest_c2pa_cannot_load_as_invalid(
    runner: CliRunner, settings: Settings, tmp_path: Path
) -> None:
    coffee = str(FIXTURES / "coffee.jpg")
    signed = run(runner, settings, "sign", "--model", "m", "--json", "--out", str(tmp_path), coffee)
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(transforms.break_manifest(Path(json.loads(signed.output)["output"]).read_bytes()))
    verified = run(runner, settings, "verify", "--json", str(damaged))
    assert verified.exit_code == 0, verified.output
    result = json.loads(verified.output)
    assert (result["c2pa"]["validation_state"], result["verdict"]) == ("Invalid", "matched")


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


def test_sign_refuses_public_metadata_out_of_bounds_with_a_usage_error(
    runner: CliRunner, settings: Settings
) -> None:
    for public, problem in [
        ("[" * 1000 + "]" * 1000, "nested"),
        ('{"n": NaN}', "NaN"),
        ("1" * 5000, "integer"),
    ]:
        result = run(
            runner, settings, "sign", "--model", "m", "--public", public, str(FIXTURES / "coffee.jpg")
        )
        assert result.exit_code == 2
        assert result.output.startswith("error: --public") and problem in result.output
        assert "Traceback" not in result.output


def records(settings: Settings) -> int:
    with db.open_database(settings.database) as connection:
        count: int = connection.execute("SELECT count(*) FROM records").fetchone()[0]
    return count


def test_sign_never_overwrites_an_input_nor_without_asking_an_existing_file(
    runner: CliRunner, settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "photos"
    source.mkdir()
    original = fixture_bytes("coffee.jpg")
    (source / "coffee.jpg").write_bytes(original)
    (source / "rocket.jpg").write_bytes(fixture_bytes("rocket.jpg"))
    first = run(runner, settings, "sign", "--model", "m", "--out", str(source), str(source / "coffee.jpg"))
    assert first.exit_code == 0, first.output
    assert (source / "coffee.jpg").read_bytes() == original
    assert (source / "coffee-signed.jpg").read_bytes() != original

    # The same run again is a replay: the same record, and the same bytes written again.
    again = run(runner, settings, "sign", "--model", "m", "--out", str(source), str(source / "coffee.jpg"))
    assert again.exit_code == 0, again.output
    assert records(settings) == 1
    other = run(runner, settings, "sign", "--model", "m2", "--out", str(source), str(source / "coffee.jpg"))
    assert other.exit_code == 1
    assert "--overwrite" in other.output
    assert records(settings) == 1
    replaced = run(runner, settings, "sign", "--model", "m2", "--overwrite", str(source / "coffee.jpg"))
    assert replaced.exit_code == 0, replaced.output
    assert records(settings) == 2

    # rocket.jpg's output would be the other input: refused even when asked, rocket-signed.jpg signed.
    (source / "rocket-signed.jpg").write_bytes(fixture_bytes("chelsea.jpg"))
    inputs = [str(source / "rocket.jpg"), str(source / "rocket-signed.jpg")]
    clash = run(runner, settings, "sign", "--model", "m", "--overwrite", *inputs)
    assert clash.exit_code == 1
    assert "is one of the inputs" in clash.output
    assert (source / "rocket-signed.jpg").read_bytes() == fixture_bytes("chelsea.jpg")
    assert (source / "rocket-signed-signed.jpg").exists()
    assert records(settings) == 3


def test_apikey_create_prints_a_working_key_once(runner: CliRunner, settings: Settings) -> None:
    from provenance import db
    from provenance.apikeys import authenticate

    created = run(runner, settings, "apikey", "create", "--scope", "sign,read")
    token = created.output.strip()
    with db.open_database(settings.database) as connection:
        assert authenticate(connection, token).scopes == {"sign", "read"}
        stored = connection.execute("SELECT key_hash FROM api_keys").fetchone()[0]
    assert token not in stored
    bad = runner.invoke(main, ["--data-dir", str(settings.data_dir), "apikey", "create", "--scope", "root"])
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
    result = run(runner, settings, "index", "rebuild", "--threads", "2")
    assert result.exit_code == 0
    assert "indexed 1 records" in result.output
    assert (settings.index_directory / "fingerprints.npz").exists()
    refused = run(runner, settings, "index", "rebuild", "--threads", "0")
    assert refused.exit_code == 2 and "--threads" in refused.output


def record_count(settings: Settings) -> int:
    from provenance import db

    with db.open_database(settings.database) as connection:
        return connection.execute("SELECT count(*) FROM records").fetchone()[0]


def test_rerunning_an_interrupted_bulk_sign_does_not_duplicate_records(
    runner: CliRunner, settings: Settings, tmp_path: Path
) -> None:
    sources = tmp_path / "gen"
    sources.mkdir()
    for name in ("coffee", "rocket", "chelsea"):
        (sources / f"{name}.jpg").write_bytes(fixture_bytes(f"{name}.jpg"))
    out = tmp_path / "signed"
    files = [str(sources / f"{name}.jpg") for name in ("coffee", "rocket", "chelsea")]
    # The first run died after registering two files and writing only the first one's output.
    first = run(runner, settings, "sign", "--model", "m", "--out", str(out), "--json", *files[:2])
    first_lines = [json.loads(line) for line in first.output.splitlines()]
    written = Path(first_lines[0]["output"]).read_bytes()
    Path(first_lines[1]["output"]).unlink()

    again = run(runner, settings, "sign", "--model", "m", "--out", str(out), "--json", *files)
    assert again.exit_code == 0, again.output
    lines = [json.loads(line) for line in again.output.splitlines()]
    assert [line["generation_id"] for line in lines[:2]] == [line["generation_id"] for line in first_lines]
    assert [line["replayed"] for line in lines] == [True, True, False]
    assert Path(lines[0]["output"]).read_bytes() == written
    assert Path(lines[1]["output"]).exists()
    assert record_count(settings) == 3

    other_model = run(runner, settings, "sign", "--model", "m2", "--out", str(tmp_path / "o2"), files[0])
    assert other_model.exit_code == 0
    assert record_count(settings) == 4


def verify_json(runner: CliRunner, settings: Settings, *paths: str) -> list[dict]:
    result = run(runner, settings, "verify", "--json", *paths)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_rotated_and_revoked_keys(runner: CliRunner, settings: Settings, tmp_path: Path) -> None:
    def sign_one(name: str) -> dict:
        out = tmp_path / name
        result = run(
            runner, settings, "sign", "--model", "m", "--out", str(out), "--json", str(FIXTURES / name)
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    first = sign_one("coffee.jpg")
    rotated = run(runner, settings, "keys", "rotate")
    assert rotated.exit_code == 0, rotated.output
    second = sign_one("rocket.jpg")
    listed = run(runner, settings, "keys", "list", "--json").output
    signers = [json.loads(line) for line in listed.splitlines()]
    assert sorted(s["status"] for s in signers) == ["current", "retired"]
    old_serial = next(s["serial"] for s in signers if s["status"] == "retired")

    results = verify_json(runner, settings, first["output"], second["output"])
    assert [r["verdict"] for r in results] == ["authentic", "authentic"]
    assert [r["c2pa"]["signed_by_us"] for r in results] == [True, True]
    assert [r["c2pa"]["signer_status"] for r in results] == ["retired", "current"]
    signed_at = datetime.fromisoformat(results[0]["c2pa"]["signed_at"])

    later = (signed_at + timedelta(minutes=1)).isoformat()
    assert run(runner, settings, "keys", "revoke", old_serial, "--from", later).exit_code == 0
    still = verify_json(runner, settings, first["output"])[0]
    assert (still["verdict"], still["c2pa"]["signed_by_us"], still["c2pa"]["signer_status"]) == (
        "authentic",
        True,
        "revoked",
    )

    earlier = (signed_at - timedelta(minutes=1)).isoformat()
    assert run(runner, settings, "keys", "revoke", old_serial, "--from", earlier).exit_code == 0
    cut_off, unaffected = verify_json(runner, settings, first["output"], second["output"])
    assert cut_off["verdict"] == "matched"  # its pixels are still ours; its signature no longer is
    assert cut_off["c2pa"]["signed_by_us"] is False
    assert cut_off["c2pa"]["signer_status"] == "revoked"
    assert cut_off["c2pa"]["generation_id"] is None
    assert cut_off["c2pa"]["claimed_generation_id"] == first["generation_id"]
    assert unaffected["verdict"] == "authentic"


def test_signing_with_a_revoked_key_is_refused(runner: CliRunner, settings: Settings, tmp_path: Path) -> None:
    run(runner, settings, "sign", "--model", "m", "--out", str(tmp_path / "a"), str(FIXTURES / "coffee.jpg"))
    serial = json.loads(run(runner, settings, "keys", "list", "--json").output)["serial"]
    assert run(runner, settings, "keys", "revoke", serial, "--from", "2020-01-01T00:00:00Z").exit_code == 0
    refused = runner.invoke(
        main, ["--data-dir", str(settings.data_dir), "sign", "--model", "m", str(FIXTURES / "rocket.jpg")]
    )
    assert refused.exit_code == 3
    assert "revoked" in refused.output and "keys rotate" in refused.output


def test_keys_init_force_refuses_to_orphan_signed_images(
    runner: CliRunner, settings: Settings, tmp_path: Path
) -> None:
    chain = settings.cert_chain.read_bytes()
    run(runner, settings, "sign", "--model", "m", "--out", str(tmp_path / "a"), str(FIXTURES / "coffee.jpg"))
    refused = runner.invoke(main, ["--data-dir", str(settings.data_dir), "keys", "init", "--force"])
    assert refused.exit_code == 1
    assert "keys rotate" in refused.output
    assert settings.cert_chain.read_bytes() == chain


def test_keys_revoke_and_rotate_report_bad_input(
    runner: CliRunner, settings: Settings, tmp_path: Path
) -> None:
    base = ["--data-dir", str(settings.data_dir), "keys"]
    assert runner.invoke(main, [*base, "revoke", "1", "--from", "yesterday"]).exit_code == 2
    unknown = runner.invoke(main, [*base, "revoke", "1", "--from", "2026-01-01"])
    assert unknown.exit_code == 1 and "no signing certificate" in unknown.output
    not_pem = tmp_path / "chain.pem"
    not_pem.write_text("not a certificate")
    assert runner.invoke(main, [*base, "rotate", "--chain", str(not_pem)]).exit_code == 2
    for name in ("intermediate.key",):
        (settings.keys_directory / name).unlink()
    no_intermediate = runner.invoke(main, [*base, "rotate"])
    assert no_intermediate.exit_code == 2 and "--chain" in no_intermediate.output


@pytest.mark.slow
def test_a_bulk_sign_killed_mid_run_and_run_again_registers_each_file_once(
    settings: Settings, tmp_path: Path
) -> None:
    sources = tmp_path / "gen"
    sources.mkdir()
    files = []
    for i in range(12):
        path = sources / f"{i:02}.jpg"
        path.write_bytes(transforms.resize(fixture_bytes("coffee.jpg"), 0.5 + i / 40))
        files.append(str(path))
    command = [sys.executable, "-m", "provenance", "--data-dir", str(settings.data_dir), "sign"]
    command += ["--model", "m", "--out", str(tmp_path / "signed"), "--json", *files]
    unbuffered = {**os.environ, "PYTHONUNBUFFERED": "1"}  # each line as soon as its file is done
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL}
    with subprocess.Popen(command, env=unbuffered, **pipes) as process:
        assert process.stdout is not None
        printed = [process.stdout.readline() for _ in range(3)]
        os.kill(process.pid, signal.SIGKILL)  # mid-run: a record after the third may be committed, unprinted
    assert all(printed)
    registered_before = record_count(settings)
    assert 3 <= registered_before < len(files)

    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    lines = [json.loads(line) for line in again.stdout.splitlines()]
    assert sum(line["replayed"] for line in lines) == registered_before
    assert record_count(settings) == len(files)
    assert len({line["generation_id"] for line in lines}) == len(files)


def test_sign_never_writes_into_an_input_by_another_name_nor_twice_to_one_output(
    runner: CliRunner, settings: Settings, tmp_path: Path
) -> None:
    """A hard link is another path to the same file, and two inputs of one name would share
    an output in --out: the second would silently replace the first's."""
    keep = tmp_path / "keep.jpg"
    keep.write_bytes(fixture_bytes("rocket.jpg"))
    (tmp_path / "coffee.jpg").write_bytes(fixture_bytes("coffee.jpg"))
    os.link(keep, tmp_path / "coffee-signed.jpg")
    coffee = str(tmp_path / "coffee.jpg")
    linked = run(runner, settings, "sign", "--model", "m", "--overwrite", coffee, str(keep))
    assert linked.exit_code == 1 and "is one of the inputs" in linked.output
    assert keep.read_bytes() == fixture_bytes("rocket.jpg")

    for folder, picture in (("x", "chelsea.jpg"), ("y", "astronaut.jpg")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.jpg").write_bytes(fixture_bytes(picture))
    out = tmp_path / "out"
    same = run(
        runner, settings, "sign", "--model", "m", "--overwrite", "--out", str(out),
        str(tmp_path / "x" / "a.jpg"), str(tmp_path / "y" / "a.jpg"),
    )  # fmt: skip
    assert same.exit_code == 1 and "another input of this run" in same.output
    assert len(list(out.iterdir())) == 1
