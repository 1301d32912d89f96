"""A whole file or none: what every saved file of gridcast's is written with.

``write_atomically(path, data)`` writes beside ``path`` (a hidden temporary file in the
same folder, so the rename stays on one filesystem), then renames over it: a reader, a
crash or a full disk never sees half a file, and the old one stays intact until the new
one is complete. A failed write removes the temporary file and raises the ``OSError``;
callers turn it into their own error with what to do.

- ``mode``: the new file's permissions, set before any byte is written (keys and
  passwords: 0o600). None keeps an existing file's mode, or gives 0o644.
- ``durable``: wait for the disk (fsync) before the rename. A batch may pass False and
  sync once at its end (an fsync per file was a third of a 1,000-track grid import).
- ``owner``: (uid, gid) to hand the file to (a broker's user), before the rename.
- ``folder_mode``: the permissions of folders it has to create.
"""

from __future__ import annotations

import os
import tempfile

DEFAULT_MODE = 0o644


def write_atomically(path: str, data: bytes | str, *, mode: int | None = None,
                     durable: bool = True, owner: tuple[int, int] | None = None,
                     folder_mode: int = 0o777) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8) all at once."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=folder_mode, exist_ok=True)
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = DEFAULT_MODE
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(payload)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
