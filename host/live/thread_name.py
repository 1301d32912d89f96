"""Name the calling thread at the OS level, so ``/proc/<pid>/task/*/comm`` (top -H, ps -L,
bench/live.py --cost) shows which of live mode's threads costs what.

Python's ``threading`` names stay inside Python; Linux keeps its own name per thread
(at most 15 bytes), set with ``prctl(PR_SET_NAME)``. Elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

PR_SET_NAME = 15
_libc: ctypes.CDLL | None = None


def set_os_thread_name(name: str) -> bool:
    """Give the calling thread ``name`` (cut to 15 bytes); False where not supported."""
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0) == 0


def name_python_threads() -> int:
    """Give every Python thread of the process its ``threading`` name at the OS level
    too (pthread_setname_np). Returns how many were named."""
    global _libc
    if not sys.platform.startswith("linux"):
        return 0
    import threading

    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    named = 0
    for thread in threading.enumerate():
        # The main thread keeps the process's name; a thread Python did not start (a
        # _DummyThread: PortAudio's, named from inside its callback) keeps its own.
        if (thread is threading.main_thread() or thread.ident is None
                or isinstance(thread, threading._DummyThread)):
            continue
        name = thread.name.encode()[:15]
        if _libc.pthread_setname_np(ctypes.c_ulong(thread.ident), ctypes.c_char_p(name)) == 0:
            named += 1
    return named
