"""``b2fs emulator``: run the B2 emulator in the foreground until SIGTERM/SIGINT.

Prints ``listening on http://HOST:PORT`` as the first stdout line, then the master key id and
key, and flushes, so a parent process can read them. The key can come from ``--key-id`` /
``--key`` or from ``B2FS_EMULATOR_KEY_ID`` / ``B2FS_EMULATOR_KEY`` (keeping it off the
command line).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

FAULTS_HELP = """\
fault injection (--faults SPEC): a comma-separated list of TARGET:KIND[:PROBABILITY]
  TARGET       upload (b2_upload_file, b2_upload_part), download (by id and by name),
               auth (b2_authorize_account), api (every other JSON call), all,
               or one operation name such as b2_list_file_names
  KIND         503        503 service_unavailable (503@N adds Retry-After: N)
               500        500 internal_error
               429        429 too_many_requests with Retry-After: 1 (429@N: N seconds)
               401        401 expired_auth_token
               reset      connection reset in the middle of a body: a download (or JSON
                          answer) sends half its body, an upload reads half, then the
                          connection is dropped
  PROBABILITY  0..1, default 1 (every matching call)
  example      --faults upload:503:0.1,download:reset:0.02,b2_list_file_names:429@0:0.5
  --fault-seed N makes the random draws repeatable.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "emulator",
        help="run a local B2 Native API emulator",
        description="Serve the Backblaze B2 Native API (/b2api/v1 to v4) locally.",
        epilog=FAULTS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="address to listen on; port 0 picks a free port (default 127.0.0.1:0)",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="persist buckets, files, keys and rules in DIR (default: memory only)",
    )
    parser.add_argument(
        "--key-id",
        default=os.environ.get("B2FS_EMULATOR_KEY_ID"),
        help="master application key id (env B2FS_EMULATOR_KEY_ID; default: generated)",
    )
    parser.add_argument(
        "--key",
        default=os.environ.get("B2FS_EMULATOR_KEY"),
        help="master application key (env B2FS_EMULATOR_KEY; default: generated)",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay added before every response"
    )
    parser.add_argument(
        "--bandwidth-mbps",
        type=float,
        default=0.0,
        help="cap each connection at this many Mbit/s in each direction (0: unlimited)",
    )
    parser.add_argument("--faults", default="", metavar="SPEC", help="inject failures (below)")
    parser.add_argument("--fault-seed", type=int, default=None, help="seed for --faults draws")
    parser.add_argument(
        "--token-ttl",
        type=float,
        default=86400.0,
        metavar="SECONDS",
        help="lifetime of account and upload tokens (default 86400)",
    )
    parser.add_argument(
        "--recommended-part-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="advertise this recommendedPartSize (default 100000000, as B2)",
    )
    parser.add_argument(
        "--min-part-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="advertise and enforce this absoluteMinimumPartSize (default 5000000, as B2)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every request (never tokens)"
    )
    parser.set_defaults(func=run)


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen wants HOST:PORT, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def run(args: argparse.Namespace) -> int:
    import logging
    import sqlite3

    from .emulator import Emulator
    from .faults import parse_spec

    try:
        host, port = parse_listen(args.listen)
        parse_spec(args.faults)
    except ValueError as e:
        print(f"b2fs emulator: {e}", file=sys.stderr)
        return 2
    if bool(args.key_id) != bool(args.key):
        print("b2fs emulator: give both --key-id and --key, or neither", file=sys.stderr)
        return 2
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(message)s")
    options: dict[str, Any] = {"fault_seed": args.fault_seed}
    if args.recommended_part_size:
        options["recommended_part_size"] = args.recommended_part_size
    if args.min_part_size:
        options["min_part_size"] = args.min_part_size
    emu = Emulator(
        data_dir=args.data,
        host=host,
        port=port,
        key_id=args.key_id,
        key=args.key,
        latency_ms=args.latency_ms,
        bandwidth_mbps=args.bandwidth_mbps,
        faults=args.faults,
        token_ttl=args.token_ttl,
        **options,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        emu.start()
    except (OSError, sqlite3.Error) as e:
        where = f"--data {args.data}" if args.data else "memory"
        print(f"b2fs emulator: cannot start on {args.listen} ({where}): {e}", file=sys.stderr)
        return 1
    try:
        sys.stdout.write(f"listening on {emu.url}\n")
        sys.stdout.write(f"key id: {emu.master_key_id}\n")
        sys.stdout.write(f"key: {emu.master_key}\n")
        sys.stdout.flush()
        while not stop.wait(1.0):
            pass
    finally:
        emu.stop()
    return 0
