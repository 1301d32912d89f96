"""The device's keys: the command keys sealed messages are checked with, and the bundle
keys bundles are checked with (docs/protocol.md 11).

At first they come from config.json: the bundle key is ``key_hex`` (the site key);
the command key is ``command_key`` (written by ``gridcast provision``), else derived
from the site key exactly as the agent derives it (dev setups: simulator, demo,
HIL). Key rotation adds keys and retires old command keys; what it changed is kept
in keys.json (written to a temporary file and renamed), tied to the config's
command key so that a re-provisioned device starts from its new config.
"""

import binascii
import json
import os

from gridcast.protocol import command_auth
from gridcast.protocol.key_id import key_id

PATH = "keys.json"
MAX_COMMAND_KEYS = 2  # the current one and the next, during a rotation
MAX_BUNDLE_KEYS = 4  # bundles already stored stay verifiable after a rotation


class DeviceKeys:
    def __init__(self, cfg, path=PATH):
        self.path = path
        site = cfg.get("key") or b""
        command = cfg.get("command_key") or b""
        self.mode = command_auth.AUTH_REQUIRED if command else command_auth.AUTH_NONE
        if not command and site:
            command = command_auth.device_key(site, cfg["device_id"])
            self.mode = command_auth.AUTH_OPTIONAL
        self.base_id = key_id(command) if command else ""
        # Dicts are shared with the guard, the bundle store and the transfer receiver:
        # they are changed in place, never replaced.
        self.command = {}
        self.order = []  # command key ids, oldest first
        self.bundle = {}
        if command:
            self._add_command(self.base_id, command)
        if site:
            self.bundle[key_id(site)] = site
        self._load()

    def _add_command(self, kid, key):
        if kid not in self.command:
            self.order.append(kid)
        self.command[kid] = key
        while len(self.order) > MAX_COMMAND_KEYS:
            del self.command[self.order.pop(0)]

    def ids_text(self):
        return ",".join(self.order)

    def install(self, command_id, command_key, bundle_id, bundle_key):
        """Accept a second command key (and bundle key) from now on; OSError if it cannot
        be kept (then nothing changed)."""
        saved = (list(self.order), dict(self.command), dict(self.bundle))
        self._add_command(command_id, command_key)
        if bundle_key:
            self.bundle[bundle_id] = bundle_key
            while len(self.bundle) > MAX_BUNDLE_KEYS:
                for kid in self.bundle:
                    if kid != bundle_id:
                        del self.bundle[kid]
                        break
        try:
            self._save()
        except OSError:
            self._restore(saved)
            raise

    def retire(self, keep_id):
        """Drop every command key but ``keep_id``. Bundle keys stay: bundles stored under an
        old key still verify at boot, and a new bundle needs a sealed offer anyway."""
        saved = (list(self.order), dict(self.command), dict(self.bundle))
        for kid in list(self.order):
            if kid != keep_id:
                self.order.remove(kid)
                del self.command[kid]
        try:
            self._save()
        except OSError:
            self._restore(saved)
            raise

    def _restore(self, saved):
        order, command, bundle = saved
        self.order[:] = order
        self.command.clear()
        self.command.update(command)
        self.bundle.clear()
        self.bundle.update(bundle)

    def _save(self):
        data = {"base": self.base_id,
                "command": [[k, binascii.hexlify(self.command[k]).decode()] for k in self.order],
                "bundle": [[k, binascii.hexlify(self.bundle[k]).decode()] for k in self.bundle]}
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(data))
        os.rename(tmp, self.path)

    def _load(self):
        try:
            with open(self.path) as f:
                data = json.loads(f.read())
        except (OSError, ValueError):
            return
        if not isinstance(data, dict) or data.get("base") != self.base_id:
            return  # another config's keys: the device was provisioned again
        try:
            command = [(k, binascii.unhexlify(h)) for k, h in data["command"]]
            bundle = [(k, binascii.unhexlify(h)) for k, h in data["bundle"]]
        except (KeyError, TypeError, ValueError):
            return
        if not command:
            return
        self.order[:] = []
        self.command.clear()
        for k, key in command:
            self._add_command(k, key)
        for k, key in bundle:
            self.bundle[k] = key
