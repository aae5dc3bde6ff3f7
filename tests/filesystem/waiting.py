"""Small helpers of the fault, crash and coherence tests: polling with a deadline, digests,
and a few checks straight on B2 that the `b2` fixture does not offer."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TypeVar

from b2fs.b2.client import B2Client
from b2fs.b2.models import Part
from b2fs.emulator import Emulator
from filesystem.mounting import client_call

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy (returned), or fail at the deadline.
    Exceptions raised by ``condition`` count as "not yet" until the deadline."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
        except Exception as exc:  # not yet (a listing that still fails, say)
            last_error = exc
        else:
            if result:
                return result
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def list_parts(emulator: Emulator, large_file_id: str) -> list[Part]:
    async def fetch(client: B2Client) -> list[Part]:
        return [part async for part in client.list_parts(large_file_id)]

    return client_call(emulator, fetch)  # type: ignore[return-value]
