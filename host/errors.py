"""Errors raised by host-side analysis, evaluation and the CLI."""

from gridcast.protocol.errors import GridcastError


class AudioError(GridcastError):
    """An audio file could not be read or is unusable for analysis."""

    def __init__(self, path: str, problem: str, hint: str = "") -> None:
        self.path = path
        self.problem = problem
        self.hint = hint
        text = f"{path}: {problem}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class BeatMapError(GridcastError):
    """A beat map or override file is malformed."""


class DatasetError(GridcastError):
    """An evaluation folder is not laid out as audio/ + annotations/."""
