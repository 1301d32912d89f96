"""The bundle store on the device's filesystem: receive, activate, roll back, recover.

    bundles/incoming.gcb   bytes received so far (appended in order)
    bundles/incoming.json  {"sha256": hex, "size": n} of the transfer in progress
    bundles/active.gcb     the bundle being played
    bundles/previous.gcb   the one before it (for fall back and rollback)

A .gcb file describes itself (track, version, signature), so the store keeps no
other state: whatever a power cut leaves behind, ``recover()`` at boot verifies
what is there and ends with a valid active bundle (old or new, never a mix) or
none. Each step below is one rename or delete, the atomic operations of the
filesystem; metadata is written to a .tmp file and renamed into place.

Implements the storage interface of protocol/transfer.py.
"""

import json
import os

from gridcast.protocol import bundle_reader
from gridcast.protocol.errors import ProtocolError

DIR = "bundles"
INCOMING = DIR + "/incoming.gcb"
INCOMING_META = DIR + "/incoming.json"
ACTIVE = DIR + "/active.gcb"
PREVIOUS = DIR + "/previous.gcb"


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def size_of(path):
    return os.stat(path)[6]


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


class BundleStore:
    def __init__(self, keys, fw_version, root=""):
        self.keys = keys
        self.fw_version = fw_version
        self.root = root
        self._append = None  # open file while a transfer is in progress
        self.active_info = None  # BundleInfo of active.gcb
        self.active_sha256 = b""
        try:
            os.mkdir(self._p(DIR))
        except OSError:
            pass

    def _p(self, path):
        return self.root + path

    # --- verification -------------------------------------------------------
    def verify_file(self, path):
        """BundleInfo of a stored bundle, or None when it does not verify."""
        try:
            with open(self._p(path), "rb") as f:
                return bundle_reader.verify(f, size_of(self._p(path)), self.keys,
                                            self.fw_version)
        except (OSError, ProtocolError):
            return None

    def _file_sha(self, path):
        from gridcast.protocol.transfer import file_sha256

        with open(self._p(path), "rb") as f:
            return file_sha256(f)

    # --- boot ---------------------------------------------------------------
    def recover(self):
        """Make the filesystem consistent after any interruption; return the active info."""
        self._close_append()
        for name in os.listdir(self._p(DIR)):
            if name.endswith(".tmp"):
                remove(self._p(DIR + "/" + name))
        if exists(self._p(INCOMING)) and not exists(self._p(INCOMING_META)):
            remove(self._p(INCOMING))
        info = self.verify_file(ACTIVE) if exists(self._p(ACTIVE)) else None
        if info is None:
            remove(self._p(ACTIVE))
            # Interrupted activation: a complete, verified incoming bundle goes first.
            partial = self.partial()
            if partial is not None and partial[2] == partial[1] and \
                    self.verify_file(INCOMING) is not None:
                os.rename(self._p(INCOMING), self._p(ACTIVE))
                remove(self._p(INCOMING_META))
            if not exists(self._p(ACTIVE)) and exists(self._p(PREVIOUS)):
                if self.verify_file(PREVIOUS) is not None:
                    os.rename(self._p(PREVIOUS), self._p(ACTIVE))
                else:
                    remove(self._p(PREVIOUS))
            info = self.verify_file(ACTIVE) if exists(self._p(ACTIVE)) else None
        self._set_active(info)
        return info

    def _set_active(self, info):
        self.active_info = info
        self.active_sha256 = self._file_sha(ACTIVE) if info is not None else b""

    # --- the transfer storage interface ------------------------------------------
    def partial(self):
        try:
            with open(self._p(INCOMING_META)) as f:
                meta = json.loads(f.read())
            import binascii

            sha = binascii.unhexlify(meta["sha256"])
            size = int(meta["size"])
            received = size_of(self._p(INCOMING)) if exists(self._p(INCOMING)) else 0
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if received > size:
            return None
        return sha, size, received

    def begin(self, sha256, size):
        import binascii

        self._close_append()
        remove(self._p(INCOMING))
        tmp = self._p(INCOMING_META + ".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps({"sha256": binascii.hexlify(sha256).decode(), "size": size}))
        os.rename(tmp, self._p(INCOMING_META))
        with open(self._p(INCOMING), "wb"):
            pass

    def append(self, data):
        if self._append is None:
            self._append = open(self._p(INCOMING), "ab")
        self._append.write(data)
        self._append.flush()

    def _close_append(self):
        if self._append is not None:
            try:
                self._append.close()
            except OSError:
                pass
            self._append = None

    def open_partial(self):
        self._close_append()
        return open(self._p(INCOMING), "rb")

    def discard(self):
        self._close_append()
        remove(self._p(INCOMING))
        remove(self._p(INCOMING_META))

    def activate(self, track_id, version, sha256):
        self._close_append()
        remove(self._p(PREVIOUS))
        if exists(self._p(ACTIVE)):
            os.rename(self._p(ACTIVE), self._p(PREVIOUS))
        os.rename(self._p(INCOMING), self._p(ACTIVE))
        remove(self._p(INCOMING_META))
        info = self.verify_file(ACTIVE)
        self.active_info = info
        self.active_sha256 = sha256

    def active(self):
        info = self.active_info
        if info is None:
            return None
        return info.track_id, info.bundle_version, self.active_sha256

    def rollback(self):
        """Make the previous bundle active again; False when there is none that verifies."""
        if not exists(self._p(PREVIOUS)) or self.verify_file(PREVIOUS) is None:
            return False
        remove(self._p(ACTIVE))
        os.rename(self._p(PREVIOUS), self._p(ACTIVE))
        self._set_active(self.verify_file(ACTIVE))
        return self.active_info is not None

    def open_active(self):
        return open(self._p(ACTIVE), "rb")
