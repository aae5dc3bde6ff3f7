"""THE retry policy of the B2 client (B2-API.md §2.3, §7).

Design
------
One :class:`RetryPolicy` object decides, for every call the client makes, whether a failure is
worth another attempt and how long to wait first:

* retryable: 408, 429, 5xx and connection errors (``B2Error.retryable``); uploads widen this
  with their own predicate (a rejected upload token also warrants a fresh upload URL);
* the wait before retry *n* (1-based) is "full jitter" exponential backoff, uniformly drawn
  from ``[0, min(max_delay, base_delay * multiplier ** (n - 1))]``, except when the server
  sent ``Retry-After``: then exactly that many seconds (the server knows best);
* at most ``max_attempts`` attempts, and no retry that would end after ``max_elapsed``
  seconds since the first attempt started (a ``Retry-After`` beyond that gives up at once).

The operation is a function of the attempt number (1-based) so that it can rebuild what one
attempt consumed (a fresh upload URL, a resumed download range). Waiting is ``trio.sleep``
and time is ``trio.current_time()``, so tests drive it on ``trio.testing.MockClock``.
Re-authorization is *not* a retry: ``auth.py`` handles expired tokens inside one attempt.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from b2fs.b2.errors import B2Error
from b2fs.b2.stats import ClientStats

__all__ = ["RetryPolicy", "is_retryable"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_retryable(exc: BaseException) -> bool:
    """The default classification: B2's temporary failures and connection errors."""
    return isinstance(exc, B2Error) and exc.retryable


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, ``Retry-After`` honoured, capped in attempts and
    in total time. Immutable; share one instance."""

    max_attempts: int = 6
    base_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 64.0
    max_elapsed: float = 600.0
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_elapsed < 0:
            raise ValueError("delays must not be negative")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")

    def backoff_ceiling(self, retry: int) -> float:
        """The upper bound of the wait before retry number ``retry`` (1 = the first retry)."""
        return min(self.max_delay, self.base_delay * self.multiplier ** (retry - 1))

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """How long to wait before retry number ``retry``."""
        if retry_after is not None and retry_after >= 0:
            return retry_after
        return self.rng.uniform(0.0, self.backoff_ceiling(retry))

    async def call(
        self,
        operation: Callable[[int], Awaitable[T]],
        *,
        endpoint: str,
        retryable: Callable[[BaseException], bool] = is_retryable,
        stats: ClientStats | None = None,
    ) -> T:
        """Run ``operation(attempt)`` until it succeeds, fails for good, or the caps are hit;
        the last failure is raised unchanged."""
        start = trio.current_time()
        attempt = 1
        while True:
            try:
                return await operation(attempt)
            except Exception as exc:
                if not retryable(exc):
                    raise
                if attempt >= self.max_attempts:
                    log.info(
                        "%s: giving up after %d attempts: %s", endpoint, attempt, _describe(exc)
                    )
                    raise
                retry_after = exc.retry_after if isinstance(exc, B2Error) else None
                wait = self.delay(attempt, retry_after)
                elapsed = trio.current_time() - start
                if elapsed + wait > self.max_elapsed:
                    log.info(
                        "%s: giving up after %d attempts and %.1fs: %s",
                        endpoint,
                        attempt,
                        elapsed,
                        _describe(exc),
                    )
                    raise
                log.info(
                    "%s: attempt %d of %d failed (%s); retrying in %.2fs",
                    endpoint,
                    attempt,
                    self.max_attempts,
                    _describe(exc),
                    wait,
                )
                if stats is not None:
                    stats.record_retry(endpoint)
            # Outside the except block: the failure is not chained to later ones.
            await trio.sleep(wait)
            attempt += 1


def _describe(exc: BaseException) -> str:
    if isinstance(exc, B2Error):
        return f"{exc.status} {exc.code}" if exc.status else exc.code
    return type(exc).__name__
