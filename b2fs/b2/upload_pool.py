"""Pools of upload URLs: one per bucket (``b2_upload_file``) and one per large file (parts).

Design
------
B2 lets one upload at a time use an upload URL and its token (a second concurrent one gets
``400 auth_token_limit``), and a URL stays good for about 24 hours or until B2 refuses an
upload on it (B2-API.md §6.6, §7). So URLs are leased: :meth:`UploadUrlPool.take` hands an
idle URL to exactly one upload (or ``None``, and the uploader fetches a new one); after a
successful upload the uploader :meth:`~UploadUrlPool.put` s it back; after any failure it
simply drops it, so a retry always runs on a fresh URL. Idle URLs older than ``max_age`` are
thrown away, and at most ``max_idle`` are kept. No lock: under trio, ``take``/``put`` run
without a checkpoint, so two tasks can never take the same URL.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import trio

from b2fs.b2.models import UploadUrl

__all__ = ["LeasedUrl", "UploadUrlPool"]

DEFAULT_MAX_IDLE = 16
DEFAULT_MAX_AGE = 23 * 3600.0


@dataclass(frozen=True)
class LeasedUrl:
    """An upload URL with the (trio) time it was fetched, which bounds its life."""

    url: UploadUrl
    fetched_at: float


class UploadUrlPool:
    """Idle upload URLs of one bucket or one large file, each leased to one upload at a time."""

    def __init__(self, *, max_idle: int = DEFAULT_MAX_IDLE, max_age: float = DEFAULT_MAX_AGE):
        self._idle: deque[LeasedUrl] = deque()
        self._max_idle = max_idle
        self._max_age = max_age

    def __len__(self) -> int:
        return len(self._idle)

    def __repr__(self) -> str:
        return f"<UploadUrlPool idle={len(self._idle)}>"

    def take(self) -> LeasedUrl | None:
        """An idle URL now owned by the caller, or ``None`` (fetch a new one)."""
        now = trio.current_time()
        while self._idle:
            leased = self._idle.pop()  # most recently used first: its connection is warm
            if now - leased.fetched_at < self._max_age:
                return leased
        return None

    def put(self, leased: LeasedUrl) -> None:
        """Return a URL that just served a successful upload."""
        if len(self._idle) < self._max_idle:
            self._idle.append(leased)

    def clear(self) -> None:
        self._idle.clear()
