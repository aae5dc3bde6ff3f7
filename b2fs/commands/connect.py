"""How the B2 administration commands (``b2fs key``, ``b2fs notify``) reach B2: the same
credentials and endpoint options as ``b2fs mount``, one client per command, and every failure
as one line on stderr (a B2 refusal says which capability was missing; no secret is shown)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from b2fs.b2.client import B2Client


class CommandError(Exception):
    """A refusal of a command, as one line for the user."""


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help="B2 realm URL (default $B2FS_ENDPOINT or B2's)")
    parser.add_argument(
        "--key-file", type=Path, help="file holding the keyID:applicationKey to act with"
    )


def fail(message: str) -> int:
    print(f"b2fs: {message}", file=sys.stderr)
    return 1


def run_with_client(args: argparse.Namespace, job: Callable[[B2Client], Awaitable[int]]) -> int:
    """Connect with the given credentials and run ``await job(client)``; errors are one line."""
    import trio

    from b2fs.b2.client import B2Client
    from b2fs.b2.credentials import load_credentials, resolve_endpoint
    from b2fs.b2.errors import B2Error, CredentialsError

    try:
        credentials = load_credentials(key_file=args.key_file)
        endpoint = resolve_endpoint(args.endpoint)
    except CredentialsError as exc:
        return fail(str(exc))

    async def main() -> int:
        async with await B2Client.connect(
            credentials.key_id, credentials.key, endpoint=endpoint
        ) as client:
            return await job(client)

    try:
        return trio.run(main)
    except (CommandError, B2Error, OSError) as exc:
        return fail(str(exc))
