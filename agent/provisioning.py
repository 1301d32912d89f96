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

It writes the device's config.json (credentials, broker, site key) for
``gridcast flash --config`` and prints nothing secret. Re-provisioning a device
rotates its password. Point mosquitto at the files (``password_file``, ``acl_file``,
``allow_anonymous false``) and reload it (SIGHUP) to apply.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from gridcast.agent import device_files
from gridcast.protocol import topics
from gridcast.protocol.errors import GridcastError

AGENT_USER = "gridcast-agent"


class ProvisionError(GridcastError):
    """Provisioning could not complete; nothing was changed."""


@dataclass
class Provisioned:
    user: str
    password: str
    config_path: str | None


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

    def provision(self, user: str, role: str = "device", key: bytes | None = None,
                  broker: str = "", config_dir: str | None = None) -> Provisioned:
        if role == "device" and not topics.valid_device_id(user):
            raise ProvisionError(f"device id {user!r}: use 1-32 of A-Z a-z 0-9 _ -")
        if role == "device" and key is None:
            raise ProvisionError("a device needs the site key (--key-file)")
        os.makedirs(self.folder, exist_ok=True)
        users = self._load()
        password = secrets.token_urlsafe(18)
        updated = {**users, user: {"role": role}}
        self._set_password(user, password)  # first: if it fails, nothing else changed
        self._write_acl(updated)
        self._write_private(self.registry_path, json.dumps(updated, indent=1) + "\n")
        config_path = None
        if role == "device" and config_dir is not None:
            assert key is not None
            os.makedirs(config_dir, exist_ok=True)
            config_path = os.path.join(config_dir, f"{user}.config.json")
            fd, tmp = tempfile.mkstemp(dir=config_dir, prefix=".tmp-")
            with os.fdopen(fd, "w") as f:
                f.write(device_files.config_json(user, key, broker, mqtt_user=user,
                                                 mqtt_password=password))
            os.chmod(tmp, 0o600)
            os.replace(tmp, config_path)
        elif role == "agent":
            config_path = os.path.join(self.folder, f"{user}.password")
            self._write_private(config_path, password + "\n")
        return Provisioned(user, password, config_path)

    def mosquitto_conf(self, anonymous_line: bool = True) -> str:
        """The lines a mosquitto listener needs to enforce what was provisioned."""
        return (("allow_anonymous false\n" if anonymous_line else "")
                + f"password_file {self.passwd_path}\nacl_file {self.acl_path}\n")
