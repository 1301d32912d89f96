"""Provisioning: credentials for each device and an ACL that fences it into its own topics.

``gridcast provision DEVICE`` sets the user's password in mosquitto's password file
(hashed by ``mosquitto_passwd``; no password is kept in clear anywhere but the
device's own config), records the user's role in ``provisioning.json`` and
regenerates mosquitto's ACL file from those roles:

- a device may publish only its own status, hello, reply, sync request and telemetry,
  and read only its own commands, bundle chunks and sync answers, plus the fleet-wide
  command topic;
- the agent user alone may send commands and bundles, and reads everything of the tree
  (its collectors use the shared subscription).

It writes the device's config.json (credentials, broker, site key, command key) for
``gridcast flash --config`` and prints nothing secret. Re-provisioning a device
rotates its password.

With ``--broker HOST:PORT`` it also sets up TLS (agent/site_ca.py): the site CA
(created once, then reused), the broker's certificate for HOST, optional client
certificates, and a complete ``mosquitto.conf`` (agent/mosquitto_conf.py) with the
TLS listener on PORT as the only listener. The device's config then says
``"broker": "mqtts://HOST:PORT"`` and carries the CA (``ca_pem``) it verifies the
broker with. ``site.json`` remembers the broker and whether client certificates are
required, so later runs need not repeat them. Reload mosquitto (SIGHUP) after adding
a user; restart it after the first run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from gridcast.agent import device_files, mosquitto_conf
from gridcast.agent.site_ca import SiteCA, broker_names
from gridcast.protocol import topics
from gridcast.protocol.command_auth import device_key
from gridcast.protocol.errors import GridcastError

AGENT_USER = "gridcast-agent"


class ProvisionError(GridcastError):
    """Provisioning could not complete; nothing was changed."""


@dataclass
class Provisioned:
    user: str
    password: str
    config_path: str | None
    client_cert: str | None = None  # path of the user's client certificate, if issued


def split_host_port(broker: str) -> tuple[str, int]:
    """``HOST:PORT`` (as given to ``--broker``; a URL's scheme is tolerated)."""
    text = broker.split("://", 1)[-1].split("?", 1)[0].rstrip("/")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProvisionError(f"--broker {broker!r}: expected HOST:PORT (the address devices "
                             "dial, e.g. 192.168.1.10:8883)")
    return host.strip("[]"), int(port)


def device_acl(device_id: str) -> str:
    t = lambda leaf: topics.device_topic(device_id, leaf)  # noqa: E731
    lines = [f"user {device_id}"]
    lines += [f"topic write {t(leaf)}" for leaf in (topics.STATUS, topics.HELLO, topics.REPLY,
                                                    topics.SYNC_REQ, topics.TELEMETRY)]
    lines += [f"topic read {t(leaf)}" for leaf in (topics.CMD, topics.BUNDLE, topics.SYNC_RESP)]
    lines.append(f"topic read {topics.BROADCAST_CMD}")
    return "\n".join(lines)


def agent_acl(user: str) -> str:
    return f"user {user}\ntopic readwrite {topics.PREFIX}/#"


def _mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd") or (
        "/usr/bin/mosquitto_passwd" if os.path.exists("/usr/bin/mosquitto_passwd") else None)
    if found is None:
        raise ProvisionError("mosquitto_passwd is missing (Debian: apt-get install mosquitto)")
    return found


class Provisioner:
    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.registry_path = os.path.join(folder, "provisioning.json")
        self.passwd_path = os.path.join(folder, "passwd")
        self.acl_path = os.path.join(folder, "acl")
        self.site_path = os.path.join(folder, "site.json")
        self.conf_path = os.path.join(folder, "mosquitto.conf")
        self.ca = SiteCA(folder)

    def _load(self) -> dict[str, dict]:
        if not os.path.exists(self.registry_path):
            return {}
        try:
            with open(self.registry_path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise ProvisionError(f"{self.registry_path}: unreadable ({exc}); fix or remove "
                                 "it (it lists the provisioned users)") from exc
        if not isinstance(data, dict):
            raise ProvisionError(f"{self.registry_path}: expected an object of users")
        return data

    def _write_private(self, path: str, text: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def _set_password(self, user: str, password: str) -> None:
        """Update one user in a copy of the password file, then replace it atomically."""
        binary = _mosquitto_passwd()
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-passwd-")
        os.close(fd)
        try:
            if os.path.exists(self.passwd_path):
                shutil.copyfile(self.passwd_path, tmp)
                args = [binary, "-b", tmp, user, password]
            else:
                args = [binary, "-c", "-b", tmp, user, password]
            done = subprocess.run(args, capture_output=True, text=True)
            if done.returncode != 0:
                raise ProvisionError(f"mosquitto_passwd failed: {done.stderr.strip()}")
            os.chmod(tmp, 0o644 if os.geteuid() == 0 else 0o600)  # the broker's user reads it
            os.replace(tmp, self.passwd_path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def _write_acl(self, users: dict[str, dict]) -> None:
        blocks = [agent_acl(u) if e["role"] == "agent" else device_acl(u)
                  for u, e in sorted(users.items())]
        self._write_private(self.acl_path, "\n\n".join(blocks) + "\n")
        if os.geteuid() == 0:
            os.chmod(self.acl_path, 0o644)

    # -- TLS ------------------------------------------------------------------------------
    def site(self) -> dict:
        """What earlier runs set up: {"broker": "HOST:PORT", "client_certs": bool}."""
        try:
            with open(self.site_path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ProvisionError(f"{self.site_path}: unreadable ({exc}); fix or remove it "
                                 "(it remembers the broker's address)") from exc
        return data if isinstance(data, dict) else {}

    def setup_tls(self, broker: str, client_certs: bool = False) -> str:
        """The CA, the broker's certificate and mosquitto.conf for ``broker`` (HOST:PORT).
        Client certificates, once required, stay required. Returns mosquitto.conf's path."""
        host, port = split_host_port(broker)
        site = self.site()
        client_certs = client_certs or bool(site.get("client_certs"))
        os.makedirs(self.folder, exist_ok=True)
        self.ca.ensure()
        key_mode = 0o600
        self.ca.issue(f"gridcast broker {host}", os.path.join(self.folder, "broker.crt"),
                      os.path.join(self.folder, "broker.key"), server_names=broker_names(host),
                      key_mode=key_mode)
        self._hand_to_broker(os.path.join(self.folder, "broker.key"))
        data_dir = os.path.join(self.folder, "data")
        os.makedirs(data_dir, exist_ok=True)
        self._hand_to_broker(data_dir)
        self._write_private(self.conf_path, mosquitto_conf.render(
            self.folder, port, require_client_cert=client_certs, persistence_dir=data_dir))
        os.chmod(self.conf_path, 0o644)
        self._write_private(self.site_path, json.dumps(
            {"broker": f"{host}:{port}", "client_certs": client_certs}, indent=1) + "\n")
        return self.conf_path

    @staticmethod
    def _hand_to_broker(path: str) -> None:
        """Started as root, mosquitto drops to its own user: it must still read its key
        and write its persistence. Nobody else gets either."""
        if os.geteuid() != 0:
            return
        import pwd

        try:
            entry = pwd.getpwnam("mosquitto")
        except KeyError:
            return
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def issue_client_cert(self, user: str) -> tuple[str, str]:
        """(cert path, key path) of ``user``'s client certificate, issued by the site CA."""
        clients = os.path.join(self.folder, "clients")
        done = self.ca.issue(user, os.path.join(clients, f"{user}.crt"),
                             os.path.join(clients, f"{user}.key"))
        return done.cert_path, done.key_path

    def agent_url(self, user: str = AGENT_USER) -> str | None:
        """The agent's broker URL for this site (None before TLS was set up)."""
        site = self.site()
        if not site.get("broker"):
            return None
        url = f"mqtts://{site['broker']}?ca={os.path.abspath(self.ca.cert_path)}"
        if site.get("client_certs"):
            cert, key = (os.path.join(os.path.abspath(self.folder), "clients", f"{user}.{x}")
                         for x in ("crt", "key"))
            url += f"&cert={cert}&key={key}"
        return url

    # -- users -----------------------------------------------------------------------------
    def provision(self, user: str, role: str = "device", key: bytes | None = None,
                  broker: str = "", config_dir: str | None = None,
                  client_cert: bool = False) -> Provisioned:
        """``broker`` HOST:PORT turns TLS on (see module doc); "" uses the site's broker
        from an earlier run, if any, else writes a config without TLS."""
        if role == "device" and not topics.valid_device_id(user):
            raise ProvisionError(f"device id {user!r}: use 1-32 of A-Z a-z 0-9 _ -")
        if role == "device" and key is None:
            raise ProvisionError("a device needs the site key (--key-file)")
        if broker:
            split_host_port(broker)  # a clear line before anything changes
        tls = bool(broker) or bool(self.site().get("broker"))
        if client_cert and not tls:
            raise ProvisionError("--client-cert needs TLS: give --broker HOST:PORT")
        os.makedirs(self.folder, exist_ok=True)
        users = self._load()
        password = secrets.token_urlsafe(18)
        updated = {**users, user: {"role": role}}
        self._set_password(user, password)  # first: if it fails, nothing else changed
        self._write_acl(updated)
        self._write_private(self.registry_path, json.dumps(updated, indent=1) + "\n")
        if tls:
            self.setup_tls(broker or self.site()["broker"], client_certs=client_cert)
        cert = key_file = None
        if tls and (client_cert or self.site().get("client_certs")):
            cert, key_file = self.issue_client_cert(user)
        config_path = None
        if role == "device" and config_dir is not None:
            assert key is not None
            os.makedirs(config_dir, exist_ok=True)
            config_path = os.path.join(config_dir, f"{user}.config.json")
            url = f"mqtts://{self.site()['broker']}" if tls else broker
            ca_pem = cert_pem = key_pem = ""
            if tls:
                ca_pem = self.ca.pem
                if cert and key_file:
                    with open(cert, encoding="ascii") as f:
                        cert_pem = f.read()
                    with open(key_file, encoding="ascii") as f:
                        key_pem = f.read()
            fd, tmp = tempfile.mkstemp(dir=config_dir, prefix=".tmp-")
            with os.fdopen(fd, "w") as f:
                f.write(device_files.config_json(user, key, url, mqtt_user=user,
                                                 mqtt_password=password, ca_pem=ca_pem,
                                                 client_cert_pem=cert_pem,
                                                 client_key_pem=key_pem,
                                                 command_key=device_key(key, user)))
            os.chmod(tmp, 0o600)
            os.replace(tmp, config_path)
        elif role == "agent":
            config_path = os.path.join(self.folder, f"{user}.password")
            self._write_private(config_path, password + "\n")
            if tls:
                self.issue_api_cert()
        return Provisioned(user, password, config_path, cert)

    def issue_api_cert(self) -> tuple[str, str]:
        """The agent API's HTTPS certificate (agent/https.py finds it next to ca.crt): for
        the site's broker host (the agent usually runs beside the broker), this machine's
        names, localhost and 127.0.0.1."""
        import socket

        host = split_host_port(self.site()["broker"])[0]
        names = tuple(dict.fromkeys([*broker_names(host), socket.gethostname(),
                                     socket.getfqdn()]))
        done = self.ca.issue("gridcast agent API", os.path.join(self.folder, "api.crt"),
                             os.path.join(self.folder, "api.key"), server_names=names)
        return done.cert_path, done.key_path

    def mosquitto_conf(self, anonymous_line: bool = True) -> str:
        """The lines a (plain, test) mosquitto listener needs to enforce what was
        provisioned; a TLS site's complete config is ``conf_path``."""
        return (("allow_anonymous false\n" if anonymous_line else "")
                + f"password_file {self.passwd_path}\nacl_file {self.acl_path}\n")
