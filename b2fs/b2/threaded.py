"""Ranged downloads and file uploads in worker threads: the bulk-data path of the client.

Why: on these 2-core machines the async stack (trio + httpcore + h11 + httpx) spends several
milliseconds of Python per MiB received, all of it on the event loop's thread, which then
caps a mount's reads. A plain blocking HTTP/1.1 GET read with ``readinto`` into a reused
buffer releases the GIL while the kernel copies the bytes: measured here, 16 parallel 8 MiB
ranged downloads reached 1.3 GB per CPU-second against about 0.3 for the async stack, and the
event loop stays free for FUSE requests.

Uploads of file ranges (:func:`post_file`) go the same way: the thread reads the file into a
reused buffer, hashes it and sends it with an exact Content-Length (the SHA1 appended as 40
hex digits when it was not known in advance, as ``hex_digits_at_end`` means). Small ranges
are the exception: the client sends those from the event loop (``posting.py``), where a few
KiB cost less than the trip to a thread; both take the same :class:`FilePost`.

One request per call of :func:`fetch_range` or :func:`post_file`, run by
``trio.to_thread.run_sync``: each worker
thread keeps its own keep-alive connection per origin (thread-local). The bytes are handed
to ``sink(view)`` *in the worker thread*, in order; the view is only valid during the call.
``progress.received`` counts what the sink got, so a retry resumes after it.

Errors are not decided here: a non-2xx answer raises :class:`HttpFailure` carrying the
status, headers and (bounded) body, and the client turns it into its typed error through the
same code as every other response (``Transport.error_for``), with secrets redacted; a socket
or protocol failure raises :class:`HttpBroken`, which the client maps to its connection
error. Nothing here logs.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import queue
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import outcome
import trio

BUFFER_SIZE = 1 << 20
MAX_ERROR_BODY = 64 * 1024

_local = threading.local()
T = TypeVar("T")

# ``into(limit)``: a writable view (of at most ``limit`` bytes, at least one) of the memory the
# next bytes of the body go to; ``sink`` is then called with the part of that same view that
# was filled. Saves a copy when the sink keeps the bytes (the block cache assembles blocks so).
Into = Callable[[int], memoryview]


@dataclass
class Progress:
    """What one download has delivered so far (updated from the worker thread)."""

    received: int = 0
    status: int = 0  # of the last answer
    file_id: str | None = None
    total_size: int | None = None  # the whole file's size, from the first answer
    sha1: str | None = None  # X-Bz-Content-Sha1 of the first answer
    hasher: hashlib._Hash | None = field(default=None, repr=False)


class HttpFailure(Exception):
    """A non-2xx answer (the caller builds the typed error from it)."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str], body: bytes):
        super().__init__(status)
        self.status = status
        self.reason = reason
        self.headers = dict(headers)
        self.body = body


class HttpBroken(Exception):
    """No complete answer: refused, reset, timed out or cut short."""


class Stopped(Exception):
    """The caller gave up (it was cancelled): the transfer ended early, on purpose."""


class SourceShort(Exception):
    """The upload source ended before its declared size (not worth a retry)."""

    def __init__(self, missing: int) -> None:
        super().__init__(missing)
        self.missing = missing


Origin = tuple[str, str, int]  # scheme, host, port: what one connection reaches


def split_url(url: str) -> tuple[Origin, str, str]:
    """The origin, the request target (path and query) and the Host header's value."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return (parts.scheme, parts.hostname or "", port), target, parts.netloc


def _connection(origin: Origin, timeout: float) -> http.client.HTTPConnection:
    connections: dict[Origin, http.client.HTTPConnection] | None = getattr(
        _local, "connections", None
    )
    if connections is None:
        connections = _local.connections = {}
    conn = connections.get(origin)
    if conn is None:
        scheme, host, port = origin
        cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        conn = connections[origin] = cls(host, port, timeout=timeout)
    return conn


def _drop(origin: Origin) -> None:
    connections = getattr(_local, "connections", {})
    conn = connections.pop(origin, None)
    if conn is not None:
        conn.close()


_idle_buffers: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
IDLE_BUFFERS = 8  # kept for reuse between requests; more are made while more run at once


@contextlib.contextmanager
def _buffer() -> Iterator[memoryview]:
    """A 1 MiB buffer for one request. Reused across requests (no per-thread buffers: trio's
    thread cache may hold many idle threads, and each would keep its own)."""
    try:
        view = _idle_buffers.get_nowait()
    except queue.Empty:
        view = memoryview(bytearray(BUFFER_SIZE))
    try:
        yield view
    finally:
        if _idle_buffers.qsize() < IDLE_BUFFERS:
            _idle_buffers.put(view)


def fetch_range(
    url: str,
    headers: Mapping[str, str],
    offset: int,
    length: int,
    sink: Callable[[memoryview], None],
    progress: Progress,
    *,
    timeout: float = 60.0,
    verify_whole_file: bool = True,
    stop: StopSignal | None = None,
    into: Into | None = None,
) -> None:
    """GET bytes [offset, offset+length) of ``url`` into ``sink`` (see the module docstring).
    ``stop``, once set, ends the transfer at the next chunk (:class:`Stopped`). With
    ``into``, the bytes are received straight into the memory it gives (see :data:`Into`)."""
    origin, target, _ = split_url(url)
    all_headers = {
        **headers,
        "Range": f"bytes={offset}-{offset + length - 1}",
        "Accept-Encoding": "identity",
    }
    try:
        conn = _connection(origin, timeout)
        conn.request("GET", target, headers=all_headers)
        response = conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        _drop(origin)
        raise HttpBroken(f"{type(exc).__name__}: {exc}") from None
    try:
        if response.status not in (200, 206):
            body = response.read(MAX_ERROR_BODY)
            if response.will_close or not response.isclosed():
                _drop(origin)
            raise HttpFailure(response.status, response.reason, dict(response.getheaders()), body)
        _check_answer(response, offset, progress)
        skip = offset if response.status == 200 else 0  # a whole file sent for a range
        _stream(
            response, skip, length, sink, progress, verify_whole_file and offset == 0, stop, into
        )
        if response.will_close or not response.isclosed():
            _drop(origin)  # closing, or more body than asked for (a whole file for a range)
    except (OSError, http.client.HTTPException) as exc:
        _drop(origin)
        raise HttpBroken(f"{type(exc).__name__}: {exc}") from None
    except BaseException:
        _drop(origin)  # the rest of the body is still on the connection
        raise


def _check_answer(response: http.client.HTTPResponse, offset: int, progress: Progress) -> None:
    progress.status = response.status
    file_id = response.getheader("x-bz-file-id")
    total = None
    content_range = response.getheader("content-range")
    if response.status == 206:
        unit, _, spec = (content_range or "").partition(" ")
        span, _, size = spec.partition("/")
        start = span.partition("-")[0]
        if unit != "bytes" or not start.isdigit() or int(start) != offset:
            raise HttpBroken(f"asked for bytes from {offset}, got {content_range!r}")
        total = int(size) if size.isdigit() else None
    else:
        length = response.getheader("content-length")
        total = int(length) if length and length.isdigit() else None
    if progress.file_id is None:
        progress.file_id, progress.total_size = file_id, total
        progress.sha1 = (response.getheader("x-bz-content-sha1") or "").removeprefix("unverified:")
    elif file_id != progress.file_id or total != progress.total_size:
        raise HttpBroken("the file changed while it was being downloaded")


def _stream(
    response: http.client.HTTPResponse,
    skip: int,
    length: int,
    sink: Callable[[memoryview], None],
    progress: Progress,
    may_verify: bool,
    stop: StopSignal | None,
    into: Into | None,
) -> None:
    whole = (
        may_verify
        and progress.received == 0
        and progress.total_size is not None
        and length >= progress.total_size
        and len(progress.sha1 or "") == 40
    )
    if whole:
        progress.hasher = hashlib.sha1()
    with _buffer() as buffer:
        _read_body(response, buffer, skip, length, sink, progress, stop, into)


def _read_body(
    response: http.client.HTTPResponse,
    buffer: memoryview,
    skip: int,
    length: int,
    sink: Callable[[memoryview], None],
    progress: Progress,
    stop: StopSignal | None,
    into: Into | None,
) -> None:
    left = length
    while left > 0:
        if stop is not None and stop.is_set():
            raise Stopped()
        # Bytes to skip (a whole file answered for a range) never go into the caller's memory.
        target = buffer if into is None or skip else into(left)
        n = response.readinto(target)
        if not n:
            raise HttpBroken(f"the answer ended {left} bytes early")
        view = target[:n]
        if skip:
            dropped = min(skip, n)
            view, skip = view[dropped:], skip - dropped
        view = view[:left]
        if not view:
            continue
        if progress.hasher is not None:
            progress.hasher.update(view)
        sink(view)
        progress.received += len(view)
        left -= len(view)


@dataclass
class Posted:
    """The answer to an upload: status, headers and body (JSON), and what was sent."""

    status: int
    headers: dict[str, str]
    body: bytes
    sha1: str  # of the bytes sent
    sent: int = 0


@dataclass(frozen=True)
class FilePost:
    """One upload of a file range: sent by :func:`post_file` here, or from the event loop
    (``posting.py``) when it is small. ``append_sha1``: send the SHA1 after the bytes (as
    ``hex_digits_at_end`` means); ``progress``: told the bytes sent so far."""

    url: str
    headers: Mapping[str, str]
    path: str
    offset: int
    length: int
    append_sha1: bool
    progress: Callable[[int], None] | None = None


def post_file(post: FilePost, *, timeout: float = 60.0, stop: StopSignal | None = None) -> Posted:
    """POST the range (see the module docstring). A 2xx or not, the answer is returned; only a
    broken exchange raises (:class:`HttpBroken`)."""
    origin, target, _ = split_url(post.url)
    headers, path, offset, length = post.headers, post.path, post.offset, post.length
    append_sha1, progress = post.append_sha1, post.progress
    hasher = hashlib.sha1()
    sent = 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            conn = _connection(origin, timeout)
            with _buffer() as buffer, _abortable(stop, conn):
                conn.putrequest("POST", target, skip_accept_encoding=True)
                for name, value in headers.items():
                    conn.putheader(name, value)
                conn.putheader("Content-Length", str(length + (40 if append_sha1 else 0)))
                if length <= len(buffer):
                    # Headers, body and SHA1 in one send: each system call here hands the
                    # GIL over, and a small file is most of what is uploaded.
                    view = buffer[:length]
                    got = read_at(fd, view, offset)
                    if got < length:
                        raise SourceShort(length - got)
                    if stop is not None and stop.is_set():
                        raise Stopped()  # nothing sent: B2 stores nothing
                    hasher.update(view)
                    digest = hasher.hexdigest()
                    body = bytes(view) + (digest.encode("ascii") if append_sha1 else b"")
                    conn.endheaders(message_body=body)
                    sent = len(body)
                    if progress is not None:
                        progress(length)  # the source's bytes (not the appended SHA1)
                else:
                    conn.endheaders()
                    left = length
                    while left > 0:
                        if stop is not None and stop.is_set():
                            raise Stopped()  # the request is cut short: B2 stores nothing
                        n = read_at(fd, buffer[: min(left, len(buffer))], offset + sent)
                        if not n:
                            raise SourceShort(left)
                        view = buffer[:n]
                        hasher.update(view)
                        conn.send(view)
                        left -= n
                        sent += n
                        if progress is not None:
                            progress(sent)
                    digest = hasher.hexdigest()
                    if append_sha1:
                        conn.send(digest.encode("ascii"))
                        sent += 40
                response = conn.getresponse()
                body = response.read(MAX_ERROR_BODY)
        finally:
            os.close(fd)
        if response.will_close or not response.isclosed():
            _drop(origin)
        return Posted(response.status, dict(response.getheaders()), body, digest, sent)
    except (OSError, http.client.HTTPException) as exc:
        _drop(origin)
        raise HttpBroken(f"{type(exc).__name__}: {exc}") from None
    except BaseException:
        _drop(origin)
        raise


def read_at(fd: int, view: memoryview, position: int) -> int:
    """Read into ``view`` from ``position`` until it is full or the file ends; how much."""
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], position + done)
        if not n:
            break
        done += n
    return done


class StopSignal:
    """Tells a transfer's thread to stop (:func:`run_stoppable`): at its next chunk, and at
    once while it is blocked on a connection it registered (:func:`_abortable`), by shutting
    that connection down. An upload whose body the kernel has already taken from the thread
    would otherwise go on reaching B2, and be stored, after its caller gave it up.

    Also how the caller hears that the thread is done once it has stopped waiting for it
    (``finish``/``wait_finished``): a transfer that ends normally costs no second wake-up of
    the event loop (one per transfer, hundreds a second with small files)."""

    def __init__(self) -> None:
        self._set = False  # read without the lock: a bool is read whole
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._finished = False
        self._waiter: tuple[trio.lowlevel.TrioToken, trio.Event] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with self._lock:
            self._set = True
            if self._sock is not None:
                _shut_down(self._sock)

    @contextlib.contextmanager
    def watching(self, conn: http.client.HTTPConnection) -> Iterator[None]:
        if conn.sock is None:
            conn.connect()
        with self._lock:
            self._sock = conn.sock
            if self._set:
                _shut_down(conn.sock)
        try:
            yield
        finally:
            with self._lock:
                self._sock = None

    def finish(self) -> None:
        """In the worker thread, last: wakes a caller that stopped waiting for the thread."""
        with self._lock:
            self._finished = True
            waiter = self._waiter
        if waiter is not None:
            token, finished = waiter
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(finished.set)

    async def wait_finished(self) -> None:
        """On the trio thread, once the thread's call was abandoned: wait until it is done."""
        finished = trio.Event()
        with self._lock:
            if self._finished:
                return
            self._waiter = (trio.lowlevel.current_trio_token(), finished)
        await finished.wait()


def _abortable(
    stop: StopSignal | None, conn: http.client.HTTPConnection
) -> contextlib.AbstractContextManager[None]:
    return stop.watching(conn) if stop is not None else contextlib.nullcontext()


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


async def run_stoppable(fn: Callable[..., T], limiter: trio.CapacityLimiter, **kwargs: object) -> T:
    """Run ``fn(stop=signal, **kwargs)`` in a worker thread. If the calling task is cancelled,
    the :class:`StopSignal` is set and the cancellation waits (shielded) until the thread has
    stopped, within one chunk or at once when it waits on an upload's connection: nothing of
    the transfer goes on behind the caller's back (an upload never reads its source after its
    attempt was cancelled, and is cut short rather than finished)."""
    stop = StopSignal()

    def work() -> outcome.Outcome[T]:
        try:
            return outcome.capture(fn, stop=stop, **kwargs)
        finally:
            stop.finish()

    try:
        result = await trio.to_thread.run_sync(work, abandon_on_cancel=True, limiter=limiter)
    except trio.Cancelled:
        stop.set()
        with trio.CancelScope(shield=True):
            await stop.wait_finished()
        raise
    return result.unwrap()


def sha1_mismatch(progress: Progress) -> str | None:
    """After a whole-file download: the SHA1 computed, if it differs from B2's."""
    if progress.hasher is None or progress.sha1 is None:
        return None
    actual = progress.hasher.hexdigest()
    return actual if actual != progress.sha1 else None


__all__ = [
    "HttpBroken",
    "HttpFailure",
    "Posted",
    "Progress",
    "SourceShort",
    "Stopped",
    "fetch_range",
    "post_file",
    "run_stoppable",
    "sha1_mismatch",
]
