"""Why devices fail to connect, read from the broker's log into the agent's log.

A device that cannot complete the TLS handshake never reaches the agent over MQTT;
only the broker sees it try. mosquitto writes, for each attempt::

    New connection from 10.0.0.23:51234 on port 8883.
    OpenSSL Error[0]: error:0A000418:SSL routines::tlsv1 alert unknown ca

``BrokerLogWatcher`` follows that file (``broker_log`` in the agent's config; a
provisioned broker writes ``MOSQUITTO_DIR/data/mosquitto.log``) and logs one line per
client address and reason (again after ``REPEAT_S``) that says what is wrong and what
to do: the device's CA is not this site's, its clock is far off, it speaks plain
MQTT to the TLS listener, its client certificate is refused.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gridcast.agent.config import AgentConfig

log = logging.getLogger("gridcast.broker")

REPEAT_S = 60.0
_NEW = re.compile(r"New connection from (\S+?):(\d+) on port")
_FAILED = re.compile(r"Client connection from (\S+) failed: (.*)")
# (substring of OpenSSL's words, what it means for the client, what to do)
REASONS = (
    ("alert unknown ca", "rejected the broker's certificate: not signed by the CA it trusts",
     "its ca_pem is not this site's CA; re-provision it (gridcast provision) and flash it"),
    ("alert certificate expired", "rejected the broker's certificate as expired",
     "check the device's clock, or renew the broker's certificate (gridcast provision)"),
    ("alert bad certificate", "rejected the broker's certificate (wrong host name, or a clock "
     "far off)", "its broker must name a host in the certificate; check its clock"),
    ("alert certificate unknown", "rejected the broker's certificate",
     "re-provision the device"),
    ("wrong version number", "spoke plain MQTT to the TLS listener",
     "its broker must be mqtts://HOST:PORT with ca_pem (re-provision it)"),
    ("http request", "spoke HTTP to the MQTT listener", "point it at the broker's MQTT port"),
    ("peer did not return a certificate", "sent no client certificate",
     "this broker requires one: provision the device with --client-cert"),
    ("certificate verify failed", "presented a client certificate the broker does not trust",
     "issue it from this site's CA (gridcast provision --client-cert)"),
)


def path_for(config: AgentConfig) -> str | None:
    """``broker_log`` from the config, else a provisioned broker's log (beside the site CA
    of ``broker = mqtts://...?ca=DIR/ca.crt``: DIR/data/mosquitto.log) if it exists."""
    if config.broker_log:
        return config.broker_log
    from gridcast.agent import broker_url

    try:
        address = broker_url.parse(config.broker)
    except broker_url.BrokerUrlError:
        return None
    if address.tls is None or not address.tls.ca_file:
        return None
    path = os.path.join(os.path.dirname(os.path.abspath(address.tls.ca_file)), "data",
                        "mosquitto.log")
    return path if os.path.exists(path) else None


def classify(openssl_text: str) -> tuple[str, str] | None:
    """(what the client did, what to do) for OpenSSL's words, or None if not a TLS refusal."""
    low = openssl_text.lower()
    for needle, what, fix in REASONS:
        if needle in low:
            return what, fix
    return None


class BrokerLogWatcher:
    """Follows ``path`` from its current end in a thread; ``lines`` counts what it read."""

    def __init__(self, path: str, poll_s: float = 0.2) -> None:
        self.path = path
        self.poll_s = poll_s
        self.reported: list[str] = []  # the lines it logged (tests, the API)
        self._last_seen: dict[tuple[str, str], float] = {}
        self._client = "a client"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-log", daemon=True)
        self._offset = os.path.getsize(path) if os.path.exists(path) else 0

    def start(self) -> BrokerLogWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)

    def _run(self) -> None:
        pending = ""
        while not self._stop.wait(self.poll_s):
            try:
                size = os.path.getsize(self.path)
                if size < self._offset:  # rotated or truncated
                    self._offset = 0
                with open(self.path, encoding="utf-8", errors="replace") as f:
                    f.seek(self._offset)
                    chunk = f.read()
                    self._offset = f.tell()
            except OSError:
                continue
            pending += chunk
            *lines, pending = pending.split("\n")
            for line in lines:
                self.feed(line)

    def feed(self, line: str) -> str | None:
        """One log line; returns the agent's line if it logged one."""
        new = _NEW.search(line)
        if new:
            self._client = f"the client at {new.group(1)}"
            return None
        failed = _FAILED.search(line)
        if failed:
            client, text = f"the client at {failed.group(1)}", failed.group(2)
        elif "OpenSSL Error" in line:
            client, text = self._client, line.split("OpenSSL Error", 1)[1]
        else:
            return None
        reason = classify(text)
        if reason is None:
            return None
        what, fix = reason
        now = time.monotonic()
        key = (client, what)
        if now - self._last_seen.get(key, -1e9) < REPEAT_S:
            return None
        self._last_seen[key] = now
        message = f"broker: {client} {what}; {fix}"
        log.warning("%s", message)
        self.reported.append(message)
        return message
