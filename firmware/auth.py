"""What the device checks before it acts on a message (docs/protocol.md 11).

``CommandAuth.check(msg, received_us)`` returns the message to act on (the inner one
of an authentic, fresh ``sealed`` message, or the message itself when it needs no
seal) or raises ProtocolError with the reason. Key rotation messages that passed are
carried out by ``install`` / ``retire``. Runs on MicroPython and CPython.
"""

from gridcast.firmware.clocksync import OpenRequests
from gridcast.protocol import command_auth, messages
from gridcast.protocol.errors import ProtocolError
from gridcast.protocol.reasons import INCONSISTENT, MALFORMED, UNAUTHENTICATED


class CommandAuth:
    def __init__(self, keys, boot, sync):
        """``keys``: the device's DeviceKeys; ``boot``: this boot's id (hello, telemetry);
        ``sync``: the clock estimate, for the agent-time window."""
        self.keys = keys
        self.sync = sync
        self.guard = command_auth.Guard(keys.command, boot)
        self.open_syncs = OpenRequests()
        # A dev setup (key derived from the bundle key) takes unsealed commands until its
        # agent has sealed one: from then on, in this boot, only sealed ones.
        self.sealed_seen = False
        self.sealing_key = b""  # the command key of the last sealed message that passed
        self.inner_tag = 0  # tag inside the sealed message last checked (0: none)

    def check(self, msg, received_us):
        self.inner_tag = 0
        if msg.tag != messages.SEALED:
            if msg.tag in command_auth.AUTHENTICATED_TAGS:
                if self.keys.mode == command_auth.AUTH_REQUIRED or self.sealed_seen or \
                        msg.tag in (messages.KEY_INSTALL, messages.KEY_RETIRE):
                    raise ProtocolError(UNAUTHENTICATED, "%s must come sealed (this device "
                                        "checks commands with key %s)"
                                        % (msg.kind, self.keys.ids_text()))
                if msg.tag == messages.SYNC_RESP:
                    self._check_sync_open(msg, received_us)
            return msg
        key = self.guard.verify(msg)
        inner = messages.decode(msg.body)
        self.inner_tag = inner.tag
        if inner.tag == messages.SEALED:
            raise ProtocolError(MALFORMED, "a sealed message inside a sealed message")
        if inner.tag == messages.SYNC_RESP:
            # Fresh by the device's own (seq, t1); the counter plays no part.
            self._check_sync_open(inner, received_us)
        else:
            agent_now = self.sync.to_agent(received_us) if self.sync.synced else None
            self.guard.check_fresh(msg.counter, msg.sent_us, agent_now)
        if inner.tag == messages.KEY_RETIRE and inner.key_id != msg.key_id:
            raise ProtocolError(INCONSISTENT, "key_retire keeping %s must be sealed with it, "
                                "not with %s" % (inner.key_id, msg.key_id))
        self.sealed_seen = True
        self.sealing_key = key
        return inner

    def _check_sync_open(self, msg, received_us):
        code = self.open_syncs.take(msg.seq, msg.t1_us, received_us)
        if code:
            raise ProtocolError(code, "sync_resp seq %d answers no open request" % msg.seq)

    def install(self, msg):
        """Keep the command key (and bundle key) of a checked ``key_install``; OSError if
        keys.json cannot be written (nothing changed then)."""
        key = self.sealing_key
        command = command_auth.unwrap(key, b"c", msg.key, msg.key_id)
        bundle = b""
        if msg.bundle_key:
            bundle = command_auth.unwrap(key, b"b", msg.bundle_key, msg.bundle_key_id)
        self.keys.install(msg.key_id, command, msg.bundle_key_id, bundle)

    def retire(self, msg):
        self.keys.retire(msg.key_id)
