"""``b2fs mount`` and ``b2fs unmount``.

``b2fs mount`` checks what it can at once (options, credentials, mount point), then starts the
daemon as a child process (``-f`` plus a readiness pipe), detached in its own session, and
waits until the child reports the mount ready (exit 0) or says why it could not (one line,
exit 1). With ``-f`` the daemon is this process. Credentials reach the child through the
environment it inherits (never its command line), or by the key file path.

``b2fs unmount`` asks the daemon over its control socket to finish the pending uploads and
unmount, showing their progress on a terminal; Ctrl-C unmounts at once and leaves the rest
queued for the next mount. Without a reachable daemon it falls back to ``fusermount3 -u``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from b2fs.options import OptionError, parse_option_strings

READY = b"READY\n"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mount = subparsers.add_parser(
        "mount",
        help="mount B2 buckets at a directory",
        description="Mount every bucket the key can list (no BUCKET), one bucket, or one "
        "folder of a bucket (BUCKET/PREFIX) at MOUNTPOINT.",
    )
    mount.add_argument("paths", nargs="+", metavar="[BUCKET[/PREFIX]] MOUNTPOINT")
    mount.add_argument("-o", dest="options", action="append", default=[], metavar="OPT[,OPT...]")
    mount.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    mount.add_argument("--cache-dir", type=Path, help="cache and journal directory")
    mount.add_argument("--endpoint", help="B2 realm URL (default $B2FS_ENDPOINT or B2's)")
    mount.add_argument("--key-file", type=Path, help="file holding keyID:applicationKey")
    mount.add_argument("--debug", action="store_true", help="log every request")
    mount.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    mount.set_defaults(func=run_mount)

    unmount = subparsers.add_parser(
        "unmount", help="upload what is pending, then unmount", aliases=["umount"]
    )
    unmount.add_argument("mountpoint", type=Path)
    unmount.set_defaults(func=run_unmount)


def _fail(message: str, ready_fd: int | None = None) -> int:
    print(f"b2fs: {message}", file=sys.stderr)
    if ready_fd is not None:
        os.write(ready_fd, f"ERROR {message}\n".encode())
    return 1


def run_mount(args: argparse.Namespace) -> int:
    if len(args.paths) > 2:
        return _fail("too many arguments: give [BUCKET[/PREFIX]] MOUNTPOINT")
    source = args.paths[0] if len(args.paths) == 2 else ""
    mountpoint = Path(args.paths[-1]).absolute()
    from b2fs.b2.credentials import load_credentials, resolve_endpoint
    from b2fs.b2.errors import CredentialsError

    try:
        options = parse_option_strings(args.options)
        credentials = load_credentials(key_file=args.key_file)
        endpoint = resolve_endpoint(args.endpoint)
    except (OptionError, CredentialsError) as exc:
        return _fail(str(exc), args.ready_fd)
    from b2fs.mount import MountConfig, MountError, check_mountpoint

    try:
        check_mountpoint(mountpoint)
    except MountError as exc:
        return _fail(str(exc), args.ready_fd)
    config = MountConfig(
        source=source.strip("/"),
        mountpoint=mountpoint,
        credentials=credentials,
        endpoint=endpoint,
        options=options,
        cache_dir=args.cache_dir.absolute() if args.cache_dir else None,
    )
    if args.foreground:
        return _serve_foreground(config, args.debug, args.ready_fd)
    return _spawn_daemon(args, config)


def _serve_foreground(config: object, debug: bool, ready_fd: int | None) -> int:
    import trio

    from b2fs import logs
    from b2fs.b2.errors import B2Error
    from b2fs.mount import MountConfig, describe_error, serve
    from b2fs.service import systemd

    assert isinstance(config, MountConfig)
    logs.setup(debug=debug)
    ready = False

    def on_ready() -> None:
        nonlocal ready
        ready = True
        systemd.notify("READY=1")
        if ready_fd is not None:
            os.write(ready_fd, READY)
            os.close(ready_fd)

    try:
        trio.run(serve, config, on_ready)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if ready:
            raise
        fd = ready_fd
        return _fail(describe_error(exc) if not isinstance(exc, B2Error) else str(exc), fd)
    return 0


def _spawn_daemon(args: argparse.Namespace, config: object) -> int:
    from b2fs.mount import MountConfig, default_cache_dir

    assert isinstance(config, MountConfig)
    cache_dir = config.cache_dir or default_cache_dir(config.source, config.endpoint)
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = cache_dir / "b2fs.log"
    read_fd, write_fd = os.pipe()
    command = [
        sys.executable,
        "-m",
        "b2fs",
        "mount",
        *args.paths,
        "-f",
        "--ready-fd",
        str(write_fd),
    ]
    for option in args.options:
        command += ["-o", option]
    command += ["--cache-dir", str(cache_dir)]
    if args.endpoint:
        command += ["--endpoint", args.endpoint]
    if args.key_file:
        command += ["--key-file", str(args.key_file.absolute())]
    if args.debug:
        command.append("--debug")
    with open(log_path, "ab") as log_file:
        subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            pass_fds=(write_fd,),
            start_new_session=True,
            cwd="/",
        )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as ready:
        answer = ready.readline()
    if answer == READY:
        return 0
    if answer.startswith(b"ERROR "):
        print(f"b2fs: {answer[6:].decode(errors='replace').strip()}", file=sys.stderr)
        return 1
    return _fail(f"the mount daemon exited before it was ready; see {log_path}")


def run_unmount(args: argparse.Namespace) -> int:
    from b2fs.service.control import socket_path

    mountpoint = args.mountpoint.absolute()
    path = socket_path(mountpoint)
    if not path.exists():
        return _fusermount(mountpoint)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        return _fusermount(mountpoint)
    on_terminal = sys.stderr.isatty()
    stream = sock.makefile("rwb")
    stream.write(json.dumps({"command": "unmount"}).encode() + b"\n")
    stream.flush()
    last: dict[str, object] = {}
    try:
        for line in stream:
            last = json.loads(line)
            if last.get("done"):
                break
            if on_terminal:
                _show_progress(last)
    except KeyboardInterrupt:
        now = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        now.connect(str(path))
        now.sendall(json.dumps({"command": "unmount", "now": True}).encode() + b"\n")
        now.recv(4096)
        pending = last.get("pending_files", "some")
        print(
            f"\nb2fs: unmounted; {pending} upload(s) stay queued and resume at the next mount "
            "with the same cache directory",
            file=sys.stderr,
        )
        return 130
    finally:
        if on_terminal:
            sys.stderr.write("\n")
    if "error" in last:
        return _fail(str(last["error"]))
    _wait_unmounted(mountpoint)
    return 0


def _show_progress(progress: dict[str, object]) -> None:
    files = progress.get("pending_files", 0)
    size = progress.get("pending_bytes", 0)
    assert isinstance(size, int)
    sys.stderr.write(f"\rb2fs: waiting for {files} upload(s), {size / 1e6:.1f} MB ...   ")
    sys.stderr.flush()


def _wait_unmounted(mountpoint: Path) -> None:
    """Block until the kernel no longer lists the mount (the daemon ends the session)."""
    import select

    with open("/proc/self/mountinfo", "rb") as mounts:
        poller = select.poll()
        poller.register(mounts, select.POLLPRI | select.POLLERR)
        for _ in range(600):
            mounts.seek(0)
            if not any(line.split()[4] == str(mountpoint).encode() for line in mounts):
                return
            poller.poll(100)


def _fusermount(mountpoint: Path) -> int:
    result = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, text=True)
    if result.returncode != 0:
        return _fail(result.stderr.strip() or f"could not unmount {mountpoint}")
    return 0
