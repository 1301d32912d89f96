"""mosquitto's dynamic-security plugin: the JSON document it loads, with gridcast's users.

A provisioned broker authenticates and authorises through the plugin
(``mosquitto_dynamic_security.so``, mosquitto 2.0) instead of a password file and an
ACL file, because the plugin can bind a login to one MQTT client id: a device's
client is bound to its device id, so one device's password cannot log in under
another device's id and make mosquitto throw that device off (a client-id takeover,
docs/security.md). Agent-side users (the agent daemon, the CLI, the admin) are not
bound: they choose their own ids.

Each user is a *client* with one *role* (a list of ACLs). mosquitto 2.0.11's roles
have no ``%c``/``%u`` substitution, so every device has a role of its own,
``gridcast-device-<id>``, with the same topics the ACL file used to give:

- a device may publish only its own status, hello, reply, sync request and telemetry,
  subscribe to and receive only its own commands, bundle chunks and sync answers and
  the fleet-wide command topic;
- the agent role sends and reads the whole ``gridcast/v1/#`` tree (its collectors'
  shared subscription ``$share/<group>/gridcast/v1/...`` included);
- the admin role may only send ``$CONTROL/dynamic-security`` commands and read their
  answers: ``gridcast provision`` adds users to a running broker with it
  (agent/dynsec_control.py).

Everything not allowed is denied (``defaultACLAccess`` all false but unsubscribe).
Passwords are stored as the plugin stores them: PBKDF2-HMAC-SHA512 with a 12-byte
salt, 101 iterations (the plugin's own count for clients created at run time;
``mosquitto_passwd``'s ``$7$`` hashes are the same, so a password file converts
without new passwords). The plugin rewrites the file after every change made at run
time: while the broker runs, the file is its, and gridcast changes users through
``$CONTROL`` instead.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import secrets
from typing import Any

from gridcast.host.atomic_file import write_atomically
from gridcast.protocol import topics
from gridcast.protocol.errors import GridcastError

PLUGIN_FILE = "mosquitto_dynamic_security.so"
ITERATIONS = 101  # the plugin's PW_DEFAULT_ITERATIONS (see module doc)
SALT_BYTES = 12  # the plugin refuses any other salt length
HASH_BYTES = 64  # SHA-512
ADMIN_USER = "gridcast-admin"
DEVICE_ROLE_PREFIX = "gridcast-device-"
AGENT_ROLE = "gridcast-agent"
ADMIN_ROLE = "gridcast-admin"
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
# Where distributions put the plugin (Debian: the multiarch folder).
PLUGIN_GLOBS = tuple(f"{folder}/{PLUGIN_FILE}" for folder in (
    "/usr/lib/*", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/local/lib/*"))


class DynsecError(GridcastError):
    """The dynamic-security plugin or its file cannot be used; nothing was changed."""


def plugin_path() -> str:
    """The plugin's path on this machine (``GRIDCAST_DYNSEC_PLUGIN`` overrides)."""
    override = os.environ.get("GRIDCAST_DYNSEC_PLUGIN")
    if override:
        if not os.path.isfile(override):
            raise DynsecError(f"GRIDCAST_DYNSEC_PLUGIN={override}: no such file; point it at "
                              f"{PLUGIN_FILE} or unset it")
        return override
    for pattern in PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise DynsecError(f"mosquitto's dynamic-security plugin ({PLUGIN_FILE}) is not installed "
                      "(looked in /usr/lib, /usr/lib/*, /usr/lib64, /usr/local/lib): install "
                      "mosquitto 2.0 or later (Debian: apt-get install mosquitto), or set "
                      "GRIDCAST_DYNSEC_PLUGIN to its path")


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def device_acls(device_id: str) -> list[dict[str, Any]]:
    """The ACLs of a device's own role: its own topics only (see module doc)."""
    t = lambda leaf: topics.device_topic(device_id, leaf)  # noqa: E731
    acls = [_acl("publishClientSend", t(leaf))
            for leaf in (topics.STATUS, topics.HELLO, topics.REPLY, topics.SYNC_REQ,
                         topics.TELEMETRY)]
    for topic in [t(topics.CMD), t(topics.BUNDLE), t(topics.SYNC_RESP), topics.BROADCAST_CMD]:
        acls += [_acl("subscribeLiteral", topic), _acl("publishClientReceive", topic)]
    return acls


def agent_acls() -> list[dict[str, Any]]:
    tree = topics.PREFIX + "/#"
    return [_acl("publishClientSend", tree), _acl("publishClientReceive", tree),
            _acl("subscribePattern", tree), _acl("subscribePattern", "$share/+/" + tree)]


def admin_acls() -> list[dict[str, Any]]:
    return [_acl("publishClientSend", CONTROL_TOPIC), _acl("subscribeLiteral", RESPONSE_TOPIC),
            _acl("publishClientReceive", RESPONSE_TOPIC)]


def role_of(user: str, kind: str) -> tuple[str, list[dict[str, Any]]]:
    """(role name, ACLs) for a user of ``kind`` "device", "agent" or "admin"."""
    if kind == "device":
        return DEVICE_ROLE_PREFIX + user, device_acls(user)
    if kind == "agent":
        return AGENT_ROLE, agent_acls()
    if kind == "admin":
        return ADMIN_ROLE, admin_acls()
    raise ValueError(f"unknown kind of user {kind!r}")


def password_fields(password: str, salt: bytes | None = None,
                    iterations: int = ITERATIONS) -> dict[str, Any]:
    """The client's ``password``, ``salt`` and ``iterations`` as the plugin stores them."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    return {"password": base64.b64encode(digest).decode(),
            "salt": base64.b64encode(salt).decode(), "iterations": iterations}


def fields_from_passwd_hash(text: str) -> dict[str, Any] | None:
    """A ``mosquitto_passwd`` 2.0 hash (``$7$ITERATIONS$SALT$HASH``, PBKDF2-SHA512) as the
    plugin's fields; None for any other kind (mosquitto 1.x ``$6$``: one SHA-512 round)."""
    parts = text.strip().split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return None
    try:
        salt, digest = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except ValueError:
        return None
    if len(salt) != SALT_BYTES or len(digest) != HASH_BYTES:
        return None
    return {"password": parts[4], "salt": parts[3], "iterations": int(parts[2])}


def client_entry(user: str, kind: str, password: dict[str, Any]) -> dict[str, Any]:
    """A client of the document: a device is bound to its own id as MQTT client id."""
    entry: dict[str, Any] = {"username": user, "textname": f"gridcast {kind}",
                             "roles": [{"rolename": role_of(user, kind)[0], "priority": -1}],
                             **password}
    if kind == "device":
        entry["clientid"] = user
    return entry


class Document:
    """The plugin's JSON document: ``defaultACLAccess``, ``clients``, ``groups``, ``roles``.
    Entries gridcast did not make are kept as they are."""

    def __init__(self, path: str, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self.data: dict[str, Any] = data if data is not None else {
            "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                                 "subscribe": False, "unsubscribe": True},
            "clients": [], "groups": [], "roles": []}

    @classmethod
    def load(cls, path: str) -> Document:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as exc:
            raise DynsecError(f"cannot read {path} ({exc.strerror or exc}); run gridcast "
                              "provision as a user who may (root, or the broker's user)") from exc
        except ValueError as exc:
            raise DynsecError(f"{path}: unreadable ({exc}); restore it from a backup or fix "
                              "it (it holds every broker login)") from exc
        if not (isinstance(data, dict) and isinstance(data.get("clients", []), list)
                and isinstance(data.get("roles", []), list)):
            raise DynsecError(f"{path}: not a dynamic-security document (expected an object "
                              "with the lists clients and roles)")
        return cls(path, data)

    def client(self, user: str) -> dict[str, Any] | None:
        return next((c for c in self.data.get("clients", []) if c.get("username") == user),
                    None)

    def bound_to(self, client_id: str) -> str | None:
        """The user whose logins are bound to ``client_id``, if any."""
        return next((c.get("username") for c in self.data.get("clients", [])
                     if c.get("clientid") == client_id), None)

    def set_user(self, user: str, kind: str, password: dict[str, Any]) -> None:
        """Add or replace the user's client and its role."""
        rolename, acls = role_of(user, kind)
        roles = [r for r in self.data.setdefault("roles", []) if r.get("rolename") != rolename]
        self.data["roles"] = [*roles, {"rolename": rolename, "acls": acls}]
        clients = [c for c in self.data.setdefault("clients", []) if c.get("username") != user]
        self.data["clients"] = [*clients, client_entry(user, kind, password)]

    def save(self, owner: tuple[int, int] | None = None) -> None:
        """Write it atomically, readable by its owner only (password hashes); ``owner``
        (uid, gid): hand it to the broker's user."""
        try:
            write_atomically(self.path, json.dumps(self.data, indent=1) + "\n", mode=0o600,
                             owner=owner, folder_mode=0o700)
        except OSError as exc:
            raise DynsecError(f"cannot write {self.path} ({exc.strerror or exc}); run "
                              "gridcast provision as a user who may write there (root for "
                              "/etc/mosquitto), or give --mosquitto-dir") from exc


def commands_for(user: str, kind: str, password: str) -> tuple[list[dict], list[dict]]:
    """The ``$CONTROL`` commands that make ``user`` on a running broker: (create them,
    update them if they exist). The password travels in clear inside TLS: the plugin
    hashes it itself."""
    rolename, acls = role_of(user, kind)
    client = client_entry(user, kind, {"password": password})
    create = [{"command": "createRole", "rolename": rolename, "acls": acls},
              {"command": "createClient", **client}]
    update = [{"command": "modifyRole", "rolename": rolename, "acls": acls},
              {"command": "modifyClient", **client, "clientid": client.get("clientid", "")}]
    return create, update
