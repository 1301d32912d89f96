"""Chunked bundle transfer, sans I/O: the device's receiver and the agent's sender.

Both sides only turn messages into decisions; transports and files are passed
in. The receiver keeps nothing in RAM but counters: chunks go straight to a
temporary file, out-of-order chunks are refused with the offset to resume from
(a gap is never buffered), and repeated chunks are acknowledged without being
written again, so every message is idempotent.

Storage interface the receiver needs (firmware/store.py implements it on a
flash filesystem, MemoryStore below in RAM for tests):

    partial()                 -> (sha256, size, received) of an unfinished transfer, or None
    begin(sha256, size)       start a new temporary file (drops any unfinished one)
    append(data)              add bytes at the end of the temporary file
    open_partial()            -> readable file of the temporary bytes (for verification)
    discard()                 delete the temporary file
    activate()                temporary -> active, active -> previous, atomically
    active()                  -> (track_id, bundle_version, sha256) or None

Runs on CPython and MicroPython.
"""

import hashlib

from . import bundle_format, bundle_reader, messages
from .errors import ProtocolError
from .hmac_sha256 import equal
from .reasons import (
    BAD_OFFSET,
    DIGEST_MISMATCH,
    INCONSISTENT,
    INTERNAL,
    NO_TRANSFER,
    OK,
    REPLAYED,
    STORAGE_ERROR,
    TOO_LARGE,
)


def file_sha256(f, buf_bytes=256):
    """SHA-256 of a file's bytes from its current position, read through a small buffer."""
    h = hashlib.sha256()
    buf = bytearray(buf_bytes)
    view = memoryview(buf)
    while True:
        n = f.readinto(buf)
        if not n:
            return h.digest()
        h.update(view[:n] if n < buf_bytes else view)


class Outgoing:
    """One message to send: its kind (callers route on it, e.g. to a topic) and its bytes.

    The sans-I/O parts return these, so no caller decodes what was just encoded."""

    def __init__(self, kind, payload):
        self.kind = kind
        self.payload = payload

    def __repr__(self):
        return "Outgoing(%s, %d bytes)" % (self.kind, len(self.payload))


def _out(kind, **fields):
    return Outgoing(kind, messages.encode(kind, **fields))


class Receiver:
    """Device side: answers offers, chunks and activate with the messages to send back."""

    def __init__(self, store, keys, fw_version):
        self.store = store
        self.keys = keys
        self.fw_version = fw_version
        self.transfer_id = 0
        self.size = 0
        self.sha256 = b""
        self.track_id = ""
        self.bundle_version = 0
        self.next_offset = 0
        self.verified = None  # BundleInfo once the whole bundle verified
        self.last_error = OK
        self.activated = (None, None)  # (transfer id, reply): a repeated activate gets it again

    def _reply(self, kind, **fields):
        return _out(kind, **fields)

    def _reject(self, transfer_id, code, detail):
        self.last_error = code
        return self._reply("rejected", transfer_id=transfer_id, reason=code, detail=detail[:200])

    def handle(self, msg):
        """The reply (an ``Outgoing``) to one decoded message; None when it needs none."""
        if msg.kind == "bundle_offer":
            return self._offer(msg)
        if msg.kind == "chunk":
            return self._chunk(msg)
        if msg.kind == "activate":
            return self._activate(msg)
        return None

    def _offer(self, m):
        if m.size > bundle_format.MAX_BUNDLE_BYTES or m.size == 0:
            return self._reject(m.transfer_id, TOO_LARGE, "offer of %d bytes (limit %d)"
                                % (m.size, bundle_format.MAX_BUNDLE_BYTES))
        active = self.store.active()
        if active is not None:
            track, version, sha = active
            if sha == m.sha256:  # already playing this exact bundle: nothing to send
                return self._reply("activated", track_id=track, bundle_version=version,
                                   sha256=sha)
            if track == m.track_id and m.bundle_version < version:
                return self._reject(m.transfer_id, REPLAYED, "track %r v%d is older than the "
                                    "active v%d" % (track, m.bundle_version, version))
        self.transfer_id = m.transfer_id
        self.size, self.sha256 = m.size, m.sha256
        self.track_id, self.bundle_version = m.track_id, m.bundle_version
        self.verified = None
        partial = self.store.partial()
        try:
            if partial is not None and partial[0] == m.sha256 and partial[1] == m.size:
                self.next_offset = partial[2]  # resume after a drop or a power cut
            else:
                self.store.begin(m.sha256, m.size)
                self.next_offset = 0
        except OSError as exc:
            return self._reject(m.transfer_id, STORAGE_ERROR, "cannot start: %s" % exc)
        if self.next_offset == self.size:
            return self._complete()
        return self._reply("chunk_ack", transfer_id=m.transfer_id, next_offset=self.next_offset)

    def _chunk(self, m):
        if m.transfer_id != self.transfer_id or self.size == 0:
            code = REPLAYED if m.transfer_id < self.transfer_id else NO_TRANSFER
            self.last_error = code
            return self._reply("chunk_nack", transfer_id=m.transfer_id,
                               next_offset=0, reason=code)
        end = m.offset + len(m.data)
        if end > self.size:
            self.last_error = BAD_OFFSET
            return self._reply("chunk_nack", transfer_id=m.transfer_id,
                               next_offset=self.next_offset, reason=BAD_OFFSET)
        if m.offset > self.next_offset:  # a gap: reordered or lost; ask for the resume point
            self.last_error = BAD_OFFSET
            return self._reply("chunk_nack", transfer_id=m.transfer_id,
                               next_offset=self.next_offset, reason=BAD_OFFSET)
        if end <= self.next_offset:  # repeated (maybe our ack was lost): ack again
            return self._reply("chunk_ack", transfer_id=m.transfer_id,
                               next_offset=self.next_offset)
        skip = self.next_offset - m.offset  # overlap with bytes already stored
        fresh = m.data if skip == 0 else m.data[skip:]
        try:
            self.store.append(fresh)
        except OSError as exc:
            return self._reject(m.transfer_id, STORAGE_ERROR, "write failed: %s" % exc)
        self.next_offset = end
        if self.next_offset == self.size:
            return self._complete()
        return self._reply("chunk_ack", transfer_id=m.transfer_id, next_offset=self.next_offset)

    def _complete(self):
        """All bytes are in: verify before anything else may use them."""
        try:
            f = self.store.open_partial()
            try:
                if not equal(file_sha256(f), self.sha256):
                    raise ProtocolError(DIGEST_MISMATCH, "received bytes differ from the "
                                        "offered SHA-256")
                f.seek(0)
                info = bundle_reader.verify(f, self.size, self.keys, self.fw_version)
            finally:
                f.close()
        except ProtocolError as exc:
            self._drop()
            return self._reject(self.transfer_id, exc.code, str(exc))
        except OSError as exc:
            self._drop()
            return self._reject(self.transfer_id, STORAGE_ERROR, "cannot read back: %s" % exc)
        # The offer's claims are not signed; the verified header is what counts.
        if info.track_id != self.track_id or info.bundle_version != self.bundle_version:
            self._drop()
            return self._reject(self.transfer_id, INCONSISTENT, "offer said %r v%d, bundle is "
                                "%r v%d" % (self.track_id, self.bundle_version, info.track_id,
                                            info.bundle_version))
        active = self.store.active()
        if active is not None and active[0] == info.track_id and \
                info.bundle_version < active[1]:
            self._drop()
            return self._reject(self.transfer_id, REPLAYED, "track %r v%d is older than the "
                                "active v%d" % (info.track_id, info.bundle_version, active[1]))
        self.verified = info
        return self._reply("chunk_ack", transfer_id=self.transfer_id, next_offset=self.size)

    def _drop(self):
        try:
            self.store.discard()
        except OSError:
            pass
        self.size = 0
        self.next_offset = 0
        self.verified = None

    def _activate(self, m):
        if m.transfer_id == self.activated[0]:
            return self.activated[1]
        if m.transfer_id != self.transfer_id or self.verified is None:
            return self._reject(m.transfer_id, NO_TRANSFER, "no verified bundle for transfer %d"
                                % m.transfer_id)
        info = self.verified
        try:
            self.store.activate(info.track_id, info.bundle_version, self.sha256)
        except OSError as exc:
            return self._reject(m.transfer_id, STORAGE_ERROR, "activation failed: %s" % exc)
        except Exception as exc:
            return self._reject(m.transfer_id, INTERNAL, "activation failed: %r" % exc)
        self.size = 0
        self.verified = None
        reply = self._reply("activated", track_id=info.track_id,
                            bundle_version=info.bundle_version, sha256=self.sha256)
        self.activated = (m.transfer_id, reply)
        return reply


class MemoryStore:
    """The storage interface in RAM: for tests and the protocol's own fuzzing."""

    def __init__(self):
        self.temp = None  # type: list | None
        self.active_entry = None  # (track, version, sha256, bytes)
        self.previous_entry = None

    def partial(self):
        if self.temp is None:
            return None
        return self.temp[0], self.temp[1], len(self.temp[2])

    def begin(self, sha256, size):
        self.temp = [sha256, size, bytearray()]

    def append(self, data):
        self._temp()[2].extend(data)

    def _temp(self):
        if self.temp is None:
            raise OSError("no transfer in progress")
        return self.temp

    def open_partial(self):
        import io

        return io.BytesIO(bytes(self._temp()[2]))

    def discard(self):
        self.temp = None

    def activate(self, track_id, version, sha256):
        self.previous_entry = self.active_entry
        self.active_entry = (track_id, version, sha256, bytes(self._temp()[2]))
        self.temp = None

    def active(self):
        if self.active_entry is None:
            return None
        return self.active_entry[0], self.active_entry[1], self.active_entry[2]


class Sender:
    """Agent side of one transfer: which chunks to send next, given the device's replies.

    Up to ``window`` chunks are in flight; acks are cumulative (``next_offset``),
    a nack or a timeout rewinds to the device's resume offset. The caller owns
    time: it calls ``on_timeout()`` when no reply came in time.
    """

    def __init__(self, bundle, transfer_id, chunk_size, window, track_id, bundle_version):
        self.bundle = bundle
        self.transfer_id = transfer_id
        self.chunk_size = chunk_size
        self.window = max(1, window)
        self.track_id = track_id
        self.bundle_version = bundle_version
        self.sha256 = hashlib.sha256(bundle).digest()
        self.acked = 0  # device has everything before this offset
        self.sent_to = 0  # we have sent everything before this offset
        self.state = "offering"  # offering, sending, activating, done, failed
        self.error = None  # (reason, detail) when failed

    def offer(self):
        return _out("bundle_offer", transfer_id=self.transfer_id,
                               size=len(self.bundle), sha256=self.sha256,
                               chunk_size=self.chunk_size, track_id=self.track_id,
                               bundle_version=self.bundle_version)

    def _fill_window(self):
        out = []
        while self.sent_to < len(self.bundle) and \
                self.sent_to < self.acked + self.window * self.chunk_size:
            end = min(self.sent_to + self.chunk_size, len(self.bundle))
            out.append(_out("chunk", transfer_id=self.transfer_id, offset=self.sent_to,
                            data=self.bundle[self.sent_to:end]))
            self.sent_to = end
        return out

    def on_reply(self, msg):
        """The ``Outgoing`` messages to send after a reply from the device."""
        if msg.kind == "activated":
            if msg.sha256 == self.sha256:
                self.state = "done"
            return []
        if msg.kind == "rejected":
            self.state = "failed"
            self.error = (msg.reason, msg.detail)
            return []
        if getattr(msg, "transfer_id", None) != self.transfer_id:
            return []  # a late reply to an older transfer
        if msg.kind == "chunk_ack":
            self.acked = max(self.acked, min(msg.next_offset, len(self.bundle)))
            self.sent_to = max(self.sent_to, self.acked)
            if self.acked == len(self.bundle):
                self.state = "activating"
                return [_out("activate", transfer_id=self.transfer_id)]
            self.state = "sending"
            return self._fill_window()
        if msg.kind == "chunk_nack":
            if msg.reason in (NO_TRANSFER, REPLAYED):
                self.state = "offering"  # the device lost the transfer (reboot): offer again
                self.acked = self.sent_to = 0
                return [self.offer()]
            self.acked = min(msg.next_offset, len(self.bundle))
            self.sent_to = self.acked  # go back to the device's resume point
            return self._fill_window()
        return []

    def on_timeout(self):
        """Nothing heard: resend from the last acknowledged offset (or the offer)."""
        if self.state == "offering":
            return [self.offer()]
        if self.state == "activating":
            return [_out("activate", transfer_id=self.transfer_id)]
        self.sent_to = self.acked
        return self._fill_window()

    @property
    def finished(self):
        return self.state in ("done", "failed")
