"""The certificate chain that signs C2PA manifests, and the roots `verify` trusts.

Production operators supply their own: REELGRAPH_PROVENANCE_CERT_CHAIN (a PEM file, the
signing certificate first, then its intermediates) and REELGRAPH_PROVENANCE_PRIVATE_KEY (the
signing certificate's PEM private key), and optionally REELGRAPH_PROVENANCE_TRUST_ANCHORS
(the PEM roots a file must chain to for `verify` to call it this server's; by default the
last certificate of the chain). C2PA validators refuse a self-signed signing certificate
and one without an extended key usage, so both are checked when the server starts.

The embedded default (development only) generates a chain on first use under
<data_dir>/provenance: a root CA (its key thrown away once it signed) and an ES256 signing
certificate with the emailProtection extended key usage. Files signed with it verify as
"Trusted" only against that root: nobody else trusts it, which is the point of a
development chain.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "ProvenanceUnavailable",
    "SigningIdentity",
    "check_signing_settings",
    "load_signing_identity",
    "trust_anchors",
]

_DEV_DIR = "provenance"
_CHAIN, _KEY, _ROOT = "chain.pem", "signer.key", "root.pem"


class ProvenanceUnavailable(Exception):
    """No usable signing chain: the operator's to fix (the message says how)."""


@dataclass(frozen=True, repr=False)
class SigningIdentity:
    chain_pem: bytes  # the signing certificate first
    key_pem: bytes
    anchors_pem: str  # the roots this server's manifests chain to
    alg: str  # c2pa's name: es256, es384, es512, ps256, ed25519

    def __repr__(self) -> str:  # never dump a private key into a log
        return f"SigningIdentity(alg={self.alg!r})"


def _settings_paths(settings: Any) -> tuple[Path | None, Path | None, Path | None]:
    return (
        getattr(settings, "provenance_cert_chain", None),
        getattr(settings, "provenance_private_key", None),
        getattr(settings, "provenance_trust_anchors", None),
    )


def load_signing_identity(settings: Any) -> SigningIdentity:
    """The operator's chain and key, or (development) the data folder's generated chain."""
    chain_path, key_path, anchors_path = _settings_paths(settings)
    if chain_path or key_path:
        if not (chain_path and key_path):
            raise ProvenanceUnavailable(
                "set both REELGRAPH_PROVENANCE_CERT_CHAIN and REELGRAPH_PROVENANCE_PRIVATE_KEY"
            )
        try:
            chain_pem, key_pem = Path(chain_path).read_bytes(), Path(key_path).read_bytes()
            anchors = Path(anchors_path).read_text() if anchors_path else None
        except OSError as exc:
            raise ProvenanceUnavailable(f"cannot read the provenance chain or key: {exc}") from exc
        return _identity(chain_pem, key_pem, anchors)
    if settings.environment == "production":
        raise ProvenanceUnavailable(
            "REELGRAPH_PROVENANCE_CERT_CHAIN and REELGRAPH_PROVENANCE_PRIVATE_KEY are required in "
            "production: the chain that signs published clips' C2PA manifests"
        )
    folder = ensure_dev_chain(Path(settings.data_dir) / _DEV_DIR)
    return _identity(
        (folder / _CHAIN).read_bytes(), (folder / _KEY).read_bytes(), (folder / _ROOT).read_text()
    )


def trust_anchors(settings: Any) -> str | None:
    """The PEM roots a file's manifest must chain to for it to be this server's; None when
    this server has no chain yet (a development folder that never signed anything)."""
    chain_path, _key, anchors_path = _settings_paths(settings)
    try:
        if anchors_path:
            return Path(anchors_path).read_text()
        if chain_path:
            return _last_certificate(Path(chain_path).read_bytes())
    except OSError as exc:
        raise ProvenanceUnavailable(f"cannot read the provenance trust anchors: {exc}") from exc
    root = Path(settings.data_dir) / _DEV_DIR / _ROOT
    return root.read_text() if root.is_file() else None


def check_signing_settings(settings: Any, *, api: bool) -> None:
    """What start-up checks (startup.check_settings): production API processes need a chain
    and key, and whatever is set must load. Raises ProvenanceUnavailable."""
    chain_path, key_path, _anchors = _settings_paths(settings)
    if not api:
        return
    if settings.environment == "production" or chain_path or key_path:
        import c2pa

        from provenance.manifest import check_identity

        try:
            check_identity(load_signing_identity(settings))
        except c2pa.C2paError as exc:
            raise ProvenanceUnavailable(
                f"C2PA refuses to sign with the provenance chain: {exc} (the signing "
                "certificate needs the digitalSignature key usage and an extended key usage, "
                "issued by the chain's CA)"
            ) from exc


def _last_certificate(chain_pem: bytes) -> str:
    certs = x509.load_pem_x509_certificates(chain_pem)
    return certs[-1].public_bytes(serialization.Encoding.PEM).decode()


def _identity(chain_pem: bytes, key_pem: bytes, anchors: str | None) -> SigningIdentity:
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        raise ProvenanceUnavailable(f"the provenance chain or key does not load: {exc}") from exc
    leaf = certs[0]
    if leaf.issuer == leaf.subject:
        raise ProvenanceUnavailable(
            "the provenance signing certificate is self-signed; C2PA validators refuse it: "
            "issue it from a CA and list the chain, signing certificate first"
        )
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = []
    if not list(usages):
        raise ProvenanceUnavailable(
            "the provenance signing certificate has no extended key usage; C2PA needs one "
            "(e.g. emailProtection or documentSigning)"
        )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    leaf_public = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != leaf_public:
        raise ProvenanceUnavailable("the provenance private key is not the signing certificate's")
    return SigningIdentity(
        chain_pem=chain_pem,
        key_pem=key_pem,
        anchors_pem=anchors or _last_certificate(chain_pem),
        alg=_algorithm(key),
    )


def _algorithm(key: Any) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        names = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in names:
            return names[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise ProvenanceUnavailable("the provenance key must be EC P-256/384/521, Ed25519 or RSA")


def ensure_dev_chain(folder: Path) -> Path:
    """The development chain under folder, generated the first time. Written to a fresh
    folder beside it and renamed into place, so processes racing on first use all end up
    with the one chain that won."""
    if (folder / _CHAIN).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".provenance-", dir=folder.parent))
    try:
        root_pem, chain_pem, key_pem = _generate_dev_chain()
        (scratch / _ROOT).write_bytes(root_pem)
        (scratch / _CHAIN).write_bytes(chain_pem)
        fd = os.open(scratch / _KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key_pem)
        with contextlib.suppress(OSError):  # another process's chain won: use that one
            os.rename(scratch, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not (folder / _CHAIN).is_file():
        raise ProvenanceUnavailable(f"could not create the development chain in {folder}")
    return folder


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "reelgraph (development)"),
        ]
    )


def _key_usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _generate_dev_chain() -> tuple[bytes, bytes, bytes]:
    """(root PEM, chain PEM, signing key PEM): root CA -> ES256 signing certificate."""
    now = datetime.datetime.now(datetime.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("reelgraph development root"))
        .issuer_name(_name("reelgraph development root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("reelgraph development signer"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=730))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    root_pem = root.public_bytes(pem)
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return root_pem, leaf.public_bytes(pem) + root_pem, key_pem
