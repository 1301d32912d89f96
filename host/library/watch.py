"""``gridcast analyze --watch DIR``: keep a music folder's beat maps up to date.

watchdog reports file events; a file is analyzed once its size has stopped
changing for ``SETTLE_S`` (a copy in progress is not analyzed half-way).
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from gridcast.host.library import batch

SETTLE_S = 1.0
POLL_S = 0.25


class _Handler(FileSystemEventHandler):
    def __init__(self, events: queue.Queue[str]) -> None:
        self.events = events

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path and batch.is_audio(str(path)):
                self.events.put(str(path))


def watch(folder: str, handle: Callable[[list[str]], None],
          stop: Callable[[], bool] = lambda: False) -> None:
    """Call ``handle`` with every audio file that appears or changes under ``folder``."""
    events: queue.Queue[str] = queue.Queue()
    observer = Observer()
    observer.schedule(_Handler(events), folder, recursive=True)
    observer.start()
    pending: dict[str, tuple[float, int]] = {}  # path -> (last change time, size)
    try:
        while not stop():
            try:
                path = events.get(timeout=POLL_S)
                pending[path] = (time.monotonic(), _size(path))
                continue
            except queue.Empty:
                pass
            ready = []
            for path, (since, size) in list(pending.items()):
                now_size = _size(path)
                if now_size != size:
                    pending[path] = (time.monotonic(), now_size)
                elif time.monotonic() - since >= SETTLE_S:
                    del pending[path]
                    if now_size > 0:
                        ready.append(path)
            if ready:
                handle(sorted(ready))
    finally:
        observer.stop()
        observer.join()


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1
