"""Signing credentials and C2PA signing: key file in-process, or a callback signer for KMS/HSM keys."""

from __future__ import annotations

import importlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from provenance.config import Settings
from provenance.errors import InvalidImage, SigningUnavailable

_ALGORITHMS = {
    "es256": c2pa.C2paSigningAlg.ES256,
    "es384": c2pa.C2paSigningAlg.ES384,
    "es512": c2pa.C2paSigningAlg.ES512,
    "ps256": c2pa.C2paSigningAlg.PS256,
    "ed25519": c2pa.C2paSigningAlg.ED25519,
}
_CURVES = {
    "secp256r1": ("es256", hashes.SHA256()),
    "secp384r1": ("es384", hashes.SHA384()),
    "secp521r1": ("es512", hashes.SHA512()),
}


class RawSigner(Protocol):
    """Signs the COSE Sig_structure bytes; the private key may live anywhere (KMS, HSM)."""

    algorithm: str  # one of es256, es384, es512, ps256, ed25519
    certificate_chain_pem: str  # leaf first, then intermediates

    def sign(self, data: bytes) -> bytes: ...


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningUnavailable(
            f"cannot read the {what} at {path} ({exc.strerror}); run `provenance keys init` "
            "for development keys or configure production ones"
        ) from exc


def _private_key(pem: bytes) -> Any:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningUnavailable(f"the signing key is not an unencrypted PEM key: {exc}") from exc


def _algorithm_of(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _CURVES:
        return _CURVES[key.curve.name][0]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise SigningUnavailable(f"unsupported signing key type {type(key).__name__}")


class KeyFileSigner:
    """A RawSigner over a PEM key file, signing in this process through the callback interface."""

    def __init__(self, chain_path: Path, key_path: Path) -> None:
        self.certificate_chain_pem = _read(chain_path, "certificate chain").decode()
        self._key = _private_key(_read(key_path, "signing key"))
        self.algorithm = _algorithm_of(self._key)

    def sign(self, data: bytes) -> bytes:
        key = self._key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            digest = _CURVES[key.curve.name][1]
            r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
            size = (key.curve.key_size + 7) // 8
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")  # COSE wants raw r||s
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return bytes(key.sign(data, pss, hashes.SHA256()))


def key_file_signer(settings: Settings) -> RawSigner:
    """Factory for ``signer_factory = "provenance.signing:key_file_signer"``."""
    return KeyFileSigner(settings.cert_chain, settings.private_key)


def load_factory(spec: str) -> Any:
    """Import ``module:attribute``."""
    module_name, _, attribute = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SigningUnavailable(f"cannot load signer factory {spec!r}: {exc}") from exc


def _leaf_serial(chain_pem: bytes) -> str:
    try:
        return str(x509.load_pem_x509_certificates(chain_pem)[0].serial_number)
    except ValueError as exc:
        raise SigningUnavailable(f"the certificate chain is not PEM: {exc}") from exc


@dataclass(frozen=True)
class SignedImage:
    """A signed image and the manifest store embedded in it.

    ``manifest_store`` is what c2pa's sign() returns: the JUMBF store as embedded, whose data-hash
    exclusions describe the signed file. With that file, ``Reader(mime, signed, manifest_data=store)``
    validates as Trusted; with the unsigned original it does not (assertion.dataHash.mismatch).
    """

    data: bytes
    manifest_store: bytes


class ManifestSigner:
    """Signs images with C2PA manifests. Create one per process (c2pa objects die across fork)."""

    def __init__(self, settings: Settings) -> None:
        if settings.signer_factory:
            raw: RawSigner = load_factory(settings.signer_factory)(settings)
            chain = raw.certificate_chain_pem.encode()
            self._signer = c2pa.Signer.from_callback(
                raw.sign, _ALGORITHMS[raw.algorithm], raw.certificate_chain_pem, settings.tsa_url
            )
        else:
            chain = _read(settings.cert_chain, "certificate chain")
            key_pem = _read(settings.private_key, "signing key")
            algorithm = _ALGORITHMS[_algorithm_of(_private_key(key_pem))]
            self._signer = c2pa.Signer.from_info(
                c2pa.C2paSignerInfo(algorithm, chain, key_pem, settings.tsa_url)
            )
        self.certificate_chain = chain
        self.leaf_serial = _leaf_serial(chain)
        # No thumbnail: the default is a full-size copy that costs 100+ ms and 250 KB per image.
        self._context = c2pa.Context.from_dict(
            {
                "builder": {"thumbnail": {"enabled": False}},
                "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
            }
        )

    def sign(self, manifest: dict[str, Any], data: bytes, mime_type: str) -> SignedImage:
        """The image with the manifest embedded; its pixels and encoding are untouched."""
        out = io.BytesIO()
        try:
            with c2pa.Builder(manifest, context=self._context) as builder:
                store = builder.sign(self._signer, mime_type, io.BytesIO(data), out)
        except c2pa.C2paError.Signature as exc:
            raise SigningUnavailable(f"signing failed: {exc}") from exc
        except c2pa.C2paError as exc:
            raise InvalidImage(f"the image cannot carry a C2PA manifest: {exc}") from exc
        return SignedImage(out.getvalue(), store)
