"""What a running mount says about itself: one snapshot, three readers.

``b2fs status`` (over the control socket), the Prometheus endpoint (``service.metrics``) and
systemd's ``STATUS=`` line (``service.systemd``) all read :meth:`StatusReporter.snapshot`, so
the three never disagree. A snapshot is plain JSON-ready data taken on the trio thread (no
lock: every counter it reads is only changed there or by a plain assignment):

- the mount: source, mount point, cache directory, endpoint URL, pid, uptime, state
  (``serving`` or ``stopping``), whether it is read-only, the effective options;
- pending uploads, each with its size and the bytes its upload in flight has sent;
- the block cache: use, capacity, hits, misses, hit ratio;
- the B2 client's counters (``b2fs.b2.stats.ClientStats``): requests, errors and retries by
  endpoint, errors by HTTP status and B2 code, bytes uploaded and downloaded;
- with ``-o notify_listen``, the event notifications (``service.notifications``): healthy or
  in fallback and why, the listing TTL in force, events by outcome, the rules' state (never
  their secret), the receiver's refusals and the forwarding to other mounts; else None.

It never holds a secret: names, sizes and counts only (the endpoint is a URL without
credentials; keys and tokens never reach this module).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from b2fs import __version__

if TYPE_CHECKING:
    from b2fs.b2.stats import ClientStats
    from b2fs.fs.filesystem import Filesystem
    from b2fs.options import MountOptions
    from b2fs.service.notifications import Notifications


@dataclass
class MountInfo:
    """The fixed facts of a mount, given by the composition root."""

    source: str
    mountpoint: str
    cache_dir: str
    endpoint: str
    options: MountOptions
    read_only: bool
    started: float = field(default_factory=time.time)


class StatusReporter:
    def __init__(self, fs: Filesystem, client_stats: ClientStats, info: MountInfo) -> None:
        self.fs = fs
        self.client_stats = client_stats
        self.info = info
        self.stopping = False
        self.stop_begun = trio.Event()
        self.metrics_address: str | None = None  # host:port once the endpoint listens
        self.notifications: Notifications | None = None  # with -o notify_listen

    def begin_stop(self) -> None:
        """A graceful stop began (the uploads drain): status says so, systemd hears it."""
        self.stopping = True
        self.stop_begun.set()

    def uploads(self) -> dict[str, Any]:
        """Pending uploads only: cheap enough for a progress report every fraction of a second."""
        writeback = self.fs.writeback
        pending = [
            {
                "bucket": entry.row.bucket_name,
                "name": entry.row.name,
                "size": entry.file.size,
                "sent": writeback.sent_bytes(entry),
                "uploading": entry.uploading,
                "error": str(entry.failure) if entry.failure is not None else None,
            }
            for entry in writeback.pending
        ]
        return {
            "pending": pending,
            "pending_files": len(pending),
            "pending_bytes": sum(p["size"] for p in pending),
            "pending_sent_bytes": sum(p["sent"] for p in pending),
            "failing_uploads": sum(1 for p in pending if p["error"] is not None),
        }

    def snapshot(self) -> dict[str, Any]:
        fs = self.fs
        cache = fs.cache
        lookups = cache.stats.hits + cache.stats.misses
        info = self.info
        return {
            "version": __version__,
            "pid": os.getpid(),
            "source": info.source,
            "mountpoint": info.mountpoint,
            "cache_dir": info.cache_dir,
            "endpoint": info.endpoint,
            "state": "stopping" if self.stopping else "serving",
            "uptime_seconds": round(time.time() - info.started, 3),
            "read_only": info.read_only,
            "options": dataclasses.asdict(info.options),
            "metrics": self.metrics_address,
            **self.uploads(),
            "cache": {
                "used_bytes": cache.used_bytes,
                "capacity_bytes": cache.capacity,
                "hits": cache.stats.hits,
                "misses": cache.stats.misses,
                "hit_ratio": cache.stats.hits / lookups if lookups else None,
            },
            "downloads": {
                "requests": fs.fetcher.stats.requests,
                "bytes": fs.fetcher.stats.bytes_downloaded,
            },
            "list_calls": fs.lister.list_calls,
            "b2": self.client_stats.snapshot(),
            "notify": self.notifications.snapshot() if self.notifications else None,
        }

    def line(self) -> str:
        """One line for systemd's STATUS= (``systemctl status`` shows it)."""
        uploads = self.uploads()
        where = f"{self.info.source or 'all buckets'} at {self.info.mountpoint}"
        count = uploads["pending_files"]
        if count:
            pending = (
                f"{count} upload(s) pending, {human_size(uploads['pending_sent_bytes'])} of "
                f"{human_size(uploads['pending_bytes'])} sent"
            )
            if uploads["failing_uploads"]:
                pending += f", {uploads['failing_uploads']} failing (retrying)"
        else:
            pending = "no uploads pending"
        if self.stopping:
            return f"Stopping {where}: {pending}"
        return f"Serving {where}: {pending}"


def human_size(n: float) -> str:
    """Decimal units, as people read network and disk sizes (1.5 MB = 1 500 000 bytes)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
