"""Forwarding B2's event deliveries to the other mounts of a bucket (``-o notify_forward``).

B2 sends an event to one webhook URL only: for a given event type, the rules of a bucket must
have disjoint name prefixes (B2-API.md §11.1), so two mounts of one bucket cannot each have a
rule. One mount (or a load balancer in front of several) is the rule's target, and each mount
lists the others' receivers in ``notify_forward``. A mount forwards every delivery it gets
straight from B2, body and signature unchanged (the others verify it with the same secret),
with ``X-B2fs-Relayed: 1`` so that it is never forwarded again. Receivers dedupe by eventId:
an event that reaches a mount twice is applied once.

Best effort, off the request path: one task per peer with its own bounded queue (when full,
the oldest delivery is dropped and counted), each delivery tried ``ATTEMPTS`` times with a
short backoff. A peer that stays unreachable misses those events; it falls back to its TTLs
once ``notify_silence`` passes without an event (docs/NOTIFICATIONS.md).
"""

from __future__ import annotations

import collections
import logging
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from b2fs.service.webhook import Delivery

log = logging.getLogger(__name__)

QUEUE = 1000  # deliveries waiting per peer
ATTEMPTS = 3
BACKOFF = 0.2  # seconds before the second attempt; doubles
TIMEOUT = 5.0
WARNING_INTERVAL = 60.0


def shown(url: str) -> str:
    """A URL for logs and status: without user and password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class Peer:
    def __init__(self, url: str) -> None:
        self.url = url
        self.queue: collections.deque[Delivery] = collections.deque()
        self.wake = trio.Event()
        self.forwarded = 0
        self.failed = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._warned_at = -float("inf")

    def push(self, delivery: Delivery) -> None:
        if len(self.queue) >= QUEUE:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(delivery)
        self.wake.set()

    async def run(self, client: httpx.AsyncClient) -> None:
        while True:
            while not self.queue:
                self.wake = trio.Event()
                await self.wake.wait()
            await self._send(client, self.queue.popleft())

    async def _send(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        headers = {
            "Content-Type": "application/json; charset=UTF-8",
            "X-Bz-Event-Notification-Signature": delivery.signature,
            "X-B2fs-Relayed": "1",
        }
        for attempt in range(ATTEMPTS):
            try:
                answer = await client.post(self.url, content=delivery.body, headers=headers)
            except httpx.HTTPError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            else:
                if answer.is_success:
                    self.forwarded += 1
                    self.last_error = None
                    return
                self.last_error = f"HTTP {answer.status_code}"
            if attempt + 1 < ATTEMPTS:
                await trio.sleep(BACKOFF * 2**attempt)
        self.failed += 1
        now = trio.current_time()
        if now - self._warned_at >= WARNING_INTERVAL:
            self._warned_at = now
            log.warning(
                "notifications: could not forward events to %s (%s); it misses them until "
                "its notify_silence fallback",
                shown(self.url),
                self.last_error,
            )

    def snapshot(self) -> dict[str, Any]:
        return {
            "url": shown(self.url),
            "forwarded": self.forwarded,
            "failed": self.failed,
            "dropped": self.dropped,
            "queued": len(self.queue),
            "last_error": self.last_error,
        }


class Relay:
    def __init__(self, urls: list[str]) -> None:
        self.peers = [Peer(url) for url in urls]

    def push(self, delivery: Delivery) -> None:
        if not delivery.relayed:
            for peer in self.peers:
                peer.push(delivery)

    async def run(self) -> None:
        if not self.peers:
            return
        async with httpx.AsyncClient(timeout=TIMEOUT) as client, trio.open_nursery() as nursery:
            for peer in self.peers:
                nursery.start_soon(peer.run, client)

    def snapshot(self) -> list[dict[str, Any]]:
        return [peer.snapshot() for peer in self.peers]
