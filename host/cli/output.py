"""Terminal output of the CLI commands: messages on stderr, JSON and tables on stdout,
progress bars."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def info(message: str) -> None:
    err.print(message, markup=False)


def warn(message: str) -> None:
    err.print(f"warning: {message}", style="yellow", markup=False)


def error(message: str) -> None:
    err.print(f"gridcast: {message}", style="red", markup=False)


def print_json(data: object) -> None:
    """``data`` as indented JSON on stdout (what ``--json`` prints), flushed at once."""
    sys.stdout.write(json.dumps(data, indent=1) + "\n")
    sys.stdout.flush()


@contextmanager
def progress(total: int, label: str) -> Iterator[Progress | None]:
    """A progress bar on stderr when it is a terminal and there is more than one item."""
    if total <= 1 or not sys.stderr.isatty():
        yield None
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True)
    with bar:
        bar.add_task(label, total=total)
        yield bar


def advance(bar: Progress | None) -> None:
    if bar is not None:
        bar.advance(bar.task_ids[0])
