"""A site's certificate authority: the CA, the broker's certificate, device client certificates.

``gridcast provision`` keeps one CA per mosquitto folder and reuses it on later runs:

    DIR/ca.key          the CA's private key (mode 0600; never leaves this machine)
    DIR/ca.crt          what devices, the agent and the CLI trust for the broker
    DIR/broker.crt      the broker's certificate, SANs = its host + localhost + 127.0.0.1
    DIR/broker.key      (readable by mosquitto only)
    DIR/clients/ID.crt  optional per-device client certificates (and ID.key)

Keys are ECDSA P-256: the handshake costs a device far less than RSA-2048 (mbedTLS
on an ESP32 signs and verifies P-256 in tens of milliseconds, RSA-2048 private
operations in seconds), and mosquitto and paho accept them.

Validity starts on 1999-01-01, on purpose: an ESP32 boots with its clock at
2000-01-01 and only learns the time from the agent, after it has connected; a
certificate that is "not yet valid" to an unset clock would lock it out. The end
of validity is what protects against old keys (CA 20 years, leaf certificates
``LEAF_DAYS``); re-running provision renews a leaf that is within 30 days of its end.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from gridcast.host.atomic_file import write_atomically
from gridcast.protocol.errors import GridcastError

NOT_BEFORE = datetime.datetime(1999, 1, 1, tzinfo=datetime.UTC)
CA_DAYS = 20 * 365
LEAF_DAYS = 5 * 365
RENEW_BEFORE_DAYS = 30
LOCAL_NAMES = ("localhost", "127.0.0.1")


class CertificateError(GridcastError):
    """A certificate or key could not be made or read; names the file."""


def _crypto():
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:  # a dependency; only a broken install misses it
        raise CertificateError("the 'cryptography' package is missing: pip install "
                               "cryptography") from exc
    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert_path: str
    key_path: str
    renewed: bool  # False: an existing, still valid certificate was kept


def _san(name: str):
    x509 = _crypto()[0]
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class SiteCA:
    """The CA in ``folder``: created on first use, reused afterwards."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.key_path = os.path.join(folder, "ca.key")
        self.cert_path = os.path.join(folder, "ca.crt")
        self._key = None
        self._cert = None

    def ensure(self) -> bool:
        """Load the CA, or create it if there is none. True if it was created."""
        x509, hashes, serialization, ec, _, NameOID = _crypto()
        if os.path.exists(self.key_path) and os.path.exists(self.cert_path):
            try:
                with open(self.key_path, "rb") as f:
                    self._key = serialization.load_pem_private_key(f.read(), None)
                with open(self.cert_path, "rb") as f:
                    self._cert = x509.load_pem_x509_certificate(f.read())
            except (OSError, ValueError) as exc:
                raise CertificateError(f"{self.folder}: the site CA (ca.key, ca.crt) is "
                                       f"unreadable ({exc}); restore it from a backup, or "
                                       "remove both files to start a new CA (every device "
                                       "must then be provisioned again)") from exc
            return False
        if os.path.exists(self.key_path) or os.path.exists(self.cert_path):
            raise CertificateError(f"{self.folder}: only one of ca.key and ca.crt exists; "
                                   "restore the other, or remove it to start a new CA")
        os.makedirs(self.folder, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gridcast site CA"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gridcast")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(NOT_BEFORE)
                .not_valid_after(_now() + datetime.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        write_atomically(self.key_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()), mode=0o600)
        write_atomically(self.cert_path, cert.public_bytes(serialization.Encoding.PEM),
                         mode=0o644)
        self._key, self._cert = key, cert
        return True

    @property
    def pem(self) -> str:
        with open(self.cert_path, encoding="ascii") as f:
            return f.read()

    def issue(self, common_name: str, cert_path: str, key_path: str, *,
              server_names: tuple[str, ...] = (), key_mode: int = 0o600,
              not_after: datetime.datetime | None = None) -> Issued:
        """A leaf certificate for a server (``server_names``: its SANs) or, without names,
        a client. An existing certificate from this CA, valid for the same names and not
        near its end, is kept (so re-provisioning does not churn the broker's files).
        ``not_after``: another end of validity (tests make expired certificates)."""
        x509, hashes, serialization, ec, EKU, NameOID = _crypto()
        if self._key is None:
            self.ensure()
        assert self._key is not None and self._cert is not None
        if not_after is None and self._still_good(cert_path, key_path, server_names):
            return Issued(cert_path, key_path, False)
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                               common_name)]))
                   .issuer_name(self._cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(NOT_BEFORE)
                   .not_valid_after(not_after or _now() + datetime.timedelta(days=LEAF_DAYS))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage(
                       [EKU.SERVER_AUTH] if server_names else [EKU.CLIENT_AUTH]),
                       critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self._key.public_key()), critical=False))
        if server_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_san(n) for n in server_names]), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        os.makedirs(os.path.dirname(cert_path) or ".", exist_ok=True)
        write_atomically(key_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()), mode=key_mode)
        write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return Issued(cert_path, key_path, True)

    def _still_good(self, cert_path: str, key_path: str, names: tuple[str, ...]) -> bool:
        x509 = _crypto()[0]
        if not (os.path.exists(cert_path) and os.path.exists(key_path)):
            return False
        try:
            with open(cert_path, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
        except (OSError, ValueError):
            return False
        assert self._cert is not None
        if cert.issuer != self._cert.subject:
            return False
        from cryptography.exceptions import InvalidSignature

        try:
            cert.verify_directly_issued_by(self._cert)
        except (InvalidSignature, ValueError, TypeError):  # another CA's signature
            return False
        left = cert.not_valid_after_utc - _now()
        if left < datetime.timedelta(days=RENEW_BEFORE_DAYS):
            return False
        if names:
            try:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            except x509.ExtensionNotFound:
                return False
            have = {str(v) for v in san.value.get_values_for_type(x509.DNSName)}
            have |= {str(v) for v in san.value.get_values_for_type(x509.IPAddress)}
            if have != {str(_san(n).value) for n in names}:
                return False
        return True


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def broker_names(host: str) -> tuple[str, ...]:
    """The broker certificate's SANs: the host devices dial, plus loopback names."""
    names = [host] if host else []
    names += [n for n in LOCAL_NAMES if n not in names]
    return tuple(names)
