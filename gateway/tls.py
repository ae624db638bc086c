"""TLS at the front: the certificate and key each gateway's front serves, made or checked on the control machine.

Two sources, one result (`Material`): the operator's own certificate and key (files on the control
machine, outside git), or a certificate from a small CA this module creates once in
`litellm_tls_ca_dir` and keeps there. Either way the material is checked here, while the deploy
prepares, so a wrong file stops the run before any host changes: the key must match the
certificate, the certificate must be valid now and name the gateway.

Own-CA certificates are issued once per gateway and kept beside the CA, so a second deploy sends
the same bytes (no change); they are issued again only when the names change, when the kept pair
does not belong together or to the CA, or when fewer than RENEW_BEFORE days are left. Making the
CA and issuing hold a lock on the directory: `fab` tasks run hosts in threads, and two deploys may
run at once. The CA's certificate (`ca.crt`) is the file clients are given.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import ipaddress
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from gateway.settings import Settings

CA_DAYS = 3650
CERT_DAYS = 397  # what public CAs may issue at most; a deploy renews before the end
RENEW_BEFORE = datetime.timedelta(days=30)


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
    return datetime.datetime.now(datetime.UTC)


def canonical(name: str) -> str:
    """A name as a certificate holds it: an address in its one canonical form, a DNS name in lower case."""
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        return name.lower().rstrip(".")


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
    return {*(canonical(n) for n in san.get_values_for_type(x509.DNSName)),
            *(a.compressed for a in san.get_values_for_type(x509.IPAddress))}


def covers(patterns: set[str], name: str) -> bool:
    """Whether a certificate naming `patterns` is valid for `name` (one left-most `*` label, as clients match)."""
    name = canonical(name)
    return any(pattern == name or (pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:])
               for pattern in patterns)


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` in one move by a file created only its owner can read (then given `mode`)."""
    descriptor, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class OwnCA:
    """The small CA of a dev-test network without one: created once, kept in `directory` (0700)."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory).expanduser()
        self.cert_file = self.directory / "ca.crt"
        self.key_file = self.directory / "ca.key"
        self.hosts = self.directory / "hosts"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One maker at a time: threads of one `fab` task, or two deploys at once."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(self.directory.stat().st_mode)
        if mode & 0o077:
            raise TLSError(f"litellm_tls_ca_dir: {self.directory} is open to others (mode {mode:04o}); it holds the "
                           f"CA's key: chmod 700 {self.directory}")
        descriptor = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def existing(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
        """The CA if it was made already (None if not); a half-made, unreadable or ending one is an error."""
        if not (self.cert_file.exists() or self.key_file.exists()):
            return None
        try:
            cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
            key = serialization.load_pem_private_key(self.key_file.read_bytes(), None)
        except (OSError, ValueError) as error:
            raise TLSError(f"litellm_tls_ca_dir: the CA in {self.directory} cannot be read "
                           f"({getattr(error, 'strerror', None) or type(error).__name__}); restore ca.crt and ca.key "
                           f"from your backup (clients trust that CA), or move the directory away to make a "
                           f"new CA") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            raise TLSError(f"litellm_tls_ca_dir: {self.key_file} is not the key of {self.cert_file}; restore "
                           "the pair from your backup")
        if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
            raise TLSError(f"litellm_tls_ca_dir: the CA in {self.directory} ends on "
                           f"{cert.not_valid_after_utc:%Y-%m-%d}; "
                           "move the directory away so the deploy makes a new CA, and give clients its ca.crt")
        return cert, key

    def _ensure(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        made = self.existing()
        if made:
            return made
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
        _write(self.key_file, _key_pem(key))
        _write(self.cert_file, _cert_pem(cert), 0o644)
        return cert, key

    def _kept(self, gateway: str, names: tuple[str, ...], ca_cert: x509.Certificate) -> Material | None:
        """The gateway's kept certificate, if it still fits: same names, its own key, this CA, time left."""
        cert_file, key_file = self.hosts / f"{gateway}.crt", self.hosts / f"{gateway}.key"
        try:
            cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
            key = serialization.load_pem_private_key(key_file.read_bytes(), None)
        except (OSError, ValueError):
            return None  # missing or damaged: issued anew
        if (names_of(cert) != set(names) or key.public_key() != cert.public_key() or not _issued_by(cert, ca_cert)
                or cert.not_valid_after_utc - _now() < RENEW_BEFORE):
            return None
        return Material(_cert_pem(cert) + _cert_pem(ca_cert), _key_pem(key), str(self.cert_file), names,
                        cert.not_valid_after_utc)

    def kept(self, gateway: str, names: tuple[str, ...]) -> Material | None:
        """What the gateway serves if a deploy made it already; makes nothing (for read-only tasks)."""
        made = self.existing()
        return self._kept(gateway, names, made[0]) if made else None

    def material(self, gateway: str, names: tuple[str, ...]) -> Material:
        """The gateway's certificate, issued once and kept; issued again when it no longer fits."""
        with self._locked():
            ca_cert, ca_key = self._ensure()
            self.hosts.mkdir(mode=0o700, exist_ok=True)
            kept = self._kept(gateway, names, ca_cert)
            if kept:
                return kept
            key = ec.generate_private_key(ec.SECP256R1())
            now = _now()
            cert = (x509.CertificateBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                    .issuer_name(ca_cert.subject).public_key(key.public_key())
                    .serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(minutes=5))
                    .not_valid_after(min(now + datetime.timedelta(days=CERT_DAYS), ca_cert.not_valid_after_utc))
                    .add_extension(_san(names), critical=False)
                    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                    .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                    .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                   critical=False)
                    .sign(ca_key, hashes.SHA256()))
            _write(self.hosts / f"{gateway}.key", _key_pem(key))
            _write(self.hosts / f"{gateway}.crt", _cert_pem(cert), 0o644)
            return Material(_cert_pem(cert) + _cert_pem(ca_cert), _key_pem(key), str(self.cert_file), names,
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
    held = names_of(leaf)
    if not any(covers(held, name) for name in names):
        raise TLSError(f"litellm_tls.cert_file: {cert_file} is valid for none of {', '.join(names)} (it names "
                       f"{', '.join(sorted(held)) or 'nothing in subjectAltName'}); issue one that names the gateway "
                       "as clients reach it, or add that name to litellm_tls_names")
    return Material(b"".join(_cert_pem(c) for c in chain), _key_pem(key), str(Path(ca_file or cert_file).expanduser()),
                    tuple(sorted(held)), leaf.not_valid_after_utc)


def gateway_names(host_name: str, bind_address: str, extra: tuple[str, ...]) -> tuple[str, ...]:
    """The names and addresses clients reach one gateway by, canonical: its inventory name first."""
    names = [host_name]
    if bind_address not in ("0.0.0.0", "::"):
        names.append(bind_address)
    names.extend(extra)
    return tuple(dict.fromkeys(canonical(n) for n in names))


def material(s: Settings, host_name: str, issue: bool = True) -> Material | None:
    """What the front of `host_name` serves under its settings `s` (s.tls set). With `issue` False
    (read-only tasks) nothing is made: None when a deploy has not made it, or it cannot be read."""
    assert s.tls is not None
    fleet = (s.fleet.address, *([s.fleet.name] if s.fleet.name else [])) if s.fleet else ()
    names = gateway_names(host_name, s.bind_address, s.tls.names + fleet)
    try:
        if s.tls.own_ca:
            ca = OwnCA(s.tls.ca_dir)
            return ca.material(host_name, names) if issue else ca.kept(host_name, names)
        assert s.tls.cert_file and s.tls.key_file
        return operator_material(s.tls.cert_file, s.tls.key_file, s.tls.ca_file, names)
    except TLSError:
        if issue:
            raise
        return None
    except OSError as error:
        if not issue:
            return None
        raise TLSError(f"litellm_tls_ca_dir: {error.filename or s.tls.ca_dir}: {error.strerror}; give a directory "
                       "this user can create and write, outside git") from None


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
