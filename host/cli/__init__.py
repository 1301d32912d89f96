"""The ``gridcast`` command: a table of commands, one module each.

Each command lives in ``gridcast.host.cli.commands.<name>`` and has three things:
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int`` (the exit
status). A module is imported only when its command runs (all of them only for
``gridcast --help``), and keeps its heavy imports inside ``run``.

Errors that gridcast raises on purpose (GridcastError) become one line,
``gridcast: <message>``, and exit status 1; Ctrl-C exits with 130; a closed pipe
(``gridcast devices --json | head``) exits with 1 quietly.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from gridcast.host.cli import output
from gridcast.protocol.errors import GridcastError

# The order of `gridcast --help`.
COMMANDS = ("analyze", "eval", "track", "plot", "keygen", "bundle", "flash", "sim", "deploy",
            "play", "live", "stop", "seek", "demo", "agent", "devices", "monitor", "report",
            "provision", "calibrate", "light-offset", "import-grids", "export-grid", "rotate-key")


def load(name: str) -> ModuleType:
    """The module of command ``name`` (``gridcast.host.cli.commands.<name>``, a dash in
    the command an underscore in the module: ``light-offset`` is ``light_offset.py``)."""
    return importlib.import_module(f"gridcast.host.cli.commands.{name.replace('-', '_')}")


def version_text() -> str:
    """``gridcast 0.5.0 (analyzer 0.4.0, firmware 0.5.0, protocol 1)``: the release, the
    analyzer's version (written into each beat map), the firmware's, the wire protocol's."""
    from gridcast.host.analysis.analyzer import ANALYZER_VERSION
    from gridcast.protocol.messages import PROTOCOL_VERSION
    from gridcast.protocol.version import FIRMWARE_VERSION, __version__, version_text

    return (f"gridcast {__version__} (analyzer {ANALYZER_VERSION}, firmware "
            f"{version_text(FIRMWARE_VERSION)}, protocol {PROTOCOL_VERSION})")


class _VersionAction(argparse.Action):
    """``--version``, computed only when asked (the analyzer's version costs an import)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        sys.stdout.write(version_text() + "\n")
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser. With ``command``, only that command's module is imported and the
    others are known by name (enough to parse; their help is not shown then)."""
    parser = argparse.ArgumentParser(
        prog="gridcast", description="Keep lighting devices locked to the beat of music.")
    parser.add_argument("--version", action=_VersionAction,
                        help="show the versions (release, analyzer, firmware, protocol)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        if command is None or name == command:
            module = load(name)
            module.add_arguments(sub.add_parser(name, help=module.HELP,
                                                description=module.HELP))
        else:
            sub.add_parser(name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    try:
        return int(load(args.command).run(args))
    except GridcastError as exc:
        output.error(str(exc))
        return 1
    except KeyboardInterrupt:
        output.error("interrupted")
        return 130
    except BrokenPipeError:
        return 1
