"""The upload gate: while B2 fails uploads for a passing reason, one attempt probes, the rest wait.

Each pending file retries on its own backoff (``writeback.RETRY_DELAYS``). With thousands of
files queued, an outage of B2 (5xx, 429, a dropped connection: what the client's retry policy
calls temporary) made that a stream of failing calls and a warning per file, growing with the
queue: 300 files through 150 s of 503s made 1,761 uploads (170 with this gate; through 60 s,
771 and 144), and were all on B2 12.3 s after B2 answered again (10.4 s with it).

Once an attempt has failed for such a reason, the gate is *down*: one attempt at a time goes to
B2 (the probe), no sooner than the next of ``PROBE_DELAYS`` after the last probe failed; every
other attempt waits here without calling B2. The delays stay short (at most 10 s, where a
file's own backoff grows to a minute): a probe is one upload, cheap to B2, and the time
between probes is how long the queue may sit idle after B2 is back (with a minute, 300 files
were all on B2 40 s after a 150 s outage ended). The first upload that succeeds opens the gate and
every waiting attempt goes at once. Failures of one file only (a refused name, a full account)
do not close it. An attempt that an fsync waits for does not wait here: fsync reports the
failure (EIO) rather than block until B2 is back.
"""

from __future__ import annotations

import logging
import math

import trio

log = logging.getLogger(__name__)

PROBE_DELAYS = (1.0, 2.0, 5.0, 10.0)  # from a failure to the next probe; the last repeats


class UploadGate:
    def __init__(self, delays: tuple[float, ...] = PROBE_DELAYS) -> None:
        self._delays = delays
        self.down_since: float | None = None
        self.probes_failed = 0  # since the gate closed
        self._next_probe = 0.0
        self._probing = False
        self._waiting = trio.lowlevel.ParkingLot()  # woken at every change

    @property
    def down(self) -> bool:
        return self.down_since is not None

    async def enter(self) -> bool:
        """Return when this attempt may call B2: True if it goes as the probe of a down gate
        (it must then call :meth:`probe_ended` when it ends, however it ends)."""
        while self.down:
            if not self._probing and trio.current_time() >= self._next_probe:
                self._probing = True
                return True
            with trio.move_on_at(math.inf if self._probing else self._next_probe):
                await self._waiting.park()
        return False

    async def wait_changed(self) -> None:
        """Return at the next change: closed, opened, a probe's end or failure."""
        await self._waiting.park()

    def probe_ended(self) -> None:
        self._probing = False
        self._notify()

    def succeeded(self) -> None:
        """An upload reached B2: open the gate."""
        if self.down_since is not None:
            log.info(
                "B2 takes uploads again (after %.0f s); the held uploads go now",
                trio.current_time() - self.down_since,
            )
            self.down_since = None
            self.probes_failed = 0
            self._notify()

    def failed(self, error: BaseException, *, probe: bool) -> None:
        """An upload failed for a passing reason. The first such failure closes the gate; a
        failed probe puts the next one further off. (Attempts already under way when the
        gate closed fail too: they change nothing.)"""
        now = trio.current_time()
        if self.down_since is None:
            self.down_since = now
            self.probes_failed = 0
            log.warning(
                "B2 is failing uploads (%s): holding them, trying one at a time until it answers",
                error,
            )
        elif probe:
            self.probes_failed += 1
        else:
            return
        self._next_probe = now + self._delays[min(self.probes_failed, len(self._delays) - 1)]
        self._notify()

    def _notify(self) -> None:
        self._waiting.unpark_all()
