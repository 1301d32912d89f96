"""Sealing what the agent sends, at the transport edge (docs/protocol.md 11).

Every transport holds one ``CommandSigner`` (or none, for a site without keys) and
passes each outgoing message through ``seal``: messages that change state or time
go out as ``sealed``, under the command key of the device they are for (derived from
the site key), with a rising counter, the agent time and the device's boot id from
its hello. Senders never seal themselves, so none can forget.

During a key rotation the signer holds two site keys and seals under the newest
one the device says it holds (hello.key_ids): each device switches the moment it
has the new key, with no instant at which it holds none the agent uses.
"""

from __future__ import annotations

import os
import threading
import time

from gridcast.protocol import command_auth, keys, messages
from gridcast.protocol.key_id import key_id

KEY_FILE_ENV = "GRIDCAST_KEY_FILE"  # the same variable the agent's config reads


def message_tag(payload: bytes) -> int:
    """The tag of an encoded message without decoding it (-1 if it is not a small array
    starting with a small int, which every tag so far is)."""
    if len(payload) >= 2 and 0x91 <= payload[0] <= 0x9F and payload[1] < 0x80:
        return payload[1]
    return -1


class CommandSigner:
    def __init__(self, site_key: bytes) -> None:
        self.site_keys: list[bytes] = [site_key]  # oldest first; the newest is preferred
        self._device_keys: dict[tuple[bytes, str], tuple[bytes, str]] = {}
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()  # MQTT seals sync answers in its network thread
        self.sealed = 0

    @classmethod
    def from_env(cls) -> CommandSigner | None:
        """A signer for the key file named by GRIDCAST_KEY_FILE, or None when unset."""
        path = os.environ.get(KEY_FILE_ENV)
        return cls(keys.load(path)) if path else None

    def device_key(self, device_id: str, site_key: bytes) -> tuple[bytes, str]:
        """(command key, its key id) of ``device_id`` under ``site_key``."""
        with self._lock:
            found = self._device_keys.get((site_key, device_id))
            if found is None:
                key = command_auth.device_key(site_key, device_id)
                found = self._device_keys[(site_key, device_id)] = (key, key_id(key))
            return found

    def add_key(self, site_key: bytes) -> None:
        """The next site key: preferred for every device that holds its command key."""
        if site_key not in self.site_keys:
            self.site_keys.append(site_key)

    def forget_old_keys(self) -> None:
        """Keep only the newest site key (after every device retired the others)."""
        self.site_keys = self.site_keys[-1:]

    def key_for(self, device_id: str, hello: messages.Message | None) -> tuple[bytes, str]:
        """The command key to seal with: the newest one the device holds, else the newest
        (the device then refuses with unknown_key, naming the keys it holds)."""
        held = set(hello.key_ids.split(",")) if hello is not None and hello.key_ids else set()
        for site_key in reversed(self.site_keys):
            key, kid = self.device_key(device_id, site_key)
            if kid in held:
                return key, kid
        return self.device_key(device_id, self.site_keys[-1])

    def _next_counter(self, device_id: str) -> int:
        # Microseconds of Unix time, and always above the last one: rises across agent
        # restarts and across the agent's processes without any state kept on disk.
        with self._lock:
            counter = max(self._counters.get(device_id, 0) + 1, time.time_ns() // 1000)
            self._counters[device_id] = counter
            return counter

    def seal(self, device_id: str, hello: messages.Message | None, payload: bytes,
             key: tuple[bytes, str] | None = None) -> bytes:
        """``payload`` sealed for ``device_id`` if it is a message that must be and the
        device checks seals (its hello says auth > 0); otherwise ``payload`` unchanged.
        ``key``: seal under this (command key, id) instead of the preferred one."""
        tag = message_tag(payload)
        if tag not in command_auth.AUTHENTICATED_TAGS or hello is None or not hello.auth:
            return payload
        command_key, kid = key or self.key_for(device_id, hello)
        counter = 0 if tag == command_auth.SYNC_RESP_TAG else self._next_counter(device_id)
        self.sealed += 1
        return command_auth.seal(command_key, kid, hello.boot, counter,
                                 time.time_ns() // 1000, payload)
