"""Forwarding to the other mounts of a bucket (``service.relay``): what B2 delivered goes on
unchanged and marked, what was forwarded is never forwarded again, and a peer that cannot be
reached costs bounded retries and memory, counted and said."""

from __future__ import annotations

import socket

import pytest
import trio

from b2fs.service import relay
from b2fs.service.webhook import Delivery


def _delivery(n: int, *, relayed: bool = False) -> Delivery:
    return Delivery((), f'{{"events": [], "n": {n}}}'.encode(), "v1=abc", relayed=relayed)


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://user:pw@127.0.0.1:{sock.getsockname()[1]}/hook"


async def test_an_unreachable_peer_is_retried_counted_and_bounded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(relay, "QUEUE", 3)
    monkeypatch.setattr(relay, "BACKOFF", 0.01)
    forward = relay.Relay([_dead_url()])
    (peer,) = forward.peers
    forward.push(_delivery(0, relayed=True))  # came from another mount: not forwarded again
    assert not peer.queue
    for n in range(5):
        forward.push(_delivery(n))
    assert len(peer.queue) == 3 and peer.dropped == 2  # the oldest dropped, never blocking
    async with trio.open_nursery() as nursery:
        nursery.start_soon(forward.run)
        with trio.fail_after(30):
            while peer.failed < 3:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    (shown,) = forward.snapshot()
    assert (
        shown["failed"] == 3 and shown["forwarded"] == 0 and "ConnectError" in shown["last_error"]
    )
    assert shown["url"].startswith("http://127.0.0.1:") and "pw" not in shown["url"]
    warnings = [r.getMessage() for r in caplog.records if "could not forward" in r.getMessage()]
    assert len(warnings) == 1 and "pw" not in warnings[0]  # once a minute at most


async def test_a_delivery_is_forwarded_unchanged_and_marked() -> None:
    received: list[tuple[bytes, dict[str, str]]] = []

    async def handler(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")[1:]
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        while len(body) < int(headers["content-length"]):
            body += await stream.receive_some(65536)
        received.append((body, headers))
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        (listener,) = listeners
        port = listener.socket.getsockname()[1]
        forward = relay.Relay([f"http://127.0.0.1:{port}/"])
        delivery = _delivery(7)
        forward.push(delivery)
        nursery.start_soon(forward.run)
        with trio.fail_after(30):
            while not received:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    body, headers = received[0]
    assert body == delivery.body
    assert headers["x-bz-event-notification-signature"] == "v1=abc"
    assert headers["x-b2fs-relayed"] == "1"
    assert forward.snapshot()[0]["forwarded"] == 1
