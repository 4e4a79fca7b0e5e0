"""The signers record: rotation keeps old certificates ours; revocation cuts them off from a time."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provenance import db
from provenance.devkeys import KeyFiles, generate_dev_keys, rotate_dev_leaf
from provenance.signers import CURRENT, RETIRED, REVOKED, SignerCache, SignerStore, leaf_certificate

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def chains(tmp_path: Path) -> tuple[bytes, bytes]:
    keys = tmp_path / "keys"
    files = KeyFiles.under(keys, keys / "chain.pem", keys / "signer.key", keys / "root.pem")
    generate_dev_keys(files)
    first = files.chain.read_bytes()
    return first, rotate_dev_leaf(files)


@pytest.fixture
def store(tmp_path: Path) -> SignerStore:
    return SignerStore(db.open_database(tmp_path / "s.sqlite3"))


def serial(chain: bytes) -> str:
    return str(leaf_certificate(chain).serial_number)


def test_rotation_retires_the_old_certificate_and_both_stay_ours(store: SignerStore, tmp_path: Path) -> None:
    old, new = chains(tmp_path)
    assert store.enroll(old).status == CURRENT
    current, retired = store.rotate(old, new)
    assert current.serial == serial(new) and current.status == CURRENT
    assert [s.serial for s in retired] == [serial(old)]
    assert store.by_serial(serial(old)).status == RETIRED
    assert all(s.ours_at(NOW) and s.ours_at(None) for s in store.all())
    assert store.enroll(old).status == RETIRED  # a host still on the old key does not undo the rotation


def test_revocation_cuts_signatures_off_from_its_time_only(store: SignerStore, tmp_path: Path) -> None:
    old, _ = chains(tmp_path)
    store.enroll(old)
    revoked = store.revoke(serial(old), NOW)
    assert revoked.status == REVOKED and revoked.revoked_from == "2026-12-02T12:00:00+00:00"
    assert revoked.ours_at(NOW - timedelta(seconds=1))
    assert not revoked.ours_at(NOW)
    assert not revoked.ours_at(None)  # a signature of unknown time is not vouched for
    with pytest.raises(ValueError):
        store.revoke(serial(old), NOW + timedelta(days=1))  # later would make signatures ours again
    assert not store.revoke(serial(old), NOW - timedelta(days=1)).ours_at(NOW - timedelta(hours=1))
    with pytest.raises(LookupError):
        store.revoke("12345", NOW)


def test_a_revoked_certificate_cannot_be_rotated_back_in(store: SignerStore, tmp_path: Path) -> None:
    old, new = chains(tmp_path)
    store.rotate(old, new)
    store.revoke(serial(old), NOW)
    with pytest.raises(ValueError):
        store.rotate(new, old)
    assert store.by_serial(serial(new)).status == CURRENT


def test_a_process_sees_new_certificates_at_once_and_status_changes_within_the_refresh(
    store: SignerStore, tmp_path: Path
) -> None:
    old, new = chains(tmp_path)
    store.enroll(old)
    loads = []

    def load():
        loads.append(1)
        return store.all()

    cache = SignerCache(load, max_age=0.3)
    assert cache.find(serial(old)).status == CURRENT
    store.rotate(old, new)
    assert cache.find(serial(new)).status == CURRENT  # unknown serial: reloaded at once
    store.revoke(serial(old), NOW)
    assert cache.find(serial(old)).status == RETIRED  # within the refresh time, as loaded
    assert cache.find("12345") is None
    time.sleep(0.35)
    assert cache.find(serial(old)).status == REVOKED
    assert len(loads) == 4
