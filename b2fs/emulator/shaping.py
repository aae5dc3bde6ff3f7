"""Traffic shaping: a per-connection token bucket for each direction, and a fixed latency.

``--bandwidth-mbps N`` caps each connection at N megabits per second in each direction (80
Mbit/s = 10 MB/s) by making reads and writes wait until the bucket holds enough bytes; the
bucket holds at most 50 ms worth, so bursts stay short. ``--latency-ms`` is applied by the
server once before each response. Unshaped connections bypass all of this.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class TokenBucket:
    def __init__(self, bytes_per_second: float) -> None:
        self.rate = bytes_per_second
        self.capacity = max(bytes_per_second * 0.05, 16384.0)
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def consume(self, n: int) -> None:
        """Take ``n`` bytes' worth of tokens, sleeping for as long as the debt needs."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            debt = -self._tokens
        if debt > 0:
            time.sleep(debt / self.rate)


def mbps_to_bytes(mbps: float) -> float:
    return mbps * 1_000_000 / 8


class ShapedReader:
    """A buffered-reader stand-in that charges every byte it returns to a bucket."""

    def __init__(self, inner: Any, bucket: TokenBucket) -> None:
        self._inner = inner
        self._bucket = bucket

    def readline(self, limit: int = -1) -> bytes:
        data: bytes = self._inner.readline(limit)
        self._bucket.consume(len(data))
        return data

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 65536
        data: bytes = self._inner.read(min(n, 65536))
        self._bucket.consume(len(data))
        return data

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf)[:65536]
        n: int = self._inner.readinto(view)
        self._bucket.consume(n or 0)
        return n

    def close(self) -> None:
        self._inner.close()

    @property
    def closed(self) -> bool:
        return bool(self._inner.closed)


class ShapedWriter:
    """A socket-writer stand-in that paces writes in 64 KiB steps."""

    def __init__(self, inner: Any, bucket: TokenBucket) -> None:
        self._inner = inner
        self._bucket = bucket

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        for i in range(0, len(view), 65536):
            piece = view[i : i + 65536]
            self._bucket.consume(len(piece))
            self._inner.write(piece)
        return len(view)

    def flush(self) -> None:
        self._inner.flush()

    def close(self) -> None:
        self._inner.close()

    @property
    def closed(self) -> bool:
        return bool(self._inner.closed)
