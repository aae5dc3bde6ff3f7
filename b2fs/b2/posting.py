"""Small uploads sent from the event loop: one HTTP/1.1 POST on a pooled keep-alive socket.

Why: most files are small, and a small upload sent from a worker thread (``threaded.py``)
costs more in hand-offs than in work: the thread's wake-up, the GIL given up and taken back
around each system call beside a busy event loop, and the loop's wake-up at the end. Measured
here (2,000 uploads of 16 KiB, 32 at once, to the emulator at 40 ms): 0.66-0.82 ms of CPU per
upload through worker threads, 0.24-0.26 ms sent from the event loop (2026-11-27). So
bodies of at most :data:`INLINE_LIMIT` bytes go this way; larger ones stream from worker
threads, where the kernel's copies run without the GIL.

The body is read with one ``pread`` that must not wait for the disk (``RWF_NOWAIT``: a file
just written is in the page cache); when the kernel would have to read the disk (a staging
file left by an earlier mount, say), the read runs in a worker thread instead, so the event
loop does not wait for the disk to read a body (opening the file, a lookup of a cached
inode, stays on the loop). The request goes out whole (headers, body, and the SHA1 appended
when the caller did not know it, as ``hex_digits_at_end`` means); the answer is read to its
end (``Content-Length``, chunked, or until the server closes) and returned as a
``threaded.Posted``, 2xx or not: the client decides what it means, exactly as for the threaded
path. A socket failure, a timeout or a malformed answer raises ``threaded.HttpBroken``;
cancelling the caller closes the connection at once (the upload is cut short, as
``threaded.run_stoppable`` does). A connection goes back to the pool only after a complete
answer that lets it stay open; before reuse, one the server has closed meanwhile is dropped.
Nothing here logs (the Authorization header is a secret).
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import trio

from b2fs.b2.threaded import (
    MAX_ERROR_BODY,
    FilePost,
    HttpBroken,
    Origin,
    Posted,
    SourceShort,
    read_at,
    split_url,
)

INLINE_LIMIT = 256 * 1024  # bodies up to this are read, hashed and sent on the event loop
MAX_HEAD = 64 * 1024  # status line and headers of an answer
IDLE_PER_ORIGIN = 64  # keep-alive connections kept per upload host
IDLE_TIMEOUT = 60.0  # seconds an idle connection is kept (B2 closes idle ones too)


@dataclass(eq=False)
class _Connection:
    stream: trio.abc.Stream
    sock: socket.socket  # the stdlib socket under ``stream``
    buffered: bytearray  # received and not yet parsed (nothing, between exchanges)
    idle_since: float = 0.0


class PostingPool:
    """Idle keep-alive connections per origin, and the POST sent on one of them."""

    def __init__(
        self,
        timeout: float,
        tls: ssl.SSLContext | None = None,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``tls``: the context of https connections (by default the system's trusted CAs,
        as for every other request of the client)."""
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self._idle: dict[Origin, list[_Connection]] = {}
        self._tls = tls
        self._clock = clock
        self._swept = clock()

    async def post_file(self, post: FilePost) -> Posted:
        """Send ``post`` (of at most :data:`INLINE_LIMIT` bytes) and read the answer."""
        if post.length > INLINE_LIMIT:
            raise ValueError(f"{post.length} bytes is more than an inline upload takes")
        origin, target, host = split_url(post.url)
        body = await _read_body(post.path, post.offset, post.length)
        digest = hashlib.sha1(body).hexdigest()
        if post.append_sha1:
            body += digest.encode("ascii")
        request = _head(target, host, post.headers, len(body)) + body
        conn = self._take(origin)
        try:
            if conn is None:
                conn = await self._connect(origin)
            with trio.fail_after(self.timeout):
                await conn.stream.send_all(request)
            if post.progress is not None:
                post.progress(post.length)  # the source's bytes (not the appended SHA1)
            status, answer_headers, answer, reusable = await self._answer(conn)
        except BaseException as exc:
            if conn is not None:
                await trio.aclose_forcefully(conn.stream)
            if isinstance(exc, OSError | trio.BrokenResourceError | trio.TooSlowError):
                raise _broken(exc) from None
            raise
        if reusable:
            self._give_back(origin, conn)
        else:
            await trio.aclose_forcefully(conn.stream)
        return Posted(status, answer_headers, answer, digest, len(body))

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for conn in connections:
                await trio.aclose_forcefully(conn.stream)

    # -- connections ---------------------------------------------------------------------------

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if _still_open(conn):
                return conn
            conn.sock.close()  # closed by the server while idle, or it sent something unasked
        return None

    def _give_back(self, origin: Origin, conn: _Connection) -> None:
        now = conn.idle_since = self._clock()
        idle = self._idle.setdefault(origin, [])
        if len(idle) < IDLE_PER_ORIGIN:
            idle.append(conn)
        else:
            conn.sock.close()
        if now - self._swept >= self.idle_timeout / 4:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Close the connections idle for longer than ``idle_timeout``: upload URLs change
        (a failed upload drops its URL, B2 hands out others), and a connection to a host no
        longer used would otherwise stay open, unused, for as long as the mount."""
        self._swept = now
        for origin, idle in list(self._idle.items()):
            kept = []
            for conn in idle:
                if now - conn.idle_since < self.idle_timeout:
                    kept.append(conn)
                else:
                    conn.sock.close()
            if kept:
                self._idle[origin] = kept
            else:
                del self._idle[origin]

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        with trio.fail_after(self.timeout):
            sock, trio_sock = await _open_socket(host, port)
            try:
                stream: trio.abc.Stream = trio.SocketStream(trio_sock)
                if scheme == "https":
                    if self._tls is None:
                        self._tls = ssl.create_default_context()
                    tls = trio.SSLStream(
                        stream, self._tls, server_hostname=host, https_compatible=True
                    )
                    await tls.do_handshake()
                    stream = tls
            except BaseException:
                sock.close()
                raise
        return _Connection(stream, sock, bytearray())

    # -- the answer ----------------------------------------------------------------------------

    async def _receive(self, conn: _Connection) -> bool:
        """Append what arrives to the connection's buffer; False at the end of the stream."""
        with trio.fail_after(self.timeout):
            data = await conn.stream.receive_some(65536)
        conn.buffered += data
        return bool(data)

    async def _more(self, conn: _Connection, cut: str = "in the middle of an answer") -> None:
        """Receive more of the answer; the stream ending here is a broken exchange."""
        if not await self._receive(conn):
            raise HttpBroken(f"the connection closed {cut}")

    async def _find(self, conn: _Connection, marker: bytes) -> int:
        """Receive until ``marker`` is in the buffer; where it starts."""
        while (at := conn.buffered.find(marker)) < 0:
            await self._more(conn)
        return at

    async def _head(self, conn: _Connection) -> tuple[int, str, dict[str, str]]:
        while (end := conn.buffered.find(b"\r\n\r\n")) < 0:
            if len(conn.buffered) > MAX_HEAD:
                raise HttpBroken("the answer's headers are too long")
            await self._more(conn, "before an answer")
        head = bytes(conn.buffered[:end]).decode("latin-1")
        del conn.buffered[: end + 4]
        return _parse_head(head)

    async def _answer(self, conn: _Connection) -> tuple[int, dict[str, str], bytes, bool]:
        """Status, headers, body (at most MAX_ERROR_BODY bytes) and whether the
        connection can carry another request."""
        status, version, headers = await self._head(conn)
        while 100 <= status < 200:  # an interim answer (100 Continue, unasked): the next one
            status, version, headers = await self._head(conn)
        lowered = {k.lower(): v for k, v in headers.items()}
        keep_alive = _keeps_alive(version, lowered.get("connection", ""))
        if "chunked" in lowered.get("transfer-encoding", "").lower():
            body, complete = await self._chunked(conn)
        elif "content-length" in lowered:
            body, complete = await self._sized(conn, _length(lowered["content-length"]))
        else:
            body, complete = await self._until_closed(conn)
            keep_alive = False
        reusable = keep_alive and complete and not conn.buffered
        return status, headers, body, reusable

    async def _sized(self, conn: _Connection, length: int) -> tuple[bytes, bool]:
        wanted = min(length, MAX_ERROR_BODY)
        while len(conn.buffered) < wanted:
            await self._more(conn)
        body = bytes(conn.buffered[:wanted])
        del conn.buffered[:wanted]
        return body, wanted == length

    async def _until_closed(self, conn: _Connection) -> tuple[bytes, bool]:
        while len(conn.buffered) < MAX_ERROR_BODY and await self._receive(conn):
            pass
        body = bytes(conn.buffered[:MAX_ERROR_BODY])
        conn.buffered.clear()
        return body, False

    async def _chunked(self, conn: _Connection) -> tuple[bytes, bool]:
        body = bytearray()
        while True:
            end = await self._find(conn, b"\r\n")
            size_text = bytes(conn.buffered[:end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpBroken("a malformed chunk in the answer") from None
            del conn.buffered[: end + 2]
            if size == 0:
                # The trailer section (usually empty) ends with an empty line.
                while (end := await self._find(conn, b"\r\n")) > 0:
                    del conn.buffered[: end + 2]
                del conn.buffered[:2]
                return bytes(body[:MAX_ERROR_BODY]), len(body) <= MAX_ERROR_BODY
            while len(conn.buffered) < size + 2:
                await self._more(conn)
            if len(body) <= MAX_ERROR_BODY:
                body += conn.buffered[:size]
            del conn.buffered[: size + 2]


async def _open_socket(host: str, port: int) -> tuple[socket.socket, trio.socket.SocketType]:
    """A socket connected to the first of ``host``'s addresses that accepts, as the stdlib
    socket (for :func:`_still_open`) and trio's wrapper of it. Cancelling closes it."""
    failure: OSError = OSError(f"no address found for {host}")
    for family, kind, proto, _, address in await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            trio_sock = trio.socket.from_stdlib_socket(sock)
            await trio_sock.connect(address)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock, trio_sock
    raise failure


async def _read_body(path: str, offset: int, length: int) -> bytearray:
    """The bytes to send: read on the event loop when they are in the page cache, else in a
    worker thread (the loop must not wait for a disk)."""
    body = bytearray(length)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            got = os.preadv(fd, [body], offset, os.RWF_NOWAIT) if length else 0
        except OSError:  # EAGAIN: not all cached; EOPNOTSUPP: a filesystem without NOWAIT
            got = 0
        if got < length:
            got += await trio.to_thread.run_sync(read_at, fd, memoryview(body)[got:], offset + got)
    finally:
        os.close(fd)
    if got < length:
        raise SourceShort(length - got)
    return body


def _broken(exc: BaseException) -> HttpBroken:
    """trio reports a failed TLS handshake or a reset as BrokenResourceError, the reason
    (a certificate refused, say) in its cause: name that."""
    reason = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
    return HttpBroken(f"{type(reason).__name__}: {reason}")


def _head(target: str, host: str, headers: Mapping[str, str], length: int) -> bytes:
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        if any(c in value for c in "\r\n\0") or any(c in name for c in "\r\n\0: "):
            raise ValueError(f"invalid header {name!r}")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _parse_head(head: str) -> tuple[int, str, dict[str, str]]:
    status_line, _, rest = head.partition("\r\n")
    version, _, status_reason = status_line.partition(" ")
    status_text = status_reason.partition(" ")[0]
    if not version.startswith("HTTP/1.") or not (status_text.isdigit() and len(status_text) == 3):
        raise HttpBroken(f"not an HTTP/1.x answer: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in rest.split("\r\n") if rest else ():
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HttpBroken("a malformed header line in the answer")
        headers[name] = value.strip()
    return int(status_text), version, headers


def _length(text: str) -> int:
    if not text.strip().isdigit():
        raise HttpBroken(f"a malformed Content-Length in the answer: {text[:40]!r}")
    return int(text)


def _keeps_alive(version: str, connection: str) -> bool:
    tokens = {t.strip().lower() for t in connection.split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def _still_open(conn: _Connection) -> bool:
    """An idle connection can carry a request: the server has neither closed it nor sent
    anything since its last answer (a byte now could only be the start of a close or an
    error; at worst a good connection is given up for a new one)."""
    try:
        conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False
