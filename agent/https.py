"""HTTPS for the agent's API and dashboard, with the site CA's certificate.

On localhost the daemon may serve plain HTTP. Bound to any other address it serves
HTTPS, with:

- ``https_cert`` / ``https_key`` from the config, or else
- the certificate ``gridcast provision --agent`` issued next to the site CA:
  ``MOSQUITTO_DIR/api.crt`` and ``api.key``, found through the broker URL's
  ``?ca=MOSQUITTO_DIR/ca.crt``.

With neither, it refuses to start unless ``insecure_http = true``
(``GRIDCAST_INSECURE_HTTP=1``): the bearer token would cross the venue's network in
clear text. Clients trust the site CA, e.g. ``SSL_CERT_FILE=MOSQUITTO_DIR/ca.crt
gridcast devices --agent https://HOST:8750`` or the browser's certificate store.
"""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING

from gridcast.agent.config import LOCAL_BINDS
from gridcast.protocol.errors import GridcastError

if TYPE_CHECKING:
    from gridcast.agent.config import AgentConfig


class HttpsError(GridcastError):
    """The API cannot be served as configured; says what to set."""


def certificate_files(config: AgentConfig) -> tuple[str, str] | None:
    """(cert, key) to serve HTTPS with, or None: the config's, else the provisioned one."""
    if config.https_cert:
        return config.https_cert, config.https_key or config.https_cert
    from gridcast.agent import broker_url

    try:
        address = broker_url.parse(config.broker)
    except broker_url.BrokerUrlError:
        return None
    if address.tls is None or not address.tls.ca_file:
        return None
    folder = os.path.dirname(os.path.abspath(address.tls.ca_file))
    cert, key = os.path.join(folder, "api.crt"), os.path.join(folder, "api.key")
    return (cert, key) if os.path.exists(cert) and os.path.exists(key) else None


def check(config: AgentConfig) -> None:
    """HttpsError unless the API is local, has a certificate, or insecure_http is set."""
    files = certificate_files(config)
    if files is not None:
        for path in files:
            if not os.path.exists(path):
                raise HttpsError(f"https_cert/https_key: {path}: no such file (make them with "
                                 "`gridcast provision --agent --broker HOST:PORT`)")
        return
    if config.bind in LOCAL_BINDS or config.insecure_http:
        return
    raise HttpsError(f"bind = {config.bind!r} is not localhost: the API needs HTTPS there "
                     "(set https_cert and https_key; `gridcast provision --agent --broker "
                     "HOST:PORT` writes MOSQUITTO_DIR/api.crt and api.key, found by itself "
                     "when broker = mqtts://...?ca=MOSQUITTO_DIR/ca.crt), or set insecure_http "
                     "= true (GRIDCAST_INSECURE_HTTP=1) on a network you trust")


def server_context(config: AgentConfig) -> ssl.SSLContext | None:
    """The API's TLS context (None: plain HTTP, allowed by ``check``)."""
    files = certificate_files(config)
    if files is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(*files)
    except (OSError, ssl.SSLError) as exc:
        raise HttpsError(f"https: cannot load {files[0]} / {files[1]} ({exc}); re-issue them "
                         "with `gridcast provision --agent`") from exc
    return ctx
