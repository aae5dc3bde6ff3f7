"""The control socket of a running mount: status, and unmount-after-upload.

A Unix socket per mount point, in a directory only the mount's owner can enter
(``$XDG_RUNTIME_DIR/b2fs``, ``/run/b2fs`` for root, else ``/tmp/b2fs-<uid>``), named after a
hash of the mount point's real path. The socket itself is mode 0600, and every connection's
peer credentials (SO_PEERCRED) must be the daemon's own user or root: nobody else can ask.

Protocol: one JSON request line, answered by JSON lines.
- ``{"command": "status"}`` -> one object (see ``status``).
- ``{"command": "unmount"}`` -> progress objects (``{"pending_files", "pending_bytes"}``) while
  uploads drain, then ``{"done": true}`` just before the FUSE session ends.
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
    from b2fs.fs.filesystem import Filesystem
    from b2fs.mount import Shutdown

log = logging.getLogger(__name__)

MAX_REQUEST = 4096


def runtime_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "b2fs"
    if os.geteuid() == 0:
        return Path("/run/b2fs")
    return Path(f"/tmp/b2fs-{os.geteuid()}")


def socket_path(mountpoint: Path) -> Path:
    real = os.path.realpath(mountpoint)
    return runtime_dir() / (hashlib.sha1(real.encode()).hexdigest()[:16] + ".sock")


def status(fs: Filesystem) -> dict[str, Any]:
    """What ``b2fs status`` shows (no secrets: counts and names only)."""
    writeback = fs.writeback
    pending = [
        {
            "name": entry.row.name,
            "bucket": entry.row.bucket_name,
            "size": entry.file.size,
            "uploading": entry.uploading,
            "error": str(entry.failure) if entry.failure else None,
        }
        for entry in writeback.pending
    ]
    cache = fs.cache
    lookups = cache.stats.hits + cache.stats.misses
    return {
        "pending": pending,
        "pending_files": len(pending),
        "pending_bytes": sum(p["size"] for p in pending),
        "cache": {
            "used_bytes": cache.used_bytes,
            "capacity_bytes": cache.capacity,
            "hits": cache.stats.hits,
            "misses": cache.stats.misses,
            "hit_ratio": cache.stats.hits / lookups if lookups else None,
        },
        "downloads": {
            "requests": fs.fetcher.stats.requests,
            "bytes": fs.fetcher.stats.bytes_downloaded,
        },
        "list_calls": fs.lister.list_calls,
    }


def _peer_uid(sock: trio.socket.SocketType) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


async def serve(
    path: Path,
    fs: Filesystem,
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
                nursery.start_soon(_handle, conn, fs, shutdown)
    finally:
        listener.close()
        path.unlink(missing_ok=True)


async def _handle(conn: trio.socket.SocketType, fs: Filesystem, shutdown: Shutdown) -> None:
    stream = trio.SocketStream(conn)
    async with stream:
        uid = _peer_uid(conn)
        if uid not in (os.geteuid(), 0):
            log.warning("refused a control connection from uid %d", uid)
            await _send(stream, {"error": "permission denied"})
            return
        request = await _read_line(stream)
        try:
            message = json.loads(request or b"{}")
        except ValueError:
            await _send(stream, {"error": "bad request"})
            return
        command = message.get("command") if isinstance(message, dict) else None
        if command == "status":
            await _send(stream, status(fs))
        elif command == "unmount":
            await _unmount(stream, fs, shutdown, now=bool(message.get("now")))
        else:
            await _send(stream, {"error": f"unknown command {command!r}"})


async def _unmount(
    stream: trio.SocketStream, fs: Filesystem, shutdown: Shutdown, now: bool
) -> None:
    if not now:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_report_progress, stream, fs)
            await fs.drain()
            nursery.cancel_scope.cancel()
    await _send(stream, {"done": True, "pending_files": len(fs.writeback.pending)})
    shutdown.now()


async def _report_progress(stream: trio.SocketStream, fs: Filesystem) -> None:
    while True:
        stats = fs.writeback.stats()
        await _send(
            stream,
            {"pending_files": stats["pending_files"], "pending_bytes": stats["pending_bytes"]},
        )
        await trio.sleep(0.25)


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
