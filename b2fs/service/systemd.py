"""systemd's notification protocol (sd_notify), without libsystemd.

``notify("READY=1")`` sends a datagram to ``$NOTIFY_SOCKET`` when systemd (or a test) set it;
otherwise it does nothing. Abstract socket names (starting with '@') are supported. The socket
is non-blocking: a notification that cannot be delivered at once is dropped rather than
stalling the event loop (systemd reads its socket promptly; a lost STATUS= is replaced by the
next one).

:func:`report` runs in the mount's nursery once the mount is ready, and is what a
``Type=notify`` unit with ``WatchdogSec=`` sees of b2fs:

- ``WATCHDOG=1`` every half of ``$WATCHDOG_USEC`` (when it is set for this pid), sent from
  the trio event loop itself: if the loop stops turning (a blocking call, a deadlock), the
  pings stop and systemd restarts the service;
- ``STATUS=`` whenever the one-line summary changes (pending uploads and their progress),
  checked every second;
- ``STOPPING=1`` once a graceful stop begins (SIGTERM, ``b2fs unmount``), then, while pending
  uploads make progress, ``EXTEND_TIMEOUT_USEC=`` so that a long but moving drain outlives
  ``TimeoutStopSec=`` while a stuck one (B2 unreachable) does not (its uploads stay
  journalled and resume at the next start).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from b2fs.service.status import StatusReporter

STATUS_PERIOD = 1.0  # seconds between checks of the STATUS= line
STOP_EXTENSION_USEC = 300_000_000  # each sign of progress while stopping buys 5 more minutes


def notify(message: str) -> bool:
    """Send one notification; returns whether a socket was there and took it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError:
            return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog period systemd expects of this process, in seconds, or None."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        seconds = int(usec) / 1_000_000
    except ValueError:
        return None
    return seconds if seconds > 0 else None


async def report(reporter: StatusReporter) -> None:
    """Watchdog pings, STATUS= lines and stop-time extensions until cancelled."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    interval = watchdog_interval()
    ping_every = interval / 2 if interval is not None else None
    next_ping = trio.current_time()
    next_status = trio.current_time()
    last_line = ""
    stopping = False
    last_progress: tuple[int, int] | None = None
    while True:
        now = trio.current_time()
        if ping_every is not None and now >= next_ping:
            notify("WATCHDOG=1")
            next_ping = now + ping_every
        if now >= next_status or reporter.stopping != stopping:
            next_status = now + STATUS_PERIOD
            line = reporter.line()
            if reporter.stopping and not stopping:
                stopping = True
                notify(f"STOPPING=1\nSTATUS={line}")
                last_line = line
            elif line != last_line:
                notify(f"STATUS={line}")
                last_line = line
            if stopping:
                uploads = reporter.uploads()
                progress = (uploads["pending_files"], uploads["pending_sent_bytes"])
                if last_progress is not None and progress != last_progress:
                    notify(f"EXTEND_TIMEOUT_USEC={STOP_EXTENSION_USEC}")
                last_progress = progress
        wake = next_status if ping_every is None else min(next_status, next_ping)
        with trio.move_on_at(wake):
            if stopping:
                await trio.sleep_forever()
            else:
                await reporter.stop_begun.wait()  # a stop is announced at once
