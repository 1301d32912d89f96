"""Provisioning: a broker login for each device, fenced into its own topics and bound to
its own MQTT client id.

``gridcast provision DEVICE`` gives the user a new password and a role in mosquitto's
dynamic-security plugin (agent/dynsec.py: the role's ACLs, the client id binding, the
JSON file ``MOSQUITTO_DIR/dynsec/dynamic-security.json``), and records the user's kind
in ``provisioning.json``. No password is kept in clear anywhere but the device's own
config (and the agent's and admin's password files, 0600):

- a device may publish only its own status, hello, reply, sync request and telemetry,
  and read only its own commands, bundle chunks and sync answers, plus the fleet-wide
  command topic; it may log in only with its device id as client id;
- the agent user alone may send commands and bundles, and reads everything of the tree
  (its collectors use the shared subscription); agent-side users choose their client ids;
- the admin user (``gridcast-admin``, made with the file) may only send the plugin's
  commands.

When the site's broker answers at its address, the user is added to it at run time
through the plugin's ``$CONTROL`` topic with the admin login (agent/dynsec_control.py):
no restart, nobody else disconnected. Otherwise the JSON file is written, and the
broker reads it when it starts. A site set up before (``passwd`` and ``acl`` files) is
migrated on the first run: every user keeps its password (mosquitto_passwd's hashes
are the plugin's), and mosquitto must be restarted once with the new config.

It writes the device's config.json (credentials, broker, site key, command key) for
``gridcast flash --config`` and prints nothing secret. Re-provisioning a device
rotates its password.

With ``--broker HOST:PORT`` it also sets up TLS (agent/site_ca.py): the site CA
(created once, then reused), the broker's certificate for HOST, optional client
certificates, and a complete ``mosquitto.conf`` (agent/mosquitto_conf.py) with the
TLS listener on PORT as the only listener. The device's config then says
``"broker": "mqtts://HOST:PORT"`` and carries the CA (``ca_pem``) it verifies the
broker with. ``site.json`` remembers the broker and whether client certificates are
required, so later runs need not repeat them. Start (or restart) mosquitto after the
first run.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field

from gridcast.agent import device_files, dynsec, mosquitto_conf
from gridcast.agent.site_ca import SiteCA, broker_names
from gridcast.host.atomic_file import write_atomically
from gridcast.protocol import topics
from gridcast.protocol.command_auth import device_key
from gridcast.protocol.errors import GridcastError

AGENT_USER = "gridcast-agent"
ADMIN_USER = dynsec.ADMIN_USER
LIVE_PROBE_S = 1.0  # how long to wait for the site's broker to answer a TCP connect
CONTROL_TIMEOUT_S = 3.0  # for its CONNACK, SUBACK and each answer to the admin's commands


class ProvisionError(GridcastError):
    """Provisioning could not complete; nothing was changed."""


@dataclass
class Provisioned:
    user: str
    password: str
    config_path: str | None
    client_cert: str | None = None  # path of the user's client certificate, if issued
    live: bool = False  # added to the running broker (else written to the plugin's file)
    notes: list[str] = field(default_factory=list)  # what the operator should know or do


def split_host_port(broker: str) -> tuple[str, int]:
    """``HOST:PORT`` (as given to ``--broker``; a URL's scheme is tolerated)."""
    text = broker.split("://", 1)[-1].split("?", 1)[0].rstrip("/")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProvisionError(f"--broker {broker!r}: expected HOST:PORT (the address devices "
                             "dial, e.g. 192.168.1.10:8883)")
    return host.strip("[]"), int(port)


def _broker_owner() -> tuple[int, int] | None:
    """(uid, gid) of mosquitto's own user when we run as root (mosquitto started as root
    drops to it and must still read its files and write its state), else None."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam("mosquitto")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


class Provisioner:
    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.registry_path = os.path.join(folder, "provisioning.json")
        self.dynsec_dir = os.path.join(folder, "dynsec")
        self.dynsec_path = os.path.join(self.dynsec_dir, "dynamic-security.json")
        self.admin_password_path = os.path.join(folder, f"{ADMIN_USER}.password")
        self.passwd_path = os.path.join(folder, "passwd")  # a site set up before: migrated
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
        write_atomically(path, text, mode=0o600)

    # -- the plugin's document --------------------------------------------------------------
    def _document(self, users: dict[str, dict], notes: list[str]) -> dynsec.Document:
        """The plugin's document; made on the first run (with the admin user), from the
        password file of a site set up before, if there is one."""
        if os.path.exists(self.dynsec_path):
            return dynsec.Document.load(self.dynsec_path)
        doc = dynsec.Document(self.dynsec_path)
        if os.path.exists(self.passwd_path):
            self._migrate(doc, users, notes)
        admin_password = secrets.token_urlsafe(18)
        doc.set_user(ADMIN_USER, "admin", dynsec.password_fields(admin_password))
        self._save(doc)
        self._write_private(self.admin_password_path, admin_password + "\n")
        return doc

    def _migrate(self, doc: dynsec.Document, users: dict[str, dict], notes: list[str]) -> None:
        """Every user of ``provisioning.json`` with its hash from the password file."""
        hashes: dict[str, str] = {}
        try:
            with open(self.passwd_path, encoding="utf-8") as f:
                for line in f:
                    name, sep, hashed = line.strip().partition(":")
                    if sep:
                        hashes[name] = hashed
        except (OSError, UnicodeDecodeError) as exc:
            raise ProvisionError(f"{self.passwd_path}: unreadable ({exc}); fix it or move "
                                 "it away (it is the password file to migrate)") from exc
        moved, lost = [], []
        for name, entry in sorted(users.items()):
            fields = dynsec.fields_from_passwd_hash(hashes.get(name, ""))
            if fields is None:
                lost.append(name)
                continue
            doc.set_user(name, entry["role"], fields)
            moved.append(name)
        notes.append(f"migrated {len(moved)} users from {self.passwd_path} to "
                     f"{self.dynsec_path} with their passwords; {self.passwd_path} and "
                     f"{self.acl_path} are no longer used. Restart mosquitto once with the "
                     "new config: it now loads the dynamic-security plugin")
        if lost:
            notes.append(f"not migrated (no mosquitto 2.0 hash in {self.passwd_path}): "
                         f"{', '.join(lost)}; provision them again")

    def _save(self, doc: dynsec.Document) -> None:
        owner = _broker_owner()
        try:
            os.makedirs(self.dynsec_dir, mode=0o700, exist_ok=True)
            if owner is not None:  # the plugin writes its file anew in this folder
                os.chown(self.dynsec_dir, *owner)
        except OSError as exc:
            raise ProvisionError(f"cannot make {self.dynsec_dir} ({exc.strerror or exc}); "
                                 "it must be a folder gridcast provision may write (remove "
                                 "what is in the way, or give --mosquitto-dir)") from exc
        doc.save(owner)

    def _check_clash(self, user: str, role: str, users: dict[str, dict],
                     doc: dynsec.Document) -> None:
        """One name, one user: a device never takes over the agent's or another login."""
        kind = "device id" if role == "device" else "agent user"
        if user == ADMIN_USER:
            raise ProvisionError(f"{kind} {user!r} is the broker's admin user "
                                 f"({self.admin_password_path}): choose another name")
        known = users.get(user, {}).get("role")
        if known is not None and known != role:
            raise ProvisionError(f"{kind} {user!r} is already provisioned as "
                                 f"{'the agent' if known == 'agent' else 'a device'} in "
                                 f"{self.registry_path}: choose another name, or remove it "
                                 "from there and from the broker first")
        bound = doc.bound_to(user)
        if known is None and (doc.client(user) is not None
                              or (role == "device" and bound not in (None, user))):
            raise ProvisionError(f"{kind} {user!r} is already a login (or a login's client "
                                 f"id) in {self.dynsec_path} not made by gridcast provision: "
                                 f"choose another name, or delete that login (mosquitto_ctrl "
                                 f"dynsec deleteClient {bound or user})")

    def _live_url(self, broker: str) -> str | None:
        """The admin's URL when the site's broker answers at ``broker`` (HOST:PORT)."""
        if not broker or not self.site().get("broker"):
            return None  # no site broker yet: nothing can run this site's file
        import socket

        host, port = split_host_port(broker)
        try:
            socket.create_connection((host, port), LIVE_PROBE_S).close()
        except OSError:
            return None
        if self.site().get("client_certs") and not os.path.exists(
                os.path.join(self.folder, "clients", f"{ADMIN_USER}.crt")):
            self.issue_client_cert(ADMIN_USER)
        return self.agent_url(ADMIN_USER)

    def _set_user(self, user: str, role: str, password: str, doc: dynsec.Document,
                  broker: str, notes: list[str]) -> bool:
        """Give ``user`` its password and role: on the site's running broker when it takes
        the admin login (True), else in the plugin's file, read when mosquitto starts."""
        from gridcast.agent.dynsec_control import DynsecControl
        from gridcast.agent.mqtt import MqttError

        url = self._live_url(broker)
        if url is not None:
            with open(self.admin_password_path, encoding="utf-8") as f:
                admin_password = f.read().strip()
            try:
                with DynsecControl(url, ADMIN_USER, admin_password,
                                   timeout_s=CONTROL_TIMEOUT_S) as control:
                    control.set_user(user, role, password)  # refused: DynsecError, one line
                return True
            except MqttError as exc:
                # Not this site's broker running the plugin: another service at the
                # address, or a migrated site's broker still on its password file.
                notes.append(f"{broker} did not take the admin login {ADMIN_USER} ({exc}); "
                             f"{user} is written to {self.dynsec_path} instead, which "
                             f"mosquitto reads when it starts: if this site's broker runs, "
                             f"restart it now (mosquitto -c {self.conf_path}), or it "
                             "overwrites the file at its next change")
        doc.set_user(user, role, dynsec.password_fields(password))
        self._save(doc)
        return False

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
        owner = _broker_owner()
        if owner is not None:
            os.chown(path, *owner)

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
        dynsec.plugin_path()  # a clear line if the broker cannot load the plugin
        os.makedirs(self.folder, exist_ok=True)
        users = self._load()
        notes: list[str] = []
        doc = self._document(users, notes)
        self._check_clash(user, role, users, doc)
        password = secrets.token_urlsafe(18)
        # First: if the broker refuses, nothing else changed.
        live = self._set_user(user, role, password, doc, broker or self.site().get("broker", ""),
                              notes)
        self._write_private(self.registry_path,
                            json.dumps({**users, user: {"role": role}}, indent=1) + "\n")
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
            self._write_private(config_path, device_files.config_json(
                user, key, url, mqtt_user=user, mqtt_password=password, ca_pem=ca_pem,
                client_cert_pem=cert_pem, client_key_pem=key_pem,
                command_key=device_key(key, user)))
        elif role == "agent":
            config_path = os.path.join(self.folder, f"{user}.password")
            self._write_private(config_path, password + "\n")
            if tls:
                self.issue_api_cert()
        return Provisioned(user, password, config_path, cert, live, notes)

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
                + mosquitto_conf.security_lines(self.dynsec_path))
