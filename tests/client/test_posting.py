"""Small uploads sent from the event loop (``posting.py``): HTTP/1.1 on kept-alive sockets.

The exchange is tested against a scripted server (each connection answers what the test
says, byte for byte), and the path through the client against the emulator."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import os
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from b2fs.b2 import B2Client, Bucket, FileSource, posting
from b2fs.b2.errors import B2ConnectionError
from b2fs.b2.posting import INLINE_LIMIT, PostingPool
from b2fs.b2.threaded import MAX_ERROR_BODY, FilePost, HttpBroken, SourceShort
from b2fs.emulator import Emulator

from .conftest import calls, connect_to
from .test_threaded import upload_then_cancel

JSON_OK = b'{"ok": 1}'


def answer(body: bytes = JSON_OK, *, status: str = "200 OK", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@dataclass
class Request:
    head: str
    body: bytes

    def header(self, name: str) -> str:
        for line in self.head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.lower() == name.lower():
                return value.strip()
        raise KeyError(name)


@dataclass
class ScriptedServer:
    """Answers each request with the next of ``answers``: bytes to send, then the connection
    is kept (or closed, if ``close_after`` holds the request's number); ``None``: no answer
    at all (the request is read, then nothing is sent until the client goes away)."""

    answers: list[bytes | None]
    close_after: set[int] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    closed_by_client: int = 0
    client_closed: trio.Event = field(default_factory=trio.Event)  # a connection, at least
    port: int = 0
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/b2api/v3/b2_upload_file/bucket/pod"

    def _closed(self) -> None:
        self.closed_by_client += 1
        self.client_closed.set()

    async def serve(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        buffered = bytearray()
        async with stream:
            while True:
                while b"\r\n\r\n" not in buffered:
                    data = await stream.receive_some(65536)
                    if not data:
                        self._closed()
                        return
                    buffered += data
                end = buffered.index(b"\r\n\r\n")
                head = bytes(buffered[:end]).decode("latin-1")
                del buffered[: end + 4]
                request = Request(head, b"")
                length = int(request.header("Content-Length"))
                while len(buffered) < length:
                    data = await stream.receive_some(65536)
                    if not data:
                        self._closed()
                        return
                    buffered += data
                request.body = bytes(buffered[:length])
                del buffered[:length]
                self.requests.append(request)
                number = len(self.requests)
                reply = self.answers[number - 1]
                if reply is None:
                    if await stream.receive_some(65536) == b"":
                        self._closed()
                    return
                await stream.send_all(reply)
                if number in self.close_after:
                    return


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    async with trio.open_nursery() as nursery:

        async def start(answers: list[bytes | None], **options: Any) -> ScriptedServer:
            server = ScriptedServer(answers, **options)
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, server.serve, 0, host="127.0.0.1")
            )
            server.port = listeners[0].socket.getsockname()[1]
            return server

        yield start
        nursery.cancel_scope.cancel()


@pytest.fixture
async def serve_tls(
    tmp_path: Path,
) -> AsyncIterator[tuple[Callable[..., Any], ssl.SSLContext]]:
    """As ``serve``, over TLS with a self-signed certificate; also yields the client's context
    that trusts it."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    async with trio.open_nursery() as nursery:

        async def start(answers: list[bytes | None]) -> ScriptedServer:
            server = ScriptedServer(answers, scheme="https")

            async def handle(stream: trio.SocketStream) -> None:
                with contextlib.suppress(trio.BrokenResourceError):
                    await server.serve(trio.SSLStream(stream, server_side, server_side=True))

            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1")
            )
            server.port = listeners[0].socket.getsockname()[1]
            return server

        yield start, ssl.create_default_context(cafile=str(cert))
        nursery.cancel_scope.cancel()


@pytest.fixture
def staged(tmp_path: Path) -> tuple[str, bytes]:
    data = os.urandom(20_000)
    path = tmp_path / "staging"
    path.write_bytes(data)
    return str(path), data


HEADERS = {"Authorization": "upload-token", "X-Bz-File-Name": "f", "X-Bz-Content-Sha1": "x"}


async def post(pool: PostingPool, server: ScriptedServer, staged: tuple[str, bytes]) -> Any:
    path, data = staged
    return await pool.post_file(FilePost(server.url, HEADERS, path, 0, len(data), True))


async def test_uploads_share_one_kept_connection_and_send_the_body_and_its_sha1(
    serve: Any, staged: tuple[str, bytes]
) -> None:
    server = await serve([answer(), answer(), answer()])
    pool = PostingPool(timeout=10)
    for _ in range(3):
        posted = await post(pool, server, staged)
        assert (posted.status, posted.body) == (200, JSON_OK)
    await pool.aclose()
    digest = hashlib.sha1(staged[1]).hexdigest()
    assert server.connections == 1
    request = server.requests[0]
    assert request.body == staged[1] + digest.encode()
    assert request.head.startswith("POST /b2api/v3/b2_upload_file/bucket/pod HTTP/1.1\r\n")
    assert request.header("Host") == f"127.0.0.1:{server.port}"
    assert request.header("Content-Length") == str(len(staged[1]) + 40)
    assert request.header("X-Bz-File-Name") == "f"
    assert posted.sha1 == digest and posted.sent == len(staged[1]) + 40


async def test_a_part_of_a_file_is_sent_with_its_known_sha1(serve: Any, tmp_path: Path) -> None:
    server = await serve([answer()])
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    posted = await PostingPool(timeout=10).post_file(
        FilePost(server.url, HEADERS, str(path), 3, 4, append_sha1=False)
    )
    assert server.requests[0].body == b"3456"
    assert posted.sha1 == hashlib.sha1(b"3456").hexdigest()


async def test_over_tls_the_connection_is_kept_too(
    serve_tls: Any, staged: tuple[str, bytes]
) -> None:
    """B2's upload URLs are https (a TLS 1.3 server's session tickets, sent after the
    handshake, are read with the first answer: the idle connection has nothing waiting)."""
    start, trusting = serve_tls
    server = await start([answer(), answer()])
    pool = PostingPool(timeout=10, tls=trusting)
    for _ in range(2):
        assert (await post(pool, server, staged)).body == JSON_OK
    assert server.connections == 1
    assert server.requests[1].body[:-40] == staged[1]


async def test_a_server_whose_certificate_is_not_trusted_is_refused(
    serve_tls: Any, staged: tuple[str, bytes]
) -> None:
    start, _ = serve_tls
    server = await start([answer()])
    with pytest.raises(HttpBroken, match="CERTIFICATE_VERIFY_FAILED"):
        await post(PostingPool(timeout=10), server, staged)
    assert server.requests == []


async def test_interim_chunked_and_close_delimited_answers_are_read_whole(
    serve: Any, staged: tuple[str, bytes]
) -> None:
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"  # an interim answer first, though none was asked
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;ext=1\r\n{"a"\r\n5\r\n: 12}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    until_closed = b'HTTP/1.0 503 Service Unavailable\r\n\r\n{"code": "busy"}'
    server = await serve([chunked, answer(), until_closed], close_after={3})
    pool = PostingPool(timeout=10)
    first = await post(pool, server, staged)
    assert (first.status, first.body) == (200, b'{"a": 12}')
    second = await post(pool, server, staged)  # the chunked answer left the connection usable
    assert server.connections == 1 and second.body == JSON_OK
    third = await post(pool, server, staged)
    assert (third.status, third.body) == (503, b'{"code": "busy"}')
    assert third.headers == {}


async def test_a_connection_closed_by_the_server_is_not_used_again(
    serve: Any, staged: tuple[str, bytes]
) -> None:
    """Closed after an answer that said so, or closed while idle without a word (as servers do
    with idle keep-alive connections): the next upload opens a new connection instead of
    failing on the dead one."""
    server = await serve(
        [answer(extra="Connection: close\r\n"), answer(), answer()], close_after={1, 2}
    )
    pool = PostingPool(timeout=10)
    for _ in range(2):
        assert (await post(pool, server, staged)).status == 200
    # The server closed the second connection after answering; wait until its FIN has
    # arrived (what an idle pooled connection sees), then upload again.
    idle = pool._idle[("http", "127.0.0.1", server.port)][0]
    await trio.lowlevel.wait_readable(idle.sock)
    assert (await post(pool, server, staged)).status == 200
    assert server.connections == 3
    assert len(server.requests) == 3


async def test_connections_idle_too_long_are_closed(serve: Any, staged: tuple[str, bytes]) -> None:
    """Upload URLs change over a mount's life: a connection to a host no longer used is closed
    once it has been idle for ``idle_timeout``, not kept for as long as the mount."""
    now = [1000.0]
    pool = PostingPool(timeout=10, idle_timeout=60, clock=lambda: now[0])
    old, new = await serve([answer()]), await serve([answer(), answer()])
    await post(pool, old, staged)
    now[0] += 30
    await post(pool, new, staged)
    assert ("http", "127.0.0.1", old.port) in pool._idle  # idle for 30 s: kept
    now[0] += 31
    await post(pool, new, staged)  # the old host's connection has been idle for 61 s
    with trio.fail_after(10):
        await old.client_closed.wait()
    assert list(pool._idle) == [("http", "127.0.0.1", new.port)]
    assert new.connections == 1


async def test_a_large_answer_is_cut_and_its_connection_dropped(
    serve: Any, staged: tuple[str, bytes]
) -> None:
    big = b"e" * (MAX_ERROR_BODY + 10)
    server = await serve([answer(big, status="500 Internal Server Error"), answer()])
    pool = PostingPool(timeout=10)
    posted = await post(pool, server, staged)
    assert (posted.status, len(posted.body)) == (500, MAX_ERROR_BODY)
    assert (await post(pool, server, staged)).status == 200
    assert server.connections == 2


@pytest.mark.parametrize(
    "reply",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: twelve\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
async def test_a_malformed_answer_is_a_broken_exchange(
    serve: Any, staged: tuple[str, bytes], reply: bytes
) -> None:
    server = await serve([reply], close_after={1})
    pool = PostingPool(timeout=10)
    with pytest.raises(HttpBroken):
        await post(pool, server, staged)
    assert pool._idle.get(("http", "127.0.0.1", server.port), []) == []


async def test_an_answer_cut_short_is_a_broken_exchange(
    serve: Any, staged: tuple[str, bytes]
) -> None:
    server = await serve([answer()[:-3]], close_after={1})
    with pytest.raises(HttpBroken, match="middle of an answer"):
        await post(PostingPool(timeout=10), server, staged)


async def test_a_silent_server_times_out_and_the_connection_is_closed(
    serve: Any, staged: tuple[str, bytes]
) -> None:
    server = await serve([None])
    with pytest.raises(HttpBroken, match="TooSlowError"):
        await post(PostingPool(timeout=0.2), server, staged)
    with trio.fail_after(10):
        await server.client_closed.wait()


async def test_a_cancelled_upload_closes_its_connection(
    serve: Any, staged: tuple[str, bytes]
) -> None:
    """Cancelled while it waits for the answer: the connection is closed at once (B2 then
    has a request cut short, and stores nothing) and is not pooled."""
    server = await serve([None])
    pool = PostingPool(timeout=60)
    with trio.move_on_after(0.2):
        await post(pool, server, staged)
    with trio.fail_after(10):
        await server.client_closed.wait()
    assert pool._idle.get(("http", "127.0.0.1", server.port), []) == []


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(
    serve: Any, staged: tuple[str, bytes]
) -> None:
    server = await serve([answer()])
    path, data = staged
    with pytest.raises(ValueError, match="invalid header"):
        await PostingPool(timeout=10).post_file(
            FilePost(server.url, {"X-Bz-Info-a": "1\r\nX-Evil: 2"}, path, 0, len(data), True)
        )
    assert server.connections == 0


async def test_a_file_shorter_than_declared_raises_before_sending(
    serve: Any, staged: tuple[str, bytes]
) -> None:
    server = await serve([answer()])
    path, data = staged
    with pytest.raises(SourceShort):
        await PostingPool(timeout=10).post_file(
            FilePost(server.url, HEADERS, path, 0, len(data) + 5, append_sha1=True)
        )
    assert server.connections == 0


def counting_thread_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the functions run in worker threads from now on."""
    trips: list[str] = []
    real = trio.to_thread.run_sync

    async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", counting)
    return trips


@pytest.mark.parametrize(
    "refusal", [BlockingIOError(errno.EAGAIN, "not cached"), OSError(errno.EOPNOTSUPP, "no")]
)
async def test_the_body_is_read_on_the_event_loop_unless_the_disk_must_be_read(
    serve: Any, staged: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch, refusal: OSError
) -> None:
    server = await serve([answer(), answer()])
    pool = PostingPool(timeout=10)
    trips = counting_thread_trips(monkeypatch)
    await post(pool, server, staged)
    assert trips == []
    # Not in the page cache (or a filesystem without RWF_NOWAIT): the read goes to a worker
    # thread.
    real_preadv = os.preadv

    def cold_preadv(fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
        if flags & os.RWF_NOWAIT:
            raise refusal
        return real_preadv(fd, buffers, offset, flags)

    monkeypatch.setattr(posting.os, "preadv", cold_preadv)
    await post(pool, server, staged)
    assert trips == ["read_at"]
    assert server.requests[1].body[:-40] == staged[1]


# -- through the client, against the emulator -----------------------------------------------------


async def test_small_file_uploads_go_from_the_event_loop_and_survive_faults(
    emulator: Emulator,
    client: B2Client,
    bucket: Bucket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = os.urandom(INLINE_LIMIT)
    path = tmp_path / "staging"
    path.write_bytes(data)
    await client.upload_file(bucket.bucket_id, "warm-up", FileSource(path))
    connects: list[Any] = []
    real_open = posting._open_socket

    async def open_socket(*args: Any) -> Any:
        connects.append(args)
        return await real_open(*args)

    monkeypatch.setattr(posting, "_open_socket", open_socket)
    trips = counting_thread_trips(monkeypatch)
    for name in ("a", "b", "c"):
        version = await client.upload_file(bucket.bucket_id, name, FileSource(path))
        assert version.sha1 == hashlib.sha1(data).hexdigest()
    assert (trips, connects) == ([], [])  # no thread, and the warm-up's connection reused
    emulator.faults.script("upload", "reset", count=1)
    emulator.faults.script("upload", "503", count=1)
    before = calls(emulator, "b2_get_upload_url")
    version = await client.upload_file(bucket.bucket_id, "d", FileSource(path))
    assert calls(emulator, "b2_get_upload_url") == before + 2  # a fresh URL after each failure
    assert await client.download_bytes_by_id(version.file_id or "") == data


async def test_a_small_upload_cancelled_once_its_body_is_sent_is_cut_short(
    emulator_factory: Any, tmp_path: Path
) -> None:
    """As for the threaded path: the connection is closed at once, so B2 stores nothing."""
    slow = emulator_factory(bandwidth_mbps=1)  # 125 KB/s: B2 takes two seconds to receive it
    async with await connect_to(slow) as client:
        bucket = await client.create_bucket("slow-bucket")
        path = tmp_path / "staging"
        path.write_bytes(os.urandom(INLINE_LIMIT))
        sent_all = trio.Event()

        def progress(sent: int) -> None:
            if sent >= INLINE_LIMIT:
                sent_all.set()  # called on the event loop: the body went from there

        await upload_then_cancel(client, bucket, FileSource(path, progress=progress), sent_all)
        assert [v async for v in client.list_file_names(bucket.bucket_id)] == []
        assert calls(slow, "b2_upload_file") <= 1


async def test_an_unreachable_upload_host_is_a_connection_error(
    client: B2Client, bucket: Bucket, tmp_path: Path
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    url = await client.get_upload_url(bucket.bucket_id)
    dead = dataclasses.replace(url, upload_url=f"http://127.0.0.1:{port}/b2api/v3/x/y")
    path = tmp_path / "staging"
    path.write_bytes(b"small")
    with pytest.raises(B2ConnectionError) as caught:
        await client._upload_file_range(
            "b2_upload_file", dead, {"X-Bz-File-Name": "f"}, FileSource(path), None
        )
    assert url.authorization_token not in str(caught.value)
