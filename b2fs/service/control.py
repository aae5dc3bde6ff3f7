"""The control socket of a running mount: status, and unmount-after-upload.

A Unix socket per mount point, in a directory only the mount's owner can enter
(``$XDG_RUNTIME_DIR/b2fs``, ``/run/b2fs`` for root, else ``/tmp/b2fs-<uid>``), named after a
hash of the mount point's real path. The socket itself is mode 0600, and every connection's
peer credentials (SO_PEERCRED) must be the daemon's own user or root: nobody else can ask.
(Three locks on one door: the directory and the socket modes stop other users at connect(),
and the peer check still refuses them if those modes were ever loosened.)

Protocol: one JSON request line, answered by JSON lines.
- ``{"command": "status"}`` -> one object, the snapshot of ``service.status``.
- ``{"command": "unmount"}`` -> progress objects while uploads drain, every 0.25 s:
  ``{"pending_files", "pending_bytes", "total_bytes", "done_bytes", "failing"}`` where
  ``total_bytes`` is what there was to upload since the request (files added meanwhile count
  too) and ``done_bytes`` how much of it has reached B2 or is on its way; then
  ``{"done": true, "pending_files": N}`` just before the FUSE session ends.
- ``{"command": "unmount", "now": true}`` -> unmount at once; pending uploads stay journalled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from b2fs.mount import Shutdown
    from b2fs.service.status import StatusReporter
    from b2fs.transfer.writeback import Entry

log = logging.getLogger(__name__)

MAX_REQUEST = 4096
REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request line


def runtime_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "b2fs"
    if os.geteuid() == 0:
        return Path("/run/b2fs")
    return Path(f"/tmp/b2fs-{os.geteuid()}")


SOCKET_PATH_MAX = 107  # bytes in sockaddr_un.sun_path, less the terminating NUL


def socket_path(mountpoint: Path) -> Path:
    real = os.path.realpath(mountpoint)
    name = hashlib.sha1(real.encode()).hexdigest()[:16] + ".sock"
    path = runtime_dir() / name
    if len(os.fsencode(path)) > SOCKET_PATH_MAX:
        # A runtime directory too deep for a Unix socket: the per-user fallback instead.
        path = Path(f"/tmp/b2fs-{os.geteuid()}") / name
    return path


def _peer_uid(sock: trio.socket.SocketType) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


async def serve(
    path: Path,
    reporter: StatusReporter,
    shutdown: Shutdown,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    path.unlink(missing_ok=True)
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        await listener.bind(str(path))
    finally:
        os.umask(old_umask)
    listener.listen(8)
    task_status.started()
    try:
        async with trio.open_nursery() as nursery:
            while True:
                conn, _ = await listener.accept()
                nursery.start_soon(_handle, conn, reporter, shutdown)
    finally:
        listener.close()
        path.unlink(missing_ok=True)


async def _handle(
    conn: trio.socket.SocketType, reporter: StatusReporter, shutdown: Shutdown
) -> None:
    stream = trio.SocketStream(conn)
    async with stream:
        try:
            await _serve_one(stream, _peer_uid(conn), reporter, shutdown)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("a control client went away: %s", exc)
        except Exception:  # a bug in a status answer must not end the mount
            log.exception("the control socket failed to answer")


async def _serve_one(
    stream: trio.SocketStream, uid: int, reporter: StatusReporter, shutdown: Shutdown
) -> None:
    request = b""
    # Read the request even from a refused peer: closing with it unread would reset the
    # connection before the refusal reaches the client.
    with trio.move_on_after(REQUEST_TIMEOUT):
        request = await _read_line(stream)
    if uid not in (os.geteuid(), 0):
        log.warning("refused a control connection from uid %d", uid)
        await _send(stream, {"error": "permission denied"})
        return
    try:
        message = json.loads(request or b"{}")
    except ValueError:
        await _send(stream, {"error": "bad request"})
        return
    command = message.get("command") if isinstance(message, dict) else None
    if command == "status":
        await _send(stream, reporter.snapshot())
    elif command == "unmount":
        await _unmount(stream, reporter, shutdown, now=bool(message.get("now")))
    else:
        await _send(stream, {"error": f"unknown command {command!r}"})


async def _unmount(
    stream: trio.SocketStream, reporter: StatusReporter, shutdown: Shutdown, now: bool
) -> None:
    """Drain (unless ``now``), then end the FUSE session. A client that goes away meanwhile
    (killed) does not cancel the unmount it asked for; Ctrl-C sends ``now`` instead."""
    fs = reporter.fs
    if not now:
        log.info("unmount requested: waiting for %d pending upload(s)", len(fs.writeback.pending))
        reporter.begin_stop()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_report_progress, stream, reporter)
            await fs.drain()
            nursery.cancel_scope.cancel()
    try:
        await _send(stream, {"done": True, "pending_files": len(fs.writeback.pending)})
    finally:
        shutdown.now()


async def _report_progress(stream: trio.SocketStream, reporter: StatusReporter) -> None:
    writeback = reporter.fs.writeback
    # Every entry pending since the request, with its latest size (entries hash by identity).
    sizes: dict[Entry, int] = {}
    while True:
        pending = writeback.pending
        for entry in pending:
            sizes[entry] = entry.file.size
        still = set(pending)
        done = sum(
            writeback.sent_bytes(entry) if entry in still else size for entry, size in sizes.items()
        )
        try:
            await _send(stream, _progress(pending, sizes, done))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the client is gone; the drain goes on
        await trio.sleep(0.25)


def _progress(pending: list[Entry], sizes: dict[Entry, int], done: int) -> dict[str, Any]:
    return {
        "pending_files": len(pending),
        "pending_bytes": sum(entry.file.size for entry in pending),
        "total_bytes": sum(sizes.values()),
        "done_bytes": done,
        "failing": sum(1 for entry in pending if entry.failure is not None),
    }


async def _read_line(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\n" not in data and len(data) < MAX_REQUEST:
        chunk = await stream.receive_some(MAX_REQUEST)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


async def _send(stream: trio.SocketStream, message: dict[str, Any]) -> None:
    await stream.send_all(json.dumps(message).encode() + b"\n")
