"""Broker URLs and the TLS settings they carry, for the agent, the CLI and the collectors.

    mqtt://HOST[:PORT]                          plain (default port 1883): unprovisioned setups
    mqtts://HOST[:PORT]?ca=PATH                 TLS (default port 8883), the broker verified
                                                against the site CA (``gridcast provision``
                                                writes it to MOSQUITTO_DIR/ca.crt)
    mqtts://HOST[:PORT]?ca=PATH&cert=C&key=K    and a client certificate, for a broker that
                                                requires one

Without ``ca=`` the CA comes from ``$GRIDCAST_BROKER_CA``, else the system's trust
store (a broker with a public certificate). The broker's certificate must name HOST
(the provisioned one names the host given to provision, localhost and 127.0.0.1).

``explain_tls_failure`` turns what OpenSSL says into one line that names the broker
and the reason (unknown CA, expired, wrong host name, a client certificate refused).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

from gridcast.protocol.errors import GridcastError

PLAIN_PORT = 1883
TLS_PORT = 8883
CA_ENV = "GRIDCAST_BROKER_CA"


class BrokerUrlError(GridcastError):
    """A broker URL that cannot be used; says what to give instead."""


@dataclass(frozen=True)
class TlsSettings:
    ca_file: str | None = None  # None: the system's trust store
    cert_file: str | None = None  # client certificate (optional)
    key_file: str | None = None

    def context(self) -> ssl.SSLContext:
        """A client context that verifies the broker's chain and host name."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            if self.ca_file:
                ctx.load_verify_locations(cafile=self.ca_file)
            if self.cert_file:
                ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            which = (f"client certificate {self.cert_file}" if self.cert_file and
                     not (self.ca_file and not os.path.exists(self.ca_file))
                     else f"CA {self.ca_file}")
            raise BrokerUrlError(f"TLS: cannot load the {which} ({exc}); check the path "
                                 "(gridcast provision writes MOSQUITTO_DIR/ca.crt)") from exc
        return ctx


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: TlsSettings | None = None

    @property
    def url(self) -> str:
        """The URL without its options (for logs and messages)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse(url: str, option: str = "broker") -> BrokerAddress:
    """``mqtt://`` or ``mqtts://`` URL -> BrokerAddress; BrokerUrlError naming ``option``."""
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
        raise BrokerUrlError(f"{option} {url!r}: expected mqtt://HOST:PORT, or "
                             "mqtts://HOST:PORT?ca=CA_FILE for a provisioned (TLS) broker")
    try:
        port = parsed.port
    except ValueError as exc:
        raise BrokerUrlError(f"{option} {url!r}: the port must be 1..65535") from exc
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    unknown = set(query) - {"ca", "cert", "key"}
    if unknown:
        raise BrokerUrlError(f"{option} {url!r}: unknown option(s) {', '.join(sorted(unknown))} "
                             "(known: ca, cert, key)")
    if parsed.scheme == "mqtt":
        if query:
            raise BrokerUrlError(f"{option} {url!r}: ca/cert/key need mqtts://")
        return BrokerAddress(parsed.hostname, port or PLAIN_PORT)
    if ("cert" in query) != ("key" in query):
        raise BrokerUrlError(f"{option} {url!r}: give both cert= and key= (or neither)")
    tls = TlsSettings(query.get("ca") or os.environ.get(CA_ENV) or None,
                      query.get("cert"), query.get("key"))
    return BrokerAddress(parsed.hostname, port or TLS_PORT, tls)


def explain_tls_failure(exc: BaseException, broker: str, tls: TlsSettings) -> str | None:
    """One line for a TLS failure talking to ``broker`` (None: not a TLS failure)."""
    ca = tls.ca_file or "the system's trust store"
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or str(exc)
        if exc.verify_code in (20, 21, 19, 2):  # unknown issuer / self-signed in chain
            fix = (f"it is not signed by the CA {ca}; give the site's ca.crt (?ca=...) or "
                   "re-provision the broker")
        elif exc.verify_code == 10:
            fix = ("renew it with `gridcast provision` (or check this machine's clock)")
        elif exc.verify_code == 9:
            fix = "this machine's clock is behind; set the time"
        elif exc.verify_code == 62 or "Hostname mismatch" in why or "IP address mismatch" in why:
            fix = ("connect with the host name the certificate names (provision --broker "
                   "HOST:PORT puts HOST, localhost and 127.0.0.1 in it)")
        else:
            fix = "check the broker's certificate and the CA"
        return f"TLS: the broker at {broker} presented a certificate that failed: {why}; {fix}"
    if isinstance(exc, ssl.SSLError):
        text = exc.reason or str(exc)
        low = text.lower().replace("_", " ")
        if "certificate required" in low or "bad certificate" in low or "unknown ca" in low:
            fix = ("this client's certificate was refused: give cert= and key= signed by the "
                   "site CA" if tls.cert_file is None or "unknown ca" not in low
                   else "the broker does not trust this client certificate's CA")
            return f"TLS: the broker at {broker} refused the handshake ({text}); {fix}"
        if "wrong version number" in low or "record layer failure" in low or "packet length" in low:
            return (f"TLS: {broker} did not answer in TLS ({text}); is it a plain mqtt:// "
                    "listener?")
        return f"TLS: the handshake with the broker at {broker} failed ({text})"
    return None
