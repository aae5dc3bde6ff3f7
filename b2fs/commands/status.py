"""``b2fs status MOUNTPOINT``: what a running mount is doing, from its control socket.

Human output by default, ``--json`` for scripts. It only ever shows counts, sizes and file
names: the daemon's status has no secrets in it.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("status", help="show pending uploads, cache use and requests")
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run_status)


def request(mountpoint: Path, message: dict[str, Any]) -> dict[str, Any]:
    """Send one request to the mount's control socket and return its (first) answer."""
    from b2fs.service.control import socket_path

    path = socket_path(mountpoint.absolute())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        with sock.makefile("rb") as answers:
            line = answers.readline()
    answer: dict[str, Any] = json.loads(line)
    return answer


def run_status(args: argparse.Namespace) -> int:
    try:
        status = request(args.mountpoint, {"command": "status"})
    except (OSError, ValueError):
        print(f"b2fs: no running b2fs mount at {args.mountpoint}", file=sys.stderr)
        return 1
    if "error" in status:
        print(f"b2fs: {status['error']}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(format_status(status))
    return 0


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def format_status(status: dict[str, Any]) -> str:
    cache = status["cache"]
    ratio = cache["hit_ratio"]
    lines = [
        f"pending uploads: {status['pending_files']} ({_size(status['pending_bytes'])})",
        *(
            f"  {p['bucket']}/{p['name']}  {_size(p['size'])}"
            + ("  uploading" if p["uploading"] else "")
            + (f"  last error: {p['error']}" if p["error"] else "")
            for p in status["pending"][:20]
        ),
        f"cache: {_size(cache['used_bytes'])} of {_size(cache['capacity_bytes'])}, "
        f"hit ratio {'-' if ratio is None else f'{ratio:.0%}'}",
        f"downloads: {status['downloads']['requests']} requests, "
        f"{_size(status['downloads']['bytes'])}",
        f"directory listings: {status['list_calls']}",
    ]
    return "\n".join(lines)
