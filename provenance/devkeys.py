"""Development signing credentials: a root CA, an intermediate and an ES256 signing leaf.

The profile is what c2pa-rs 0.91 demands (see shared notes): AKI on every certificate, SKI on
the CAs, leaf keyUsage digitalSignature (critical), EKU emailProtection + documentSigning +
C2PA claimSigning. We sign without a timestamp authority, so a signature is only valid while the
leaf is: the leaf lives for years (production certificates come from configuration).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

EKU_DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
EKU_C2PA_CLAIM_SIGNING = x509.ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
ORGANIZATION = "Provenance Service (development)"
_YEAR = dt.timedelta(days=365)


@dataclass(frozen=True)
class KeyFiles:
    root_certificate: Path
    root_key: Path
    intermediate_certificate: Path
    intermediate_key: Path
    chain: Path
    signing_key: Path

    @classmethod
    def under(cls, directory: Path, chain: Path, signing_key: Path, root: Path) -> KeyFiles:
        return cls(
            root,
            directory / "root.key",
            directory / "intermediate.pem",
            directory / "intermediate.key",
            chain,
            signing_key,
        )

    def existing(self) -> list[Path]:
        return [p for p in vars(self).values() if p.exists()]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, signer: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signer,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not signer,
        crl_sign=not signer,
        encipher_only=False,
        decipher_only=False,
    )


def _certificate(
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    years: int,
    path_length: int | None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    is_ca = path_length is not None
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.subject if issuer else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + years * _YEAR)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length), critical=True)
        .add_extension(_key_usage(signer=not is_ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if not is_ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(
                [
                    ExtendedKeyUsageOID.EMAIL_PROTECTION,
                    EKU_DOCUMENT_SIGNING,
                    EKU_C2PA_CLAIM_SIGNING,
                ]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)  # O_CREAT's mode does not apply to a file that already existed


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def rotate_dev_leaf(files: KeyFiles) -> bytes:
    """Replace the signing leaf with a new one under the same development intermediate.

    The old leaf's images keep verifying: they carry their own chain up to the same root. The old
    private key is overwritten; retired certificates only ever need to be recognised, never used.
    Returns the new chain PEM.

    Raises:
        FileNotFoundError: there is no development intermediate here (production keys).
    """
    intermediate = x509.load_pem_x509_certificate(files.intermediate_certificate.read_bytes())
    intermediate_key = serialization.load_pem_private_key(files.intermediate_key.read_bytes(), None)
    assert isinstance(intermediate_key, ec.EllipticCurvePrivateKey), "development keys are P-256"
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(
        "Provenance Dev Signer", leaf_key, intermediate, intermediate_key, years=10, path_length=None
    )
    chain = _pem(leaf) + _pem(intermediate)
    # Both are written beside the old pair first, then renamed into place: a crash leaves the old
    # pair, or (between the renames) a key that does not match its chain, which fails signing
    # loudly until the next `keys rotate`; never a half-written file.
    new_key = files.signing_key.with_name(files.signing_key.name + ".new")
    new_chain = files.chain.with_name(files.chain.name + ".new")
    _write_private(new_key, leaf_key)
    _write_public(new_chain, chain)
    new_key.replace(files.signing_key)
    new_chain.replace(files.chain)
    return chain


def generate_dev_keys(files: KeyFiles, *, force: bool = False) -> None:
    """Write a fresh development chain; refuses to overwrite unless ``force``.

    Raises:
        FileExistsError: some of the files exist and ``force`` is false.
    """
    if files.existing() and not force:
        raise FileExistsError(", ".join(str(p) for p in files.existing()))
    root_key, intermediate_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in "abc")
    root = _certificate("Provenance Dev Root CA", root_key, None, root_key, years=20, path_length=1)
    intermediate = _certificate(
        "Provenance Dev Intermediate CA", intermediate_key, root, root_key, years=15, path_length=0
    )
    leaf = _certificate(
        "Provenance Dev Signer", leaf_key, intermediate, intermediate_key, years=10, path_length=None
    )
    _write_private(files.root_key, root_key)
    _write_private(files.intermediate_key, intermediate_key)
    _write_private(files.signing_key, leaf_key)
    _write_public(files.root_certificate, _pem(root))
    _write_public(files.intermediate_certificate, _pem(intermediate))
    _write_public(files.chain, _pem(leaf) + _pem(intermediate))
