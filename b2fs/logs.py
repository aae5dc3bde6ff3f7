"""Logging set-up for the command line and the mount daemon.

One configuration for every entry point: levels from ``--debug``; when stderr is connected
to journald (systemd sets ``JOURNAL_STREAM=DEVICE:INODE`` to the stream it gave us, and we
check that stderr is still that stream, as sd_journal_stream_fd(3) advises) each line carries
a ``<N>`` syslog priority prefix, which journald turns into the entry's priority, and no
timestamp, since journald adds its own; on a terminal or in a log file (the background
daemon's ``b2fs.log``), lines carry a timestamp and the level. httpx's own per-request INFO
lines are silenced: the B2 client logs each request at DEBUG (``--debug``) with its endpoint,
status and time in milliseconds, never a header, a URL query or a body, so no key or token.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournaldFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}"


def under_journald() -> bool:
    """Whether stderr is the stream journald gave this process."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    device, sep, inode = expected.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return f"{st.st_dev}:{st.st_ino}" == f"{device}:{inode}"


def setup(*, debug: bool = False, log_file: Path | None = None) -> None:
    """Configure the root logger (idempotent: replaces handlers installed before)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler = (
        logging.FileHandler(log_file) if log_file is not None else logging.StreamHandler(sys.stderr)
    )
    if log_file is None and under_journald():
        handler.setFormatter(JournaldFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for noisy in ("httpx", "httpcore", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
