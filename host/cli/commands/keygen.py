"""``gridcast keygen``: a site key that signs bundles (32 random bytes, mode 0600)."""

from __future__ import annotations

import argparse

from gridcast.host.cli import output

HELP = "make a bundle signing key file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("key_file", help="file to write 32 random bytes to (mode 0600)")
    p.add_argument("--force", action="store_true", help="overwrite an existing key file")


def run(args: argparse.Namespace) -> int:
    from gridcast.protocol import keys

    key = keys.generate(args.key_file, overwrite=args.force)
    output.info(f"wrote {args.key_file} ({len(key)} random bytes, key id {keys.key_id(key)}, "
                "mode 0600)")
    return 0
