"""The retry policy on trio's MockClock: backoff growth, jitter bounds, Retry-After, caps."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from b2fs.b2 import (
    B2BadRequest,
    B2ConnectionError,
    B2ServiceUnavailable,
    B2TooManyRequests,
    ClientStats,
    RetryPolicy,
)


class FlakyOperation:
    """Fails with the given errors in turn, then returns "done"; records when it ran."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.times: list[float] = []
        self.attempts: list[int] = []

    async def __call__(self, attempt: int) -> str:
        self.times.append(trio.current_time())
        self.attempts.append(attempt)
        if self.errors:
            raise self.errors.pop(0)
        return "done"

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]


def unavailable(retry_after: float | None = None) -> B2ServiceUnavailable:
    return B2ServiceUnavailable(
        503, "service_unavailable", "try later", "b2_x", retry_after=retry_after
    )


def test_backoff_ceiling_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, multiplier=2.0, max_delay=5.0)
    assert [policy.backoff_ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_full_jitter_stays_within_bounds_and_spreads() -> None:
    policy = RetryPolicy(base_delay=1.0, multiplier=2.0, max_delay=64.0, rng=random.Random(7))
    for retry in (1, 3, 5):
        ceiling = policy.backoff_ceiling(retry)
        delays = [policy.delay(retry) for _ in range(400)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Full jitter: the whole interval is used, not just its upper part.
        assert min(delays) < 0.1 * ceiling
        assert max(delays) > 0.9 * ceiling


def test_retry_after_is_used_as_is() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=2.0)
    assert policy.delay(1, retry_after=7.0) == 7.0
    assert policy.delay(4, retry_after=0.0) == 0.0


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(multiplier=0.5)


async def test_waits_follow_the_seeded_jittered_backoff(autojump_clock: trio.testing.MockClock):
    seed = 1234
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, multiplier=2.0, rng=random.Random(seed))
    expected_rng = random.Random(seed)
    expected = [expected_rng.uniform(0, 2.0 ** (n - 1)) for n in range(1, 5)]
    operation = FlakyOperation(
        unavailable(),
        B2TooManyRequests(429, "too_many_requests", ""),
        B2ConnectionError("reset"),
        unavailable(),
    )
    stats = ClientStats()
    assert await policy.call(operation, endpoint="b2_x", stats=stats) == "done"
    assert operation.attempts == [1, 2, 3, 4, 5]
    assert operation.gaps == pytest.approx(expected)
    for n, gap in enumerate(operation.gaps, start=1):
        assert 0 <= gap <= policy.backoff_ceiling(n)
    assert stats.retries["b2_x"] == 4


async def test_retry_after_is_honoured(autojump_clock: trio.testing.MockClock) -> None:
    policy = RetryPolicy(base_delay=0.001, max_delay=0.001)
    operation = FlakyOperation(unavailable(retry_after=7), unavailable(retry_after=3))
    assert await policy.call(operation, endpoint="b2_x") == "done"
    assert operation.gaps == pytest.approx([7.0, 3.0])


async def test_gives_up_after_max_attempts(autojump_clock: trio.testing.MockClock) -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=1.0)
    errors = [unavailable() for _ in range(5)]
    operation = FlakyOperation(*errors)
    with pytest.raises(B2ServiceUnavailable) as caught:
        await policy.call(operation, endpoint="b2_x")
    assert caught.value is errors[2]
    assert len(operation.times) == 3


async def test_gives_up_when_the_total_time_would_be_exceeded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Waits of exactly 10 s each (Retry-After): 0, 10, 20 fit in 25 s; 30 would not.
    policy = RetryPolicy(max_attempts=100, max_elapsed=25.0)
    operation = FlakyOperation(*[unavailable(retry_after=10) for _ in range(10)])
    start = trio.current_time()
    with pytest.raises(B2ServiceUnavailable):
        await policy.call(operation, endpoint="b2_x")
    assert [t - start for t in operation.times] == pytest.approx([0.0, 10.0, 20.0])
    # No useless final sleep: it gave up at once.
    assert trio.current_time() - start == pytest.approx(20.0)


async def test_a_retry_after_beyond_the_budget_gives_up_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = RetryPolicy(max_elapsed=60.0)
    operation = FlakyOperation(unavailable(retry_after=3600))
    start = trio.current_time()
    with pytest.raises(B2ServiceUnavailable):
        await policy.call(operation, endpoint="b2_x")
    assert trio.current_time() == start


async def test_permanent_errors_are_not_retried(autojump_clock: trio.testing.MockClock) -> None:
    operation = FlakyOperation(B2BadRequest(400, "bad_request", "no"))
    with pytest.raises(B2BadRequest):
        await RetryPolicy().call(operation, endpoint="b2_x")
    assert len(operation.times) == 1


async def test_a_custom_predicate_widens_what_is_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    operation = FlakyOperation(B2BadRequest(400, "auth_token_limit", "busy"))
    result = await RetryPolicy(base_delay=0.1).call(
        operation, endpoint="b2_upload_file", retryable=lambda e: isinstance(e, B2BadRequest)
    )
    assert result == "done"
    assert len(operation.times) == 2


async def test_cancellation_is_not_swallowed(autojump_clock: trio.testing.MockClock) -> None:
    operation = FlakyOperation(*[unavailable(retry_after=100) for _ in range(3)])
    with trio.move_on_after(150) as scope:
        await RetryPolicy(max_attempts=10, max_elapsed=1e6).call(operation, endpoint="b2_x")
    assert scope.cancelled_caught
    assert len(operation.times) == 2
