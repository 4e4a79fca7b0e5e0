"""Settings: one frozen dataclass, defaults for a local embedded install; the only reader of os.environ."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

ENV_PREFIX = "PROVENANCE_"
_SQLITE_SCHEME = "sqlite://"  # sqlite:///srv/store.sqlite3 names /srv/store.sqlite3
_DATABASE_SCHEMES = ("postgresql://", "postgres://", _SQLITE_SCHEME + "/")
# Who may see a record's preview, id and public fields in a verification answer without scope
# "read": the caller whose image matched it (matched), nobody without an API key (none), anyone
# (all). See the README's "Privacy".
DISCLOSURES = ("matched", "none", "all")
_COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}")  # Milvus's rule for collection names


@dataclass(frozen=True)
class Settings:
    """Every knob of the service. Paths left as None derive from ``data_dir``."""

    data_dir: Path = Path("data")
    db_path: Path | None = None
    # postgresql://user@host/db: a store shared by several API hosts; sqlite:///path, or unset: the
    # SQLite file at db_path.
    database_url: str | None = None
    index_dir: Path | None = None
    # http://host:19530 of a Milvus server or cluster: the index lives there, shared by every API
    # host, instead of in each host's memory and index_dir (see the README's "Scaling out").
    milvus_uri: str | None = None
    # The prefix of this service's Milvus collections (<prefix>_pdq, _local, _cursor).
    milvus_collection: str = "provenance"
    # Signing credentials: a PEM chain (leaf first, then intermediates) and a PKCS#8 key.
    cert_chain_path: Path | None = None
    private_key_path: Path | None = None
    trust_anchors_path: Path | None = None
    # "module:attribute" naming a factory that returns a provenance.signing.RawSigner; when set,
    # the key never enters this process (KMS/HSM), and private_key_path is ignored.
    signer_factory: str | None = None
    tsa_url: str | None = None
    generator_name: str = "provenance-service"
    max_upload_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 100_000_000
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    # Threads per worker process: each waits on one client's request while it arrives (a slow
    # upload holds one), so enough of them keep slow clients from starving the others.
    threads: int = 32
    # Verifications and registrations computed at once per process: more only share the cores
    # and hold more decoded images in memory (up to max_pixels each).
    compute_slots: int = 1
    # A request body must arrive at this many bytes a second on average (0: no minimum) once
    # upload_grace_seconds have passed, or the request ends in a 408 and frees its thread.
    upload_min_rate: int = 1024
    upload_grace_seconds: int = 10
    # Where worker processes leave their Prometheus values for /metrics to sum; serve makes a
    # fresh one per instance when unset. Unset outside serve: metrics of this process alone.
    metrics_dir: Path | None = None
    thumbnail_side: int = 512
    # Verifications per minute and client (0: unlimited): by address without a key, by key with one.
    verify_per_minute: int = 30
    verify_per_minute_with_key: int = 600
    # Reverse proxies in front of the service that append the client's address to X-Forwarded-For.
    proxy_hops: int = 0
    # How long a registration's Idempotency-Key answers retries with the first answer.
    idempotency_hours: int = 24
    disclosure: str = "matched"
    # Lifetime of the preview links a verification answer carries, in seconds.
    preview_link_seconds: int = 600
    # The secret preview links are signed with (created by `keys init`, or at start when missing).
    preview_key_path: Path | None = None

    def __post_init__(self) -> None:
        if self.disclosure not in DISCLOSURES:
            raise ValueError(
                f"{ENV_PREFIX}DISCLOSURE must be one of {', '.join(DISCLOSURES)}, got {self.disclosure!r}"
            )
        if self.preview_link_seconds < 1:
            raise ValueError(
                f"{ENV_PREFIX}PREVIEW_LINK_SECONDS must be at least 1, got {self.preview_link_seconds}"
            )
        if self.database_url and not self.database_url.startswith(_DATABASE_SCHEMES):
            raise ValueError(
                f"{ENV_PREFIX}DATABASE_URL must be postgresql://... or sqlite:///...: {self.database_url!r}"
            )

        if not _COLLECTION_NAME.fullmatch(self.milvus_collection):
            raise ValueError(
                f"{ENV_PREFIX}MILVUS_COLLECTION must be letters, digits and underscores, not starting"
                f" with a digit, got {self.milvus_collection!r}"
            )

    def _path(self, given: Path | None, *default: str) -> Path:
        return Path(given) if given is not None else Path(self.data_dir).joinpath(*default)

    @property
    def database(self) -> Path | str:
        """The record store: a SQLite file's path, or a PostgreSQL URL."""
        url = self.database_url
        if url and url.startswith(_SQLITE_SCHEME):
            return Path(url.removeprefix(_SQLITE_SCHEME))
        return url or self._path(self.db_path, "provenance.sqlite3")

    @property
    def index_directory(self) -> Path:
        return self._path(self.index_dir, "index")

    @property
    def rate_limits(self) -> Path | str:
        """With PostgreSQL the allowances are shared by every host, in the store's database."""
        store = self.database
        return store if isinstance(store, str) else Path(self.data_dir) / "ratelimit.sqlite3"

    @property
    def keys_directory(self) -> Path:
        return Path(self.data_dir) / "keys"

    @property
    def preview_key(self) -> Path:
        return self._path(self.preview_key_path, "keys", "preview-links.key")

    @property
    def cert_chain(self) -> Path:
        return self._path(self.cert_chain_path, "keys", "chain.pem")

    @property
    def private_key(self) -> Path:
        return self._path(self.private_key_path, "keys", "signer.key")

    @property
    def trust_anchors(self) -> Path:
        return self._path(self.trust_anchors_path, "keys", "root.pem")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Settings from ``PROVENANCE_<FIELD>`` variables (e.g. PROVENANCE_DATA_DIR)."""
        source = os.environ if environ is None else environ
        given: dict[str, object] = {}
        for spec in fields(cls):
            raw = source.get(ENV_PREFIX + spec.name.upper())
            if raw is None or raw == "":
                continue
            given[spec.name] = _parse(spec.name, str(spec.type), raw)
        return cls(**given)  # type: ignore[arg-type]


def _parse(name: str, type_name: str, raw: str) -> object:
    if "Path" in type_name:
        return Path(raw)
    if type_name.startswith("int"):
        try:
            return int(raw)
        except ValueError as exc:
            raise ValueError(f"{ENV_PREFIX}{name.upper()} must be an integer, got {raw!r}") from exc
    return raw


def setting_names() -> list[str]:
    """The public setting names, for documentation checks."""
    return [spec.name for spec in fields(Settings)]
