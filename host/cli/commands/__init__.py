"""One module per ``gridcast`` command, named after it (``eval`` is ``eval.py``).

Each has ``HELP`` (one line for ``gridcast --help``), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status; raise GridcastError for a one-line failure).
Imports at the top stay light (argparse, the CLI's helpers, protocol/); anything heavy
(numpy, the analyzer, the agent) is imported inside ``run``, so that loading every
module for ``gridcast --help`` costs next to nothing.
"""
