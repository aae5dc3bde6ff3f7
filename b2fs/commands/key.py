"""``b2fs key create|list|delete``: application keys scoped to what one mount needs.

A mount of ``BUCKET[/PREFIX]`` uses these B2 capabilities, and a key made here gets exactly
them, restricted to that bucket (and to that prefix, as a folder: ``photos`` becomes
``photos/``):

- always ``listBuckets`` (find the bucket by name), ``listFiles`` (directory listings, the
  versions view, unfinished large uploads) and ``readFiles`` (downloads, file info, the
  source of server-side copies);
- unless ``--read-only``: ``writeFiles`` (uploads, large files and their parts, hide markers,
  copies for rename and metadata changes);
- unless ``--read-only`` or ``--no-delete``: ``deleteFiles`` (``unlink=delete``, removing the
  intermediate versions b2fs itself makes, restoring from ``.versions``).

A mount checks its key at start (``b2fs.mount``): without ``writeFiles`` it mounts
read-only, and with ``unlink=delete`` but without ``deleteFiles`` it hides instead, saying so
in its log. ``--no-delete`` makes the key of a mount that can never destroy a version
(ransomware-resistant backups): every overwrite and unlink keeps the old versions.

``create`` shows the new secret once, on stdout, as one ``keyID:applicationKey`` line (the
key-file format), or writes it to ``--output FILE`` (created with mode 600); this is the only
place b2fs ever shows a secret. ``list`` and ``delete`` never show one (B2 does not return
secrets after creation). The key running these commands needs ``writeKeys``, ``listKeys``
and ``deleteKeys`` (the master key has them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from b2fs.commands.connect import CommandError, add_connection_arguments, fail, run_with_client

if TYPE_CHECKING:
    from b2fs.b2.client import B2Client

READ_CAPABILITIES = ("listBuckets", "listFiles", "readFiles")
WRITE_CAPABILITIES = ("writeFiles",)
DELETE_CAPABILITIES = ("deleteFiles",)


def capabilities_for(*, read_only: bool, no_delete: bool) -> list[str]:
    """What a mount with this scope needs (see the module docstring)."""
    caps = list(READ_CAPABILITIES)
    if not read_only:
        caps += WRITE_CAPABILITIES
        if not no_delete:
            caps += DELETE_CAPABILITIES
    return caps


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    key = subparsers.add_parser(
        "key",
        help="create, list and delete B2 application keys scoped for a mount",
        description="Application keys with exactly the capabilities a mount needs.",
    )
    commands = key.add_subparsers(dest="key_command", metavar="create|list|delete")
    commands.required = True

    create = commands.add_parser(
        "create",
        help="mint a key for a mount of BUCKET[/PREFIX]; prints it once",
        description="Mint an application key restricted to one bucket (and prefix) with the "
        "capabilities a mount of that scope needs. The key is printed once, on stdout, as "
        "keyID:applicationKey (or written to --output with mode 600).",
    )
    create.add_argument("name", help="the key's name (letters, digits and '-')")
    create.add_argument("--bucket", required=True, help="the bucket the key is restricted to")
    create.add_argument("--prefix", help="restrict the key to this folder of the bucket")
    create.add_argument("--read-only", action="store_true", help="a key for a read-only mount")
    create.add_argument(
        "--no-delete",
        action="store_true",
        help="no deleteFiles: the mount can never delete a version (unlink hides)",
    )
    create.add_argument("--duration", type=int, metavar="SECONDS", help="expire after this long")
    create.add_argument(
        "--output", type=Path, metavar="FILE", help="write the key there (mode 600), not stdout"
    )
    add_connection_arguments(create)
    create.set_defaults(func=run_create)

    listing = commands.add_parser("list", help="list the account's keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    add_connection_arguments(listing)
    listing.set_defaults(func=run_list)

    delete = commands.add_parser("delete", help="delete a key, by id or by name")
    delete.add_argument("key", help="the key id, or its name if no other key has it")
    add_connection_arguments(delete)
    delete.set_defaults(func=run_delete)


KeyCommandError = CommandError


def run_create(args: argparse.Namespace) -> int:
    caps = capabilities_for(read_only=args.read_only, no_delete=args.no_delete)
    prefix = (args.prefix or "").strip("/")
    name_prefix = prefix + "/" if prefix else None

    async def job(client: B2Client) -> int:
        found = await client.list_buckets(bucket_name=args.bucket)
        if not found:
            raise KeyCommandError(
                f"bucket {args.bucket!r} does not exist or this key cannot see it"
            )
        new = await client.create_key(
            args.name,
            caps,
            valid_duration_seconds=args.duration,
            bucket_id=found[0].bucket_id,
            name_prefix=name_prefix,
        )
        line = f"{new.application_key_id}:{new.application_key}\n"
        scope = f"{args.bucket}/{name_prefix or ''}"
        if args.output is not None:
            fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(line)
            where = f"written to {args.output} (mode 600)"
        else:
            sys.stdout.write(line)
            sys.stdout.flush()
            where = "printed above as keyID:applicationKey"
        print(
            f"b2fs: created key {args.name!r} (id {new.application_key_id}) for {scope} with "
            f"{', '.join(caps)}.\n"
            f"b2fs: its secret is {where}; it is shown this once only. Mount with it as a key "
            f"file (mode 600): b2fs mount --key-file FILE {args.bucket}"
            + (f"/{prefix}" if prefix else "")
            + " MOUNTPOINT",
            file=sys.stderr,
        )
        return 0

    if args.output is not None and args.output.exists():
        return fail(f"{args.output} exists; not overwriting it")
    return run_with_client(args, job)


async def _bucket_names(client: B2Client) -> dict[str, str]:
    from b2fs.b2.errors import B2Error

    try:
        return {b.bucket_id: b.bucket_name for b in await client.list_buckets()}
    except B2Error:
        return {}


def run_list(args: argparse.Namespace) -> int:
    async def job(client: B2Client) -> int:
        keys = [key async for key in client.list_keys()]
        names = await _bucket_names(client)
        rows: list[dict[str, Any]] = [
            {
                "id": key.application_key_id,
                "name": key.key_name,
                "capabilities": sorted(key.capabilities),
                "bucket_id": key.bucket_id,
                "bucket": names.get(key.bucket_id) if key.bucket_id else None,
                "prefix": key.name_prefix,
                "expires_ms": key.expiration_timestamp,
            }
            for key in keys
        ]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for row in rows:
            scope = "all buckets"
            if row["bucket_id"]:
                scope = f"{row['bucket'] or row['bucket_id']}/{row['prefix'] or ''}"
            print(f"{row['id']}  {row['name']}  {scope}  {','.join(row['capabilities'])}")
        return 0

    return run_with_client(args, job)


def run_delete(args: argparse.Namespace) -> int:
    async def job(client: B2Client) -> int:
        keys = [key async for key in client.list_keys()]
        matches = [k for k in keys if k.application_key_id == args.key]
        if not matches:
            matches = [k for k in keys if k.key_name == args.key]
        if not matches:
            raise KeyCommandError(f"no key with the id or name {args.key!r}")
        if len(matches) > 1:
            ids = ", ".join(k.application_key_id for k in matches)
            raise KeyCommandError(
                f"{len(matches)} keys are named {args.key!r} ({ids}): give the id"
            )
        deleted = await client.delete_key(matches[0].application_key_id)
        print(f"b2fs: deleted key {deleted.key_name!r} (id {deleted.application_key_id})")
        return 0

    return run_with_client(args, job)
