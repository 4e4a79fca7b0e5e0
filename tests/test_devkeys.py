from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from provenance.devkeys import KeyFiles, generate_dev_keys, rotate_dev_leaf


def files_in(directory: Path) -> KeyFiles:
    return KeyFiles.under(
        directory, directory / "chain.pem", directory / "signer.key", directory / "root.pem"
    )


def test_private_keys_are_owner_only_and_the_leaf_has_the_c2pa_profile(tmp_path: Path) -> None:
    files = files_in(tmp_path)
    generate_dev_keys(files)
    for key in (files.signing_key, files.root_key, files.intermediate_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    leaf, intermediate = x509.load_pem_x509_certificates(files.chain.read_bytes())
    assert leaf.issuer == intermediate.subject
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    ekus = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION in ekus
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days > 365 * 5


def test_existing_keys_are_never_overwritten_without_force(tmp_path: Path) -> None:
    files = files_in(tmp_path)
    generate_dev_keys(files)
    before = files.signing_key.read_bytes()
    with pytest.raises(FileExistsError):
        generate_dev_keys(files)
    assert files.signing_key.read_bytes() == before
    generate_dev_keys(files, force=True)
    assert files.signing_key.read_bytes() != before


def test_rotation_issues_a_new_leaf_under_the_same_intermediate(tmp_path: Path) -> None:
    files = files_in(tmp_path)
    generate_dev_keys(files)
    old_leaf, intermediate = x509.load_pem_x509_certificates(files.chain.read_bytes())
    old_key = files.signing_key.read_bytes()
    root = files.root_certificate.read_bytes()
    chain = rotate_dev_leaf(files)
    assert files.chain.read_bytes() == chain
    new_leaf, same_intermediate = x509.load_pem_x509_certificates(chain)
    assert same_intermediate == intermediate and new_leaf.issuer == intermediate.subject
    assert new_leaf.serial_number != old_leaf.serial_number
    assert files.signing_key.read_bytes() != old_key
    assert stat.S_IMODE(files.signing_key.stat().st_mode) == 0o600
    assert files.root_certificate.read_bytes() == root
    assert not list(tmp_path.glob("*.new"))
