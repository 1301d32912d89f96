"""Running a mosquitto broker as a child process (for the demo, the bench and tests).

mosquitto runs in the foreground under our process (never ``-d``: as root it
drops to the mosquitto user and silently fails to write into root's folders),
listening on loopback only unless told otherwise, with its own config and
persistence file in a folder we own. ``restart()`` stops it cleanly (it saves
its persistence) and starts it again on the same port, for fault injection.

``tls=True`` makes its one listener TLS-only, with a throwaway site CA in
``FOLDER/tls`` (or the CA folder given as ``tls``, shared by several brokers): what a
provisioned site runs, for the demo, the tests and the HIL suite over mqtts.
``url`` then is ``mqtts://HOST:PORT?ca=...`` and ``device_broker`` what a device's
config.json says (with ``ca_pem`` beside it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

from gridcast.protocol.errors import GridcastError


class BrokerError(GridcastError):
    """The broker could not be started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str | None:
    for candidate in ("mosquitto", "/usr/sbin/mosquitto"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


class BrokerAddress:
    """Where a broker this process runs listens, as the agent and the devices name it.
    ``bind``, ``port`` and ``ca_file`` (the CA of a TLS broker, else None) are set by the
    broker class."""

    bind: str
    port: int
    ca_file: str | None

    @property
    def url(self) -> str:
        """What the agent and the CLI connect to (with the CA to verify a TLS broker)."""
        if self.ca_file:
            return f"mqtts://{self.bind}:{self.port}?ca={self.ca_file}"
        return f"mqtt://{self.bind}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.ca_file is not None

    @property
    def device_broker(self) -> str:
        """The ``broker`` of a device's config.json."""
        return (f"mqtts://{self.bind}:{self.port}" if self.ca_file
                else f"{self.bind}:{self.port}")

    @property
    def ca_pem(self) -> str:
        if not self.ca_file:
            return ""
        with open(self.ca_file, encoding="ascii") as f:
            return f.read()


class Mosquitto(BrokerAddress):
    kind = "mosquitto"
    supports_shared_subscriptions = True

    def __init__(self, port: int | None = None, folder: str | None = None,
                 bind: str = "127.0.0.1", persistence: bool = True,
                 extra_conf: str = "", anonymous: bool = True,
                 tls: bool | str = False) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError("mosquitto is not installed (Debian: apt-get install mosquitto; "
                              "scripts/setup does it)")
        self.binary = binary
        self.port = port or free_port()
        self.bind = bind
        # A folder made here is removed on close (``__exit__``); one given is the caller's.
        self._own_folder = folder is None
        self.folder = folder or tempfile.mkdtemp(prefix="gridcast-mosquitto-")
        os.makedirs(self.folder, exist_ok=True)
        os.chmod(self.folder, 0o777)  # mosquitto may drop to its own user
        self.conf = os.path.join(self.folder, "mosquitto.conf")
        self.ca_file = None
        tls_lines = ""
        if tls:
            from gridcast.agent.site_ca import SiteCA, broker_names

            ca = SiteCA(tls if isinstance(tls, str) else os.path.join(self.folder, "tls"))
            ca.ensure()
            issued = ca.issue("gridcast test broker", os.path.join(self.folder, "broker.crt"),
                              os.path.join(self.folder, "broker.key"),
                              server_names=broker_names(bind), key_mode=0o600)
            self.ca_file = ca.cert_path
            tls_lines = (f"cafile {ca.cert_path}\ncertfile {issued.cert_path}\n"
                         f"keyfile {issued.key_path}\ntls_version tlsv1.2\n")
        with open(self.conf, "w") as f:
            f.write(f"listener {self.port} {bind}\n" + tls_lines +
                    f"allow_anonymous {'true' if anonymous else 'false'}\n"
                    "max_inflight_messages 0\n"
                    # Nagle on the broker's sends delays small sync replies unevenly.
                    "set_tcp_nodelay true\n"
                    "max_queued_messages 100000\n"
                    f"persistence {'true' if persistence else 'false'}\n"
                    f"persistence_location {self.folder}/\n"
                    "autosave_interval 0\n"
                    # As root, mosquitto would switch to its own user and then fail to
                    # write its persistence file into our folders.
                    + ("user root\n" if os.geteuid() == 0 else "")
                    + extra_conf)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 5.0) -> None:
        with open(os.path.join(self.folder, "mosquitto.log"), "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", self.conf], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"mosquitto exited at start (port {self.port} in use?); "
                                  f"see {self.folder}/mosquitto.log")
            try:  # a TCP connect: mosquitto logs the TLS-less probe and moves on
                with socket.create_connection((self.bind, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not open port {self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_s: float = 0.5) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        """Stop, and remove the folder if this broker made it (its persistence goes too;
        ``stop`` alone keeps it for a ``start`` again)."""
        self.stop()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_broker(folder: str | None = None, prefer_embedded: bool = False, tls: bool = False):
    """mosquitto when it is installed, else the embedded broker (not started yet).
    ``tls``: a TLS-only listener with a throwaway CA in ``folder``."""
    if mosquitto_binary() is not None and not prefer_embedded:
        return Mosquitto(folder=folder, tls=tls)
    from gridcast.agent.embedded_broker import EmbeddedBroker

    return EmbeddedBroker(tls_folder=(folder or tempfile.mkdtemp(prefix="gridcast-broker-"))
                          if tls else None)
