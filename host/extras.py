"""Optional packages, and the extra of pyproject.toml that installs each.

Code that needs one checks first, so that a missing package is one line naming the
extra (``--compare librosa needs librosa: pip install 'gridcast[compare]'``), not a
traceback from a worker process halfway through a run.
"""

from __future__ import annotations

import importlib.util

from gridcast.protocol.errors import GridcastError

# module -> its extra in [project.optional-dependencies]
EXTRA_OF = {"librosa": "compare", "torch": "train", "mido": "train", "pyrekordbox": "dj",
            "mutagen": "dj"}


class MissingExtra(GridcastError):
    """An optional package is not installed; the message says which extra brings it."""

    def __init__(self, module: str, purpose: str) -> None:
        self.module = module
        self.extra = EXTRA_OF[module]
        super().__init__(f"{purpose} needs {module}: pip install 'gridcast[{self.extra}]'")


def available(module: str) -> bool:
    """Whether ``module`` can be imported (found without importing it: librosa takes 1 s)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[module] is None
        return False


def require(module: str, purpose: str) -> None:
    """MissingExtra unless ``module`` is installed; ``purpose`` says what wanted it."""
    if not available(module):
        raise MissingExtra(module, purpose)


def require_for_script(module: str, purpose: str) -> None:
    """``require`` for scripts run with ``python -m`` (training): exit 1 with the one line
    ``gridcast: <message>`` on stderr instead of a traceback."""
    try:
        require(module, purpose)
    except MissingExtra as exc:
        raise SystemExit(f"gridcast: {exc}") from None
