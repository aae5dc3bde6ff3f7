"""The mount daemon's composition root: builds every layer, serves FUSE, shuts down cleanly.

``serve`` runs inside ``trio.run``: it connects to B2 (refusing at once a bad key, an unknown
bucket, a busy mount point or cache directory), opens the block cache and the write-back
journal, starts the filesystem's background work (pending uploads resume here), mounts, and
reports readiness through ``on_ready``. It then serves until:

- SIGTERM or SIGINT, or ``b2fs unmount`` over the control socket: wait until every pending
  upload is on B2, then unmount (a second signal unmounts at once; uploads stay journalled);
- ``fusermount3 -u`` from outside: the session ends, the daemon exits, and what was still
  pending is resumed by the next mount with the same cache directory.

It owns the trio nursery in which the uploaders, the prefetcher and the control socket run,
and the service pieces (``b2fs.service``): the status snapshot they all read, systemd's
notifications (readiness, STATUS=, watchdog), the optional Prometheus endpoint and the
optional receiver of B2 event notifications (``-o notify_listen``: its secret, TLS and port
are checked before mounting, so a bad one fails the start in one line).

A mount point still holding the dead FUSE mount of a b2fs daemon that was killed (what
systemd's ``Restart=`` meets after a crash or a watchdog kill) is cleared with
``fusermount3 -uz`` before mounting again; any other mount there is "busy".
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyfuse3
import trio

from b2fs.b2.client import B2Client
from b2fs.b2.credentials import Credentials
from b2fs.b2.models import NotificationRule
from b2fs.b2.retry import RetryPolicy
from b2fs.cache.blocks import BlockCache
from b2fs.fs.errors import first_error
from b2fs.fs.filesystem import Filesystem
from b2fs.fuse_ops import Operations
from b2fs.objectstore import BucketRef, ObjectStore
from b2fs.options import MountOptions
from b2fs.remote import B2ObjectStore
from b2fs.service import control, metrics, systemd, webhook
from b2fs.service.notifications import Notifications
from b2fs.service.status import MountInfo, StatusReporter
from b2fs.transfer.journal import Journal
from b2fs.transfer.prefetch import BlockFetcher
from b2fs.transfer.writeback import WriteBack, WriteBackSettings

log = logging.getLogger(__name__)


class MountError(Exception):
    """A reason the mount cannot start, as one line for the user."""


@dataclass
class MountConfig:
    source: str  # "" (every bucket), "bucket" or "bucket/prefix"
    mountpoint: Path
    credentials: Credentials
    endpoint: str
    options: MountOptions = field(default_factory=MountOptions)
    cache_dir: Path | None = None

    @property
    def bucket_name(self) -> str:
        return self.source.split("/", 1)[0]

    @property
    def prefix(self) -> str:
        _, _, prefix = self.source.partition("/")
        prefix = prefix.strip("/")
        return prefix + "/" if prefix else ""


def default_cache_dir(source: str, endpoint: str) -> Path:
    """Where a mount keeps its cache and journal unless told: stable for a (endpoint, source),
    so a remount finds its pending uploads wherever it is mounted."""
    systemd = os.environ.get("CACHE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "b2fs"
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", source.strip("/")) or "all-buckets"
    digest = hashlib.sha1(f"{endpoint}\n{source}".encode()).hexdigest()[:10]
    return base / f"{label}-{digest}"


def _mounted_type(mountpoint: Path) -> str | None:
    """The filesystem type /proc/self/mountinfo lists at ``mountpoint`` (the last mount)."""
    target = str(mountpoint).replace("\\", "\\134").replace(" ", "\\040")
    target = target.replace("\t", "\\011").replace("\n", "\\012")
    found = None
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[4] == target and "-" in fields:
                found = fields[fields.index("-", 6) + 1]
    return found


def clear_dead_mount(mountpoint: Path) -> bool:
    """Lazily unmount a b2fs mount whose daemon is gone (ENOTCONN); True if one was.
    Asks with statfs, which the kernel always sends to the daemon: a stat may be answered
    from the kernel's attribute cache for a while after the daemon died."""
    try:
        os.statvfs(mountpoint)
    except OSError as exc:
        if exc.errno != errno.ENOTCONN or _mounted_type(mountpoint) != "fuse.b2fs":
            return False
    else:
        return False
    result = subprocess.run(
        ["fusermount3", "-uz", str(mountpoint)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise MountError(
            f"mount point {mountpoint} holds the dead mount of a stopped b2fs daemon and it "
            f"could not be cleared: {result.stderr.strip()}"
        )
    log.warning("cleared the dead mount at %s left by a b2fs daemon that stopped", mountpoint)
    return True


def check_mountpoint(mountpoint: Path) -> None:
    clear_dead_mount(mountpoint)
    if not mountpoint.is_dir():
        raise MountError(f"mount point {mountpoint} does not exist or is not a directory")
    if os.path.ismount(mountpoint):
        raise MountError(f"mount point {mountpoint} is busy (something is mounted there)")
    if not os.path.exists("/dev/fuse"):
        raise MountError("FUSE is not available (/dev/fuse is missing)")


class CacheLock:
    """An exclusive lock on a cache directory: two daemons must never share a journal.

    A daemon whose FUSE session has ended but that is still closing (stopping its transfers,
    closing the journal) says so in ``stopping``; a new mount then waits for it, up to
    ``STOP_WAIT`` seconds, instead of failing (a remount right after ``b2fs unmount``)."""

    STOP_WAIT = 60.0

    def __init__(self, directory: Path) -> None:
        self.path = directory / "lock"
        self.stopping_path = directory / "stopping"
        self.fd = -1

    def acquire(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.STOP_WAIT
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip()
                if self._holder_stopping(holder) and time.monotonic() < deadline:
                    time.sleep(0.05)  # it is closing: it lets go within moments
                    continue
                os.close(self.fd)
                self.fd = -1
                raise MountError(
                    f"the cache directory {self.path.parent} is in use by another b2fs mount"
                    + (f" (pid {holder})" if holder else "")
                ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        self.stopping_path.unlink(missing_ok=True)

    def _holder_stopping(self, holder: str) -> bool:
        try:
            return bool(holder) and self.stopping_path.read_text().strip() == holder
        except OSError:
            return False

    def mark_stopping(self) -> None:
        """The FUSE session has ended: what is left is closing down."""
        with contextlib.suppress(OSError):
            self.stopping_path.write_text(f"{os.getpid()}\n")

    def release(self) -> None:
        if self.fd >= 0:
            self.stopping_path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = -1


def fuse_options(config: MountConfig, read_only: bool) -> set[str]:
    options = set(pyfuse3.default_options)
    options.add(f"fsname={config.options.fsname or 'b2fs:' + (config.source or 'all')}")
    options.add("subtype=b2fs")
    if config.options.allow_other:
        options.add("allow_other")
    if read_only:
        options.add("ro")
    return options


def assemble(
    store: ObjectStore,
    options: MountOptions,
    cache: BlockCache,
    journal: Journal,
    staging_dir: Path,
    bucket: BucketRef | None,
    prefix: str,
    read_only: bool,
) -> Filesystem:
    """The filesystem core and the layers under it, from an opened cache and journal."""
    fetcher = BlockFetcher(store, cache, concurrency=options.download_concurrency)
    writeback = WriteBack(
        store,
        journal,
        fetcher,
        staging_dir,
        WriteBackSettings(
            large_file_threshold=options.large_file_threshold,
            part_size=options.part_size,
            upload_concurrency=options.upload_concurrency,
            block_size=options.block_size,
            delay=options.writeback_delay,
        ),
    )
    return Filesystem(
        store,
        options,
        cache,
        fetcher,
        writeback,
        bucket=bucket,
        prefix=prefix,
        read_only=read_only,
    )


def tune_kernel_readahead(mountpoint: Path, size: int) -> None:
    """Let the kernel read ahead ``size`` bytes on this mount.

    The kernel's readahead bounds the size of FUSE read requests: at its default (128 KiB)
    each request fetches 128 KiB and a warm sequential read measured 166 MB/s here; at 4 MiB
    requests grow to 1 MiB, several in flight, and the same read measured 796 MB/s. The
    setting lives in sysfs (the mount's backing device info), writable by root only; others
    keep the default. The device comes from /proc/self/mountinfo: touching the mount point
    itself before the FUSE loop runs would wait for ourselves.
    """
    if size <= 0:
        return
    device = None
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[4] == str(mountpoint):
                device = fields[2]
    if device is None:
        return
    try:
        Path(f"/sys/class/bdi/{device}/read_ahead_kb").write_text(f"{size // 1024}\n")
    except OSError as exc:
        log.debug("kernel readahead left at its default (%s)", exc.strerror)


async def _resolve_root(store: B2ObjectStore, config: MountConfig) -> BucketRef | None:
    if not config.source:
        return None
    name = config.bucket_name
    bucket = await store.find_bucket(name)
    if bucket is None:
        raise MountError(f"bucket {name!r} does not exist or the key cannot see it")
    return bucket


async def _notifications(
    client: B2Client, fs: Filesystem, bucket: BucketRef | None, config: MountConfig
) -> tuple[Notifications, list[trio.SocketListener]]:
    """The receiver of B2 event notifications, its port open (raises MountError)."""
    options = config.options
    if bucket is None:
        raise MountError("notify_listen needs a BUCKET (or BUCKET/PREFIX) to mount")
    try:
        secret = webhook.load_secret(options.notify_secret_file)
        tls = None
        if options.notify_tls_cert:
            tls = webhook.server_context(options.notify_tls_cert, options.notify_tls_key)
    except webhook.SecretError as exc:
        raise MountError(str(exc)) from None
    read_rules = None
    if fs.store.scope.allows("readBucketNotifications"):

        async def read_rules() -> list[NotificationRule]:
            return await client.get_bucket_notification_rules(bucket.id)

    else:
        log.info(
            "notifications: the key has no readBucketNotifications capability: a suspended "
            "rule is noticed only by notify_silence"
        )
    notifications = Notifications(
        fs, bucket, config.prefix, options, secret, ssl_context=tls, read_rules=read_rules
    )
    try:
        listeners = await webhook.listen(options.notify_listen)
    except OSError as exc:
        raise MountError(
            f"notify_listen: cannot listen on {options.notify_listen}: {exc.strerror or exc}"
        ) from None
    notifications.listen_address = webhook.bound_address(listeners)
    return notifications, listeners


async def serve(config: MountConfig, on_ready: Callable[[], None]) -> None:
    """Mount and serve until unmounted (see the module docstring)."""
    options = config.options
    check_mountpoint(config.mountpoint)
    cache_dir = config.cache_dir or default_cache_dir(config.source, config.endpoint)
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = CacheLock(cache_dir)
    await trio.to_thread.run_sync(lock.acquire)  # may wait for a daemon that is closing
    try:
        client = await B2Client.connect(
            config.credentials.key_id,
            config.credentials.key,
            endpoint=config.endpoint,
            max_connections=max(64, options.upload_concurrency + options.download_concurrency),
            max_idle_upload_urls=options.upload_concurrency,
            retry_policy=RetryPolicy(max_elapsed=options.retry_time),
        )
    except Exception:
        lock.release()
        raise
    try:
        await _serve_with(client, config, cache_dir, on_ready, lock.mark_stopping)
    finally:
        await client.aclose()
        lock.release()


async def _serve_with(
    client: B2Client,
    config: MountConfig,
    cache_dir: Path,
    on_ready: Callable[[], None],
    on_session_end: Callable[[], None],
) -> None:
    options = config.options
    store = B2ObjectStore(client)
    scope = store.scope
    bucket = await _resolve_root(store, config)
    read_only = options.ro
    if not scope.allows("writeFiles"):
        log.warning("the key has no writeFiles capability: mounting read-only")
        read_only = True
    if options.unlink == "delete" and not scope.allows("deleteFiles"):
        log.warning("the key has no deleteFiles capability: unlink will hide instead of delete")
        options = options.replace(unlink="hide")

    cache = BlockCache(cache_dir / "blocks", options.cache_size, options.block_size)
    await cache.open()
    journal = Journal(cache_dir / "journal.db")
    await journal.open()
    try:
        await journal.claim(
            {"account": client.account_id, "endpoint": config.endpoint, "source": config.source}
        )
        fs = assemble(
            store, options, cache, journal, cache_dir / "staging", bucket, config.prefix, read_only
        )
        operations = Operations(fs, attr_timeout=options.attr_timeout)
        reporter = StatusReporter(
            fs,
            client.stats,
            MountInfo(
                source=config.source,
                mountpoint=str(config.mountpoint),
                cache_dir=str(cache_dir),
                endpoint=config.endpoint,
                options=options,
                read_only=fs.read_only,
            ),
        )
        notify_listeners: list[trio.SocketListener] = []
        if options.notify_listen:
            reporter.notifications, notify_listeners = await _notifications(
                client, fs, bucket, config
            )
        metrics_listeners = []
        if options.metrics:
            try:
                metrics_listeners = await metrics.listen(options.metrics, reporter)
            except OSError as exc:
                raise MountError(
                    f"metrics: cannot listen on {options.metrics}: {exc.strerror or exc}"
                ) from None
        # Resolved before mounting: once mounted, touching the mount point from this process
        # before the FUSE loop runs would wait for ourselves.
        control_path = control.socket_path(config.mountpoint)
        async with trio.open_nursery() as nursery:
            await fs.start(nursery)
            # The kernel sets the mount's readahead from the INIT answer: tune it after that.
            operations.after_init = lambda: nursery.start_soon(
                trio.to_thread.run_sync,
                tune_kernel_readahead,
                config.mountpoint,
                options.kernel_readahead,
            )
            if metrics_listeners:
                nursery.start_soon(metrics.serve, metrics_listeners, reporter)
            if reporter.notifications is not None:
                await reporter.notifications.start(nursery, notify_listeners)
                log.info(
                    "receiving B2 event notifications at %s://%s/",
                    reporter.notifications.scheme,
                    reporter.notifications.listen_address,
                )
            pyfuse3.init(operations, str(config.mountpoint), fuse_options(config, read_only))
            try:
                shutdown = Shutdown(fs, config.mountpoint, reporter)
                nursery.start_soon(shutdown.watch_signals)
                await nursery.start(control.serve, control_path, reporter, shutdown)
                log.info("mounted %s at %s", config.source or "all buckets", config.mountpoint)
                on_ready()
                nursery.start_soon(systemd.report, reporter)
                await pyfuse3.main()
            finally:
                pyfuse3.close(unmount=True)
                on_session_end()
                nursery.cancel_scope.cancel()
        pending = fs.writeback.pending
        if pending:
            log.warning(
                "unmounted with %d upload(s) pending; they resume at the next mount with "
                "the cache directory %s",
                len(pending),
                cache_dir,
            )
        await cache.compact_index()
    finally:
        with trio.CancelScope(shield=True):
            await journal.close()


class Shutdown:
    """Graceful unmount: drain the uploads, then end the FUSE session."""

    def __init__(self, fs: Filesystem, mountpoint: Path, reporter: StatusReporter) -> None:
        self.fs = fs
        self.mountpoint = mountpoint
        self.reporter = reporter
        self.requested = False

    async def drain_and_unmount(self) -> None:
        if self.requested:
            self.now()
            return
        self.requested = True
        self.reporter.begin_stop()
        pending = len(self.fs.writeback.pending)
        if pending:
            log.info("unmount: waiting for %d pending upload(s)", pending)
        await self.fs.drain()
        self.now()

    def now(self) -> None:
        log.info("unmounting %s", self.mountpoint)
        pyfuse3.terminate()

    async def watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                async for _ in signals:
                    nursery.start_soon(self.drain_and_unmount)


def describe_error(exc: BaseException) -> str:
    """One line for a failure to mount (the first real error inside trio's exception
    groups, not "Exceptions from Trio nursery")."""
    exc = first_error(exc)
    if isinstance(exc, MountError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.EPERM:
        return f"permission denied: {exc.strerror}"
    return str(exc) or type(exc).__name__
