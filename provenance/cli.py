"""The `provenance` command: keys, API keys, signing, verification, index maintenance, serving."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from index import FingerprintIndex, FingerprintStore, IndexNotReady, MilvusIndex, one_thread_per_process
from provenance import __version__, db
from provenance.apikeys import SCOPES, create_api_key, parse_scopes
from provenance.config import Settings
from provenance.devkeys import KeyFiles, generate_dev_keys, rotate_dev_leaf
from provenance.errors import NotFound, ProvenanceError, SigningUnavailable
from provenance.idempotency import CLI_OWNER, IdempotencyKey, IdempotencyStore, request_sha256
from provenance.previews import ensure_secret
from provenance.records import RecordStore
from provenance.signers import Signer, SignerStore, utc_time

EXIT_ERROR, EXIT_USAGE, EXIT_DEPENDENCY = 1, 2, 3


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def _fail(message: str, code: int = EXIT_ERROR) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="provenance")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="PROVENANCE_DATA_DIR",
    help="Where the database, indexes and development keys live (env PROVENANCE_DATA_DIR).",
)
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None) -> None:
    """Sign AI-generated images with C2PA and verify suspect copies against our records."""
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)
    ctx.obj = dataclasses.replace(settings, data_dir=data_dir) if data_dir else settings


@main.group()
def keys() -> None:
    """Signing keys."""


def _key_files(settings: Settings) -> KeyFiles:
    return KeyFiles.under(
        settings.keys_directory, settings.cert_chain, settings.private_key, settings.trust_anchors
    )


def _signed_count(settings: Settings) -> int:
    store = settings.database
    if isinstance(store, Path) and not store.exists():  # no SQLite file yet: nothing signed
        return 0
    with contextlib.closing(db.open_database(settings.database)) as connection:
        return RecordStore(connection).count()


@keys.command("init")
@click.option(
    "--force", is_flag=True, help="Replace existing keys; refused once images are signed (use `keys rotate`)."
)
@click.option("--if-missing", is_flag=True, help="Succeed without changes when keys already exist.")
@click.pass_context
def keys_init(ctx: click.Context, force: bool, if_missing: bool) -> None:
    """Create a development root CA, intermediate and ES256 signing certificate.

    Example: provenance --data-dir data keys init
    """
    settings = _settings(ctx)
    files = _key_files(settings)
    signed = _signed_count(settings) if force and files.existing() else 0
    if signed:
        # A new root would leave every image signed so far chaining to a root nobody trusts.
        _fail(
            f"{signed} images were signed under the existing root and would stop verifying; "
            "use `provenance keys rotate` for a new signing certificate under the same root"
        )
    try:
        ensure_secret(settings.preview_key)  # kept as it is, even with --force: links are short-lived
    except (OSError, ValueError) as exc:
        _fail(f"cannot create the preview-link secret: {exc}")
    try:
        generate_dev_keys(files, force=force)
    except FileExistsError as exc:
        if if_missing:
            click.echo(f"keys already exist in {settings.keys_directory}; kept them")
            return
        _fail(f"keys already exist ({exc}); pass --force to replace them")
    click.echo(f"development keys written to {settings.keys_directory} (private keys mode 0600)")


def _signer_json(signer: Signer) -> dict[str, Any]:
    return {
        "serial": signer.serial,
        "status": signer.status,
        "revoked_from": signer.revoked_from,
        "subject": signer.subject,
        "not_after": signer.not_after,
        "fingerprint_sha256": signer.fingerprint,
        "added_at": signer.added_at,
    }


@keys.command("rotate")
@click.option(
    "--chain",
    "chain_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A new production chain (PEM, leaf first), already configured; default: a new development leaf.",
)
@click.pass_context
def keys_rotate(ctx: click.Context, chain_path: Path | None) -> None:
    """Sign with a new certificate from now on; the old one stays on record as ours (retired).

    Without --chain, a new development leaf is written under the same intermediate. With --chain,
    the operator's new chain (configured through PROVENANCE_CERT_CHAIN_PATH or the signer
    factory) is recorded. Restart the service to sign with it.

    Example: provenance keys rotate
    """
    settings = _settings(ctx)
    try:
        old = settings.cert_chain.read_bytes() if settings.cert_chain.exists() else None
        new = chain_path.read_bytes() if chain_path else rotate_dev_leaf(_key_files(settings))
        with contextlib.closing(db.open_database(settings.database)) as connection:
            current, retired = SignerStore(connection).rotate(old, new)
    except FileNotFoundError as exc:
        _fail(f"no development intermediate to issue a leaf ({exc.filename}); pass --chain", EXIT_USAGE)
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)
    for signer in retired:
        click.echo(f"retired {signer.serial} (its images stay ours)")
    click.echo(f"current {current.serial}; restart the service to sign with it")


@keys.command("revoke")
@click.argument("serial")
@click.option(
    "--from",
    "revoked_from",
    required=True,
    help="ISO 8601 time (UTC unless it names a zone) from which its signatures are not ours.",
)
@click.pass_context
def keys_revoke(ctx: click.Context, serial: str, revoked_from: str) -> None:
    """Mark a compromised signing certificate: what it signed from --from on is not ours.

    Example: provenance keys revoke 4137... --from 2026-11-30T08:00:00Z
    """
    try:
        when = utc_time(revoked_from)
    except ValueError:
        _fail(f"--from is not an ISO 8601 time: {revoked_from!r}", EXIT_USAGE)
    with contextlib.closing(db.open_database(_settings(ctx).database)) as connection:
        try:
            signer = SignerStore(connection).revoke(serial, when)
        except (LookupError, ValueError) as exc:
            _fail(str(exc.args[0]))
    click.echo(f"revoked {signer.serial} from {signer.revoked_from}")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per certificate.")
@click.pass_context
def keys_list(ctx: click.Context, as_json: bool) -> None:
    """Every signing certificate on record: serial, status, revoked-from time, subject.

    Example: provenance keys list --json
    """
    with contextlib.closing(db.open_database(_settings(ctx).database)) as connection:
        signers = SignerStore(connection).all()
    for signer in signers:
        line = _signer_json(signer)
        click.echo(json.dumps(line) if as_json else "  ".join(str(line[k]) for k in list(line)[:4]))


@main.group()
def apikey() -> None:
    """API keys."""


@apikey.command("create")
@click.option("--scope", "scopes", required=True, help=f"Comma-separated: {', '.join(SCOPES)}.")
@click.option("--name", default="", help="A label for the key's owner.")
@click.pass_context
def apikey_create(ctx: click.Context, scopes: str, name: str) -> None:
    """Create an API key and print it once (only its hash is stored).

    Example: provenance apikey create --scope sign,read --name generator
    """
    try:
        parsed = parse_scopes(scopes)
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)
    with db.open_database(_settings(ctx).database) as connection:
        click.echo(create_api_key(connection, parsed, name))


def _each_file(
    files: tuple[Path, ...], work: Callable[[Path], dict[str, Any]], as_json: bool, show_progress: bool
) -> int:
    """Run ``work`` per file, printing a JSON line or a text line each; returns the failure count."""
    failures = 0
    with click.progressbar(files, label="files", file=sys.stderr) if show_progress else _plain(files) as bar:
        for path in bar:
            try:
                line = {"file": str(path), **work(path)}
            except (ProvenanceError, OSError) as exc:
                failures += 1
                detail = exc.detail if isinstance(exc, ProvenanceError) else exc.strerror
                click.echo(f"error: {path}: {detail}", err=True)
                continue
            click.echo(json.dumps(line) if as_json else "  ".join(str(v) for v in line.values()))
    return failures


class _plain:
    """A progress bar that shows nothing."""

    def __init__(self, items: tuple[Path, ...]) -> None:
        self.items = items

    def __enter__(self) -> tuple[Path, ...]:
        return self.items

    def __exit__(self, *_: object) -> None:
        return None


@main.command()
@click.option("--model", required=True, help="The generator model's name, recorded in the manifest.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Directory for signed files.")
@click.option("--public", "public_json", default="{}", help="Public metadata as a JSON object.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per file.")
@click.option("--overwrite", is_flag=True, help="Replace existing NAME-signed files (never an input).")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def sign(
    ctx: click.Context,
    model: str,
    out: Path | None,
    public_json: str,
    as_json: bool,
    overwrite: bool,
    files: tuple[Path, ...],
) -> None:
    """Sign and register images; writes NAME-signed.EXT beside each file, or into --out.

    A file whose output would replace one of the inputs, or an existing file without
    --overwrite, is refused before it is registered.

    Example: provenance sign --model diffusion-xl --out signed/ --json a.png b.jpg
    """
    from provenance.registry import GenerationRequest, parse_metadata
    from provenance.services import build_registry

    settings = _settings(ctx)
    try:
        public = parse_metadata(public_json, "--public")
        request = GenerationRequest.from_json({"model": model, "public": public})
        # No index: this process only writes; servers index the new records as they catch up.
        with contextlib.closing(db.open_database(settings.database)) as connection:
            registry = build_registry(settings, connection)
    except SigningUnavailable as exc:
        _fail(exc.detail, EXIT_DEPENDENCY)
    except ProvenanceError as exc:
        _fail(exc.detail, EXIT_USAGE)
    if out:
        out.mkdir(parents=True, exist_ok=True)

    # Files, not paths: a hard link or another spelling of a name (case, bind mounts) is the same file.
    inputs = {_file_identity(path) for path in files if path.exists()}
    written: set[Path] = set()

    def sign_one(path: Path) -> dict[str, Any]:
        target = (out or path.parent) / f"{path.stem}-signed{path.suffix}"
        if target.exists() and _file_identity(target) in inputs:
            raise FileExistsError(errno.EEXIST, f"{target} is one of the inputs; it is never overwritten")
        if target.resolve() in written:
            raise FileExistsError(errno.EEXIST, f"{target} was written for another input of this run")
        exists = FileExistsError(errno.EEXIST, f"{target} exists; pass --overwrite to replace it")
        data = path.read_bytes()
        # Keyed by what is signed, so re-running a bulk run that died answers the files it had
        # registered with their records (and rewrites their outputs) instead of adding new ones.
        key = IdempotencyKey(CLI_OWNER, request_sha256(data, request.canonical_json(), path.name))
        with db.connect(settings.database) as connection:
            replay = IdempotencyStore(connection).find(key, datetime.now(UTC)) is not None
            # Checked before registering, so that a refused file leaves no record behind.
            if target.exists() and not (overwrite or replay):
                raise exists
            registration = registry.register(connection, data, request, path.name, key)
        # A replay writes again what it wrote before; anything else there is another file.
        if replay and target.exists() and not overwrite and target.read_bytes() != registration.signed:
            raise exists
        target.write_bytes(registration.signed)
        written.add(target.resolve())
        return {
            "generation_id": registration.record.generation_id,
            "output": str(target),
            "replayed": registration.replayed,
        }

    if _each_file(files, sign_one, as_json, show_progress=len(files) > 3 and not as_json):
        sys.exit(EXIT_ERROR)


def _file_identity(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_dev, status.st_ino


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON line per file, as POST /v1/verify answers.")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def verify(ctx: click.Context, as_json: bool, files: tuple[Path, ...]) -> None:
    """Verify suspect images; exits 0 whatever the verdict (non-zero only for unreadable files).

    Example: provenance verify --json suspect.jpg
    """
    import time

    from provenance.rendering import preview_path, verification_json
    from provenance.services import build_verifier, load_index, preview_links

    settings = _settings(ctx)
    with contextlib.closing(db.open_database(settings.database)) as connection:
        verifier = build_verifier(settings, load_index(settings, connection))
    links = preview_links(settings)

    def preview_url(generation_id: str) -> str | None:
        return None if links is None else preview_path(generation_id, links.issue(generation_id))

    def verify_one(path: Path) -> dict[str, Any]:
        started = time.perf_counter()
        with db.connect(settings.database) as connection:
            result = verifier.verify(connection, path.read_bytes())
        elapsed_ms = (time.perf_counter() - started) * 1000
        # The operator, on the machine that holds the store, sees everything.
        body = verification_json(
            result, private=True, elapsed_ms=elapsed_ms, disclose_all=True, preview_url=preview_url
        )
        if as_json:
            return body
        best = body["matches"][0] if body["matches"] else None
        return {
            "verdict": body["verdict"],
            "generation_id": best and best["generation_id"],
            "confidence": best and best["confidence"],
        }

    if _each_file(files, verify_one, as_json, show_progress=False):
        sys.exit(EXIT_ERROR)


@main.group()
def record() -> None:
    """Generation records."""


@record.command("delete")
@click.option("--json", "as_json", is_flag=True, help="Print the tombstone as JSON.")
@click.argument("generation_id")
@click.pass_context
def record_delete(ctx: click.Context, as_json: bool, generation_id: str) -> None:
    """Delete a generation's record, preview, manifest store and fingerprints; keep a tombstone.

    Running servers drop it from their indexes before their next search; the saved index file
    is refreshed here too.

    Example: provenance record delete 0b7e3c9a-5d2f-4f21-9a53-0c1d2e3f4a5b
    """
    from provenance.deletion import delete_generation
    from provenance.services import index_file, load_index, save_index

    settings = _settings(ctx)
    with contextlib.closing(db.open_database(settings.database)) as connection:
        try:
            tombstone = delete_generation(connection, generation_id)
        except NotFound as exc:
            _fail(exc.detail)
        if settings.milvus_uri or index_file(settings).exists():
            save_index(settings, load_index(settings, connection))
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(tombstone)))
    else:
        click.echo(f"deleted {tombstone.generation_id} at {tombstone.deleted_at}; a tombstone remains")


@main.group("index")
def index_group() -> None:
    """The indexes (FAISS in each host, or Milvus for all of them): a cache of the store."""


@index_group.command("rebuild")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=os.cpu_count() or 1,
    show_default="all cores",
    help="threads that assign descriptors to the FAISS index's lists",
)
@click.pass_context
def index_rebuild(ctx: click.Context, threads: int) -> None:
    """Rebuild the indexes from the record store: the saved FAISS file, or with
    PROVENANCE_MILVUS_URI fresh Milvus collections that replace the old ones when complete.

    Example: provenance index rebuild --threads 4
    """
    from provenance.services import index_file

    settings = _settings(ctx)
    with db.open_database(settings.database) as connection:
        store = FingerprintStore(connection)
        if settings.milvus_uri:
            try:
                shared = MilvusIndex.rebuild_from(store, settings.milvus_uri, settings.milvus_collection)
            except IndexNotReady as exc:
                _fail(str(exc), EXIT_DEPENDENCY)
            click.echo(
                f"indexed {shared.records} records into Milvus at {settings.milvus_uri}"
                f" ({settings.milvus_collection}_*)"
            )
            return
        one_thread_per_process()  # OpenCV's pool is not needed; FAISS's gets --threads below
        index = FingerprintIndex.rebuild_from(store, threads)
    index.save(index_file(settings))
    click.echo(f"indexed {index.records} records; {index.memory_bytes()} bytes -> {index_file(settings)}")


@main.group("db")
def db_group() -> None:
    """The record store (SQLite file or PostgreSQL database)."""


@db_group.command("migrate")
@click.pass_context
def db_migrate(ctx: click.Context) -> None:
    """Bring the store's schema up to date (serve does this at start; safe from several hosts at once).

    Example: PROVENANCE_DATABASE_URL=postgresql://provenance@db/provenance provenance db migrate
    """
    with contextlib.closing(db.connect(_settings(ctx).database)) as connection:
        applied = db.migrate(connection)
    click.echo(f"applied {', '.join(applied)}" if applied else "the schema is up to date")


@db_group.command("copy")
@click.option("--to", "target_url", required=True, help="The PostgreSQL store: postgresql://user@host/db.")
@click.pass_context
def db_copy(ctx: click.Context, target_url: str) -> None:
    """Copy the SQLite store into PostgreSQL (resumable: run it again after an interruption).

    Example: provenance --data-dir data db copy --to postgresql://provenance@db/provenance
    """
    from provenance.engines import is_postgres
    from provenance.storecopy import CopyMismatch, copy_store

    source_path = _settings(ctx).database
    if is_postgres(source_path):
        _fail("the source is already PostgreSQL; db copy reads a SQLite store", EXIT_USAGE)
    if not is_postgres(target_url):
        _fail(f"--to must be a postgresql:// URL, got {target_url!r}", EXIT_USAGE)
    if not Path(source_path).is_file():
        _fail(f"no SQLite store at {source_path}")
    with contextlib.closing(db.open_database(source_path)) as source:
        with contextlib.closing(db.open_database(target_url)) as target:
            try:
                copied = copy_store(source, target)
            except CopyMismatch as exc:
                _fail(f"the copy is incomplete: {exc}")
    for table in copied:
        click.echo(f"{table.table}: {table.target_rows} rows ({table.copied} copied now)")
    click.echo("row counts match; next: PROVENANCE_DATABASE_URL=<the URL> provenance index rebuild")


@main.command()
@click.option("--host", help="Bind address (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 8080).")
@click.option("--workers", type=int, help="Worker processes (default 2).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the service under gunicorn.

    Example: provenance serve --port 8080 --workers 2
    """
    from provenance.server import run_server

    given = {k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}
    run_server(dataclasses.replace(_settings(ctx), **given))  # type: ignore[arg-type]
