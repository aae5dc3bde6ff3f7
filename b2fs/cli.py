"""The ``b2fs`` command line: one sub-command per job, each defined by the module that owns it.

This module only dispatches. A sub-command module exposes ``register(subparsers)`` that adds
its parser and sets ``func`` (``args -> exit status``); heavy imports happen inside ``func``
so that ``b2fs --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from b2fs import __version__
from b2fs.commands import key as key_commands
from b2fs.commands import mount as mount_commands
from b2fs.commands import notify as notify_commands
from b2fs.commands import status as status_command
from b2fs.emulator import cli as emulator_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b2fs",
        description="Mount Backblaze B2 buckets as a directory, and run a local B2 emulator.",
    )
    parser.add_argument("--version", action="version", version=f"b2fs {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    mount_commands.register(subparsers)
    status_command.register(subparsers)
    key_commands.register(subparsers)
    notify_commands.register(subparsers)
    emulator_cli.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
