"""TLS at the front: the certificate and key each gateway's front serves, made or checked on the control machine.

Two sources, one result (`Material`): the operator's own certificate and key (files on the control
machine, outside git), or a certificate from a small CA this module creates once in
`litellm_tls_ca_dir` and keeps there. Either way the material is checked here, while the deploy
prepares, so a wrong file stops the run before any host changes: the key must match the
certificate, the certificate must be valid now and name the gateway.

Own-CA certificates are issued once per gateway and kept beside the CA, so a second deploy sends
the same bytes (no change); they are issued again only when the names change or when fewer than
RENEW_BEFORE days are left. The CA's certificate (`ca.crt`) is the file clients are given.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from gateway.settings import Settings

CA_DAYS = 3650
CERT_DAYS = 397  # what public CAs may issue at most; a deploy renews before the end
RENEW_BEFORE = datetime.timedelta(days=30)
OWN_CA = "own-ca"


class TLSError(ValueError):
    """Material that must not be served; the message names the file or setting and the fix."""


@dataclass(frozen=True)
class Material:
    """What one gateway's front serves: the certificate chain (leaf first) and its key, PEM."""

    chain: bytes
    key: bytes = field(repr=False)  # a secret: never in a repr, log or traceback
    ca_file: str  # the file clients verify the gateway with (on the control machine)
    names: tuple[str, ...]  # the names and addresses the certificate is valid for
    not_after: datetime.datetime

    @property
    def pem(self) -> bytes:
        """Chain and key in one file, as HAProxy's `crt` reads it."""
        return self.chain + self.key


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def names_of(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {*san.get_values_for_type(x509.DNSName), *(str(a) for a in san.get_values_for_type(x509.IPAddress))}


def _write_private(path: Path, data: bytes) -> None:
    """A file only its owner reads, created so from the first byte; replaced in one move."""
    temp = path.with_name(path.name + ".new")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temp, path)


def _key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class OwnCA:
    """The small CA of a dev-test network without one: created once, kept in `directory` (0700)."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory).expanduser()
        self.cert_file = self.directory / "ca.crt"
        self.key_file = self.directory / "ca.key"

    def existing(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
        """The CA if it was made already (None if not); a half-made or unreadable one is an error."""
        if self.cert_file.exists() or self.key_file.exists():
            try:
                cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
                key = serialization.load_pem_private_key(self.key_file.read_bytes(), None)
            except (OSError, ValueError) as error:
                raise TLSError(f"litellm_tls_ca_dir: the CA in {self.directory} cannot be read ({error}); restore "
                               f"ca.crt and ca.key from your backup (clients trust that CA), or move the directory "
                               f"away to create a new CA") from None
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
                raise TLSError(f"litellm_tls_ca_dir: {self.key_file} is not the key of {self.cert_file}; restore "
                               "the pair from your backup")
            return cert, key
        return None

    def ensure(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """The CA, created on first use, never replaced."""
        made = self.existing()
        if made:
            return made
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LiteLLM gateway CA")])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             key_cert_sign=True, crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        _write_private(self.key_file, _key_pem(key))
        self.cert_file.write_bytes(_cert_pem(cert))
        return cert, key

    def material(self, gateway: str, names: tuple[str, ...]) -> Material:
        """The gateway's certificate, issued once and kept; issued again for new names or near its end."""
        ca_cert, ca_key = self.ensure()
        hosts = self.directory / "hosts"
        hosts.mkdir(mode=0o700, exist_ok=True)
        cert_file, key_file = hosts / f"{gateway}.crt", hosts / f"{gateway}.key"
        if cert_file.exists() and key_file.exists():
            cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
            if (names_of(cert) == set(names) and cert.issuer == ca_cert.subject
                    and cert.not_valid_after_utc - _now() > RENEW_BEFORE):
                return Material(cert_file.read_bytes() + self.cert_file.read_bytes(), key_file.read_bytes(),
                                str(self.cert_file), names, cert.not_valid_after_utc)
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
                .add_extension(_san(names), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        _write_private(key_file, _key_pem(key))
        cert_file.write_bytes(_cert_pem(cert))
        return Material(_cert_pem(cert) + self.cert_file.read_bytes(), _key_pem(key), str(self.cert_file), names,
                        cert.not_valid_after_utc)


def operator_material(cert_file: str, key_file: str, ca_file: str | None, names: tuple[str, ...]) -> Material:
    """The operator's certificate (chain, leaf first) and key, checked before they go anywhere."""
    try:
        chain_pem = Path(cert_file).expanduser().read_bytes()
        key_pem = Path(key_file).expanduser().read_bytes()
    except OSError as error:
        raise TLSError(f"litellm_tls: cannot read {error.filename} ({error.strerror}); give the path of a PEM file "
                       "on this machine") from None
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise TLSError(f"litellm_tls.cert_file: {cert_file} holds no PEM certificate; give the certificate "
                       "(and its intermediates after it)") from None
    try:
        key = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError):
        # Never quote the file: it may hold a key in a form we do not read.
        raise TLSError(f"litellm_tls.key_file: {key_file} holds no unencrypted PEM private key; give the key "
                       "without a passphrase (HAProxy starts unattended)") from None
    leaf = chain[0]
    if key.public_key() != leaf.public_key():
        raise TLSError(f"litellm_tls: the key in {key_file} is not the key of the certificate in {cert_file}; "
                       "give the matching pair")
    now = _now()
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise TLSError(f"litellm_tls.cert_file: {cert_file} is valid from {leaf.not_valid_before_utc:%Y-%m-%d} to "
                       f"{leaf.not_valid_after_utc:%Y-%m-%d}, not now; renew it")
    missing = [name for name in names[:1] if name not in names_of(leaf)]
    if missing:
        raise TLSError(f"litellm_tls.cert_file: {cert_file} is not valid for {missing[0]} (it names "
                       f"{', '.join(sorted(names_of(leaf))) or 'nothing in subjectAltName'}); issue one that names "
                       "the gateway as clients reach it")
    return Material(b"".join(_cert_pem(c) for c in chain), _key_pem(key), str(Path(ca_file or cert_file).expanduser()),
                    tuple(sorted(names_of(leaf))), leaf.not_valid_after_utc)


def gateway_names(host_name: str, bind_address: str, extra: tuple[str, ...]) -> tuple[str, ...]:
    """The names and addresses clients reach one gateway by: its inventory name first."""
    names = [host_name]
    if bind_address not in ("0.0.0.0", "::"):
        names.append(bind_address)
    names.extend(extra)
    return tuple(dict.fromkeys(names))


def material(s: Settings, host_name: str) -> Material:
    """What the front of `host_name` serves under its settings `s` (s.tls set)."""
    assert s.tls is not None
    names = gateway_names(host_name, s.bind_address, s.tls.names)
    if s.tls.own_ca:
        return OwnCA(s.tls.ca_dir).material(host_name, names)
    assert s.tls.cert_file and s.tls.key_file
    return operator_material(s.tls.cert_file, s.tls.key_file, s.tls.ca_file, names)


def problem(s: Settings, host_name: str) -> str | None:
    """What is wrong with the TLS material of `host_name`, checked without making anything (preflight)."""
    if not s.tls:
        return None
    try:
        if s.tls.own_ca:
            OwnCA(s.tls.ca_dir).existing()
        else:
            material(s, host_name)
    except TLSError as error:
        return str(error)
    return None
