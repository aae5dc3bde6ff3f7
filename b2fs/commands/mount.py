"""``b2fs mount`` and ``b2fs unmount``.

``b2fs mount`` merges its settings (``b2fs.config``: command line > environment > the
``--config`` TOML file), checks what it can at once (options, credentials, mount point), then
starts the daemon as a child process (``-f`` plus a readiness pipe), detached in its own
session, and waits until the child reports the mount ready (exit 0) or says why it could not
(one line, exit 1). The child gets the resolved source, mount point, endpoint, cache directory
and key file on its command line (never a key), the same ``--config`` and ``-o``, and the
environment (credentials in ``B2_APPLICATION_KEY*`` stay there). With ``-f`` the daemon is
this process: that is how systemd runs it (``Type=notify``: READY=1 once mounted).

``b2fs unmount`` asks the daemon over its control socket to finish the pending uploads and
unmount. On a terminal it draws a progress bar of those uploads; elsewhere it is silent unless
something fails. Ctrl-C unmounts at once and says how many uploads stay queued for the next
mount. Either way it returns once the daemon has exited (its pid comes from the control
socket's peer credentials), not only once the kernel dropped the mount: the daemon may still
be closing its journal and cache then. Without a reachable daemon it falls back to
``fusermount3 -u``.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from b2fs.options import OptionError

READY = b"READY\n"
# What systemd gives the main process of a unit; a background daemon must not inherit it.
SERVICE_ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mount = subparsers.add_parser(
        "mount",
        help="mount B2 buckets at a directory",
        description="Mount every bucket the key can list (no BUCKET), one bucket, or one "
        "folder of a bucket (BUCKET/PREFIX) at MOUNTPOINT. Settings come from the command "
        "line, then B2FS_<OPTION> environment variables, then the --config file.",
    )
    mount.add_argument("paths", nargs="*", metavar="[BUCKET[/PREFIX]] MOUNTPOINT")
    mount.add_argument("-o", dest="options", action="append", default=[], metavar="OPT[,OPT...]")
    mount.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    mount.add_argument(
        "--config", type=Path, metavar="FILE", help="TOML file of settings and mount options"
    )
    mount.add_argument("--cache-dir", type=Path, help="cache and journal directory")
    mount.add_argument("--endpoint", help="B2 realm URL (default $B2FS_ENDPOINT or B2's)")
    mount.add_argument("--key-file", type=Path, help="file holding keyID:applicationKey")
    mount.add_argument(
        "--debug", action="store_true", default=None, help="log every request with its timing"
    )
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
    from b2fs import config as settings
    from b2fs.b2.credentials import load_credentials, resolve_endpoint
    from b2fs.b2.errors import CredentialsError

    if len(args.paths) > 2:
        return _fail("too many arguments: give [BUCKET[/PREFIX]] MOUNTPOINT", args.ready_fd)
    given: dict[str, Any] = {
        "endpoint": args.endpoint,
        "cache_dir": args.cache_dir,
        "key_file": args.key_file,
        "debug": args.debug,
    }
    if len(args.paths) == 2:
        given["source"] = args.paths[0]
    if args.paths:
        given["mountpoint"] = Path(args.paths[-1])
    try:
        resolved = settings.resolve(
            config_file=args.config,
            environ=os.environ,
            cli_settings=given,
            cli_options=args.options,
        )
        if resolved.mountpoint is None:
            raise OptionError(
                "no mount point: give MOUNTPOINT, or 'mountpoint' in the configuration file"
            )
        credentials = load_credentials(key_file=resolved.key_file)
        endpoint = resolve_endpoint(resolved.endpoint)
    except (OptionError, CredentialsError) as exc:
        return _fail(str(exc), args.ready_fd)
    from b2fs import logs
    from b2fs.mount import MountConfig, MountError, check_mountpoint

    logs.setup(debug=resolved.debug)

    mountpoint = resolved.mountpoint.absolute()
    try:
        check_mountpoint(mountpoint)
    except MountError as exc:
        return _fail(str(exc), args.ready_fd)
    config = MountConfig(
        source=resolved.source,
        mountpoint=mountpoint,
        credentials=credentials,
        endpoint=endpoint,
        options=resolved.options,
        cache_dir=resolved.cache_dir.absolute() if resolved.cache_dir else None,
    )
    if args.foreground:
        return _serve_foreground(config, args.ready_fd)
    return _spawn_daemon(args, config, resolved)


def _serve_foreground(config: object, ready_fd: int | None) -> int:
    import trio

    from b2fs.b2.errors import B2Error
    from b2fs.mount import MountConfig, describe_error, serve
    from b2fs.service import systemd

    assert isinstance(config, MountConfig)
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
        message = str(exc) if isinstance(exc, B2Error) else describe_error(exc)
        systemd.notify(f"STATUS=Failed to mount: {message}")
        return _fail(message, ready_fd)
    return 0


def _spawn_daemon(args: argparse.Namespace, config: object, resolved: object) -> int:
    from b2fs.config import Resolved
    from b2fs.mount import MountConfig, default_cache_dir

    assert isinstance(config, MountConfig) and isinstance(resolved, Resolved)
    cache_dir = config.cache_dir or default_cache_dir(config.source, config.endpoint)
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = cache_dir / "b2fs.log"
    read_fd, write_fd = os.pipe()
    command = [
        sys.executable,
        "-m",
        "b2fs",
        "mount",
        config.source,
        str(config.mountpoint),
        "-f",
        "--ready-fd",
        str(write_fd),
        "--cache-dir",
        str(cache_dir),
        "--endpoint",
        config.endpoint,
    ]
    if args.config:
        command += ["--config", str(args.config.absolute())]
    for option in args.options:
        command += ["-o", option]
    if resolved.key_file:
        command += ["--key-file", str(resolved.key_file.absolute())]
    if resolved.debug:
        command.append("--debug")
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENVIRONMENT}
    with open(log_path, "ab") as log_file:
        subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            pass_fds=(write_fd,),
            start_new_session=True,
            cwd="/",
            env=env,
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


def connect_control(mountpoint: Path) -> socket.socket:
    """A connection to the control socket of the mount at ``mountpoint``. Raises
    FileNotFoundError or ConnectionRefusedError when no b2fs daemon serves it, and
    PermissionError when it belongs to another user."""
    from b2fs.service.control import socket_path

    path = socket_path(mountpoint.absolute())
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except BaseException:
        sock.close()
        raise
    return sock


def not_yours(mountpoint: Path) -> str:
    return (
        f"permission denied: the b2fs mount at {mountpoint} belongs to another user (its "
        "control socket answers only its owner and root)"
    )


def run_unmount(args: argparse.Namespace) -> int:
    mountpoint = args.mountpoint.absolute()
    try:
        sock = connect_control(mountpoint)
    except PermissionError:
        return _fail(not_yours(mountpoint))
    except OSError:
        return _fusermount(mountpoint)
    daemon = _peer_pid(sock)
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    last: dict[str, Any] = {}
    with sock, sock.makefile("rwb") as stream:
        stream.write(json.dumps({"command": "unmount"}).encode() + b"\n")
        stream.flush()
        try:
            for line in stream:
                last = json.loads(line)
                if last.get("done") or "error" in last:
                    break
                if bar is not None:
                    bar.show(last)
        except KeyboardInterrupt:
            if bar is not None:
                bar.end()
            return _unmount_now(mountpoint)
        if bar is not None:
            bar.end()
    if "error" in last:
        return _fail(str(last["error"]))
    if not last.get("done"):
        return _fail(f"the b2fs daemon of {mountpoint} stopped answering; see its log")
    _wait_unmounted(mountpoint)
    _wait_exited(daemon)
    return 0


def _unmount_now(mountpoint: Path) -> int:
    """Ctrl-C: unmount at once, leave what is pending queued, and say so."""
    try:
        with connect_control(mountpoint) as now, now.makefile("rwb") as stream:
            daemon = _peer_pid(now)
            stream.write(json.dumps({"command": "unmount", "now": True}).encode() + b"\n")
            stream.flush()
            answer = json.loads(stream.readline() or b"{}")
    except (OSError, ValueError) as exc:
        return _fail(f"interrupted; could not unmount {mountpoint} at once ({exc})")
    _wait_unmounted(mountpoint)
    _wait_exited(daemon)
    pending = answer.get("pending_files", 0)
    if pending:
        print(
            f"b2fs: interrupted: unmounted {mountpoint} with {pending} upload(s) not yet on "
            "B2; they stay queued and resume at the next mount with the same cache directory",
            file=sys.stderr,
        )
    else:
        print(f"b2fs: interrupted; every upload was done: unmounted {mountpoint}", file=sys.stderr)
    return 130


class ProgressBar:
    """One line redrawn in place on a terminal: the uploads ``b2fs unmount`` waits for."""

    WIDTH = 30

    def __init__(self, out: Any) -> None:
        self.out = out
        self.drawn = False

    def show(self, progress: dict[str, Any]) -> None:
        from b2fs.service.status import human_size

        total = int(progress.get("total_bytes", 0))
        done = min(int(progress.get("done_bytes", 0)), total)
        files = int(progress.get("pending_files", 0))
        if not files and not self.drawn:
            return  # nothing to wait for: stay quiet
        fraction = done / total if total else 1.0
        filled = int(fraction * self.WIDTH)
        text = (
            f"\rb2fs: uploading [{'#' * filled}{'-' * (self.WIDTH - filled)}] {fraction:4.0%} "
            f"{human_size(done)} of {human_size(total)}, {files} file(s) left"
        )
        failing = int(progress.get("failing", 0))
        if failing:
            text += f", {failing} failing (retrying)"
        self.out.write(text + "\x1b[K")
        self.out.flush()
        self.drawn = True

    def end(self) -> None:
        if self.drawn:
            self.out.write("\n")
            self.out.flush()
            self.drawn = False


def _wait_unmounted(mountpoint: Path) -> None:
    """Block until the kernel no longer lists the mount (the daemon ends the session)."""
    with open("/proc/self/mountinfo", "rb") as mounts:
        poller = select.poll()
        poller.register(mounts, select.POLLPRI | select.POLLERR)
        for _ in range(600):
            mounts.seek(0)
            if not any(line.split()[4] == str(mountpoint).encode() for line in mounts):
                return
            poller.poll(100)


def _peer_pid(sock: socket.socket) -> int:
    """The daemon's pid, from the control socket's peer credentials (0 if not visible here,
    as from another PID namespace)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[0])


def _wait_exited(pid: int, timeout: float = 60.0) -> None:
    """Block until the daemon has exited: after the kernel drops the mount it still closes
    its journal and cache, and whatever follows ``b2fs unmount`` (removing the cache
    directory, mounting it again, stopping a service) must find it gone."""
    if pid <= 0:
        return
    try:
        exited = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already gone
    except OSError:
        return  # no pidfd here (Linux before 5.3): the daemon ends on its own
    try:
        poller = select.poll()
        poller.register(exited, select.POLLIN)
        if not poller.poll(timeout * 1000):
            print(
                f"b2fs: unmounted, but the daemon (pid {pid}) is still running "
                f"{timeout:.0f} s later; see its log",
                file=sys.stderr,
            )
    finally:
        os.close(exited)


def _fusermount(mountpoint: Path) -> int:
    result = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, text=True)
    if result.returncode != 0:
        return _fail(result.stderr.strip() or f"could not unmount {mountpoint}")
    return 0
