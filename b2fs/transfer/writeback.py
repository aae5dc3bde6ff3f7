"""The write-back buffer: staged files, their journal rows, and their uploads to B2.

Every file being written has an :class:`Entry`: its staged content (``StagedFile``), its
journal row, and its upload state. The filesystem core changes content only through
``write``/``truncate``/``set_meta`` here, which first call ``_modify``: the entry's
``version`` is bumped *before* the change, and a one-piece upload in flight is cancelled (and
awaited), so an upload never sends a mix of two states and a finished upload knows whether
it is still current. (An attempt still waiting out the write-back delay has read nothing yet:
a change of metadata leaves it to take the new metadata along.) A large upload is not
cancelled: its parts track changes themselves (``transfer.upload``).

Lifecycle:

- ``create`` starts an entry with no journal row yet (``needs_row``): a new file that is
  never closed has nothing a restart could upload, so its row waits for the first flush (or
  for a large upload it starts, which must be recorded). A write to a clean entry makes it
  dirty again, with a new row in state 'open'.
- ``flushed`` (every close() of a writer) commits the row in state 'pending': from then on a
  restart uploads it. Rows never closed are dropped at restart (with a warning), and a
  large upload one had started is cancelled.
- When the last writer is gone (or on fsync), an *attempt* uploads the entry: in one piece up
  to ``large_file_threshold``, else as a large file. A sequential writer past the threshold
  is promoted while still writing: the attempt starts early and its parts leave while the next
  ones are written; it finishes once the file is closed.
- A successful attempt whose version is still current deletes the row. The entry itself stays
  while the filesystem holds it (open handles read the staging file); when it is clean and
  unheld, its bytes are copied into the block cache (small files) and the staging file removed.
- A failed attempt keeps the row and is tried again after a backoff, forever: pending writes
  are never dropped. fsync reports the failure (EIO) but the data stays queued.
- A removal (``discard``) or a rename (``retarget``) lets a one-piece upload already under
  way finish rather than cut it off: B2 may store a cut-off upload all the same, after the
  filesystem removed the name. A change of content does cut it off (the newer content is
  uploaded next); the name such an upload went to stays in ``Entry.unconfirmed``, so that the
  filesystem, removing or renaming the file, also removes that name on B2.

Everything here runs on the trio thread; the journal and file I/O go to worker threads.
Lock order: an entry has no lock; ``_modify`` serialises against its own upload by cancelling
(or letting finish) and awaiting it, and the filesystem core serialises operations on one
inode.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import trio

from b2fs.b2.errors import B2NotFound
from b2fs.b2.retry import is_retryable
from b2fs.objectstore import (
    INFO_GID,
    INFO_MODE,
    INFO_MTIME,
    INFO_UID,
    BucketRef,
    ObjectStore,
    RemoteFile,
)
from b2fs.transfer import parts
from b2fs.transfer.copy import server_copy
from b2fs.transfer.journal import Journal, JournalRow
from b2fs.transfer.outage import UploadGate
from b2fs.transfer.prefetch import BlockFetcher
from b2fs.transfer.staging import StagedFile, WriteBudget
from b2fs.transfer.upload import LargeUpload

log = logging.getLogger(__name__)

B2_MAX_SIMPLE_UPLOAD = 5 * 10**9
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # between failed attempts; the last repeats
ADOPT_LIMIT = 256 << 20  # copy uploaded files up to this size into the block cache
DRAIN_SWEEP_SECONDS = 1.0  # how often an unmount looks over every pending entry (drain)
RECOVERY_CONCURRENCY = 16  # B2 calls at once while a mount resumes its journal (start)
WRITE_BUDGET = 16 << 20  # small writes kept in memory before their staging files (staging.py)


@dataclass(frozen=True)
class WriteBackSettings:
    large_file_threshold: int
    part_size: int
    upload_concurrency: int
    block_size: int
    # How long a closed file waits before its upload starts: a rename, chmod or utime that
    # follows the close (rsync, tar, editors) then changes the pending upload instead of
    # cancelling or repeating one. fsync and unmount do not wait.
    delay: float = 1.0


class WriteBackListener(Protocol):
    """What the filesystem core hears from the write-back layer."""

    def uploaded(self, entry: Entry, remote: RemoteFile) -> None:
        """B2 now holds ``remote`` under the entry's name (current or not)."""

    def released(self, entry: Entry) -> None:
        """The entry is gone: its content is only on B2 now."""


@dataclass(eq=False)
class Entry:
    row: JournalRow
    file: StagedFile
    version: int = 0
    dirty: bool = False
    writers: int = 0
    holders: int = 0
    appending: bool = True  # every write so far extended the file: a streaming writer
    discarded: bool = False
    synced_version: int = -1  # the newest version B2 holds
    # The newest version whose bytes B2 holds, perhaps with the metadata of an earlier one (a
    # large file whose final metadata is still being copied onto it): what fsync waits for.
    durable_version: int = -1
    failed_version: int = -1  # the version the last failed attempt was uploading
    # A large upload is at a step B2 cannot take back: starting the large file, finishing
    # it, or copying its final metadata onto it. A rename or removal waits for the step.
    committing: bool = False
    step_done: trio.Event = field(default_factory=trio.Event)  # set when such a step ends
    uploaded: RemoteFile | None = None
    failure: BaseException | None = None
    failures: int = 0
    attempt: trio.CancelScope | None = None
    attempt_done: trio.Event | None = None
    attempt_version: int = -1
    attempt_large: bool = False  # the attempt in flight is a large upload (never cancelled)
    # The attempt is waiting out the write-back delay: it has read nothing of the entry yet.
    delaying: bool = False
    rerun: bool = False
    sync_requested: bool = False
    probing: bool = False  # the attempt under way is the probe of a down upload gate
    large: LargeUpload | None = None
    progress: trio.Event = field(default_factory=trio.Event)
    hurry: trio.Event = field(default_factory=trio.Event)  # ends the write-back delay at once
    owner: object = None  # the filesystem's inode, opaque here
    adopting: bool = False  # its bytes are being copied into the block cache (release)
    sending: bool = False  # a one-piece upload request is under way
    # (bucket id, name) an upload was cut off at (by a change) while it was under way: B2 may
    # hold that version although nobody was told of it.
    unconfirmed: set[tuple[str, str]] = field(default_factory=set)
    # Dirty with no row for it in the journal: a new file until its first flush, or a change
    # whose journalling failed (a full cache disk). The next flush writes the row.
    needs_row: bool = False
    # Set while a new row for the entry is being inserted: until it is in, ``needs_row``
    # does not say whether the journal will hold one (``_row_settled``).
    inserting: trio.Event | None = None
    sent: int = 0  # bytes a one-piece upload in flight has sent so far (progress, for status)

    @property
    def key(self) -> tuple[str, str]:
        return (self.row.bucket_id, self.row.name)

    @property
    def uploading(self) -> bool:
        return self.attempt is not None

    def info(self) -> dict[str, str]:
        return info_for(self.row)


def info_for(row: JournalRow) -> dict[str, str]:
    """The B2 file info a staged file is uploaded with (see objectstore for the names). The
    mode carries the file type bits (docs/SEMANTICS.md), whichever way ``row.mode`` was set
    (a chmod gives permission bits only)."""
    file_type = stat.S_IFLNK if row.kind == "symlink" else stat.S_IFREG
    return {
        INFO_MTIME: str(row.mtime_ns // 1_000_000),
        INFO_MODE: str(file_type | stat.S_IMODE(row.mode)),
        INFO_UID: str(row.uid),
        INFO_GID: str(row.gid),
    }


class WriteBack:
    def __init__(
        self,
        store: ObjectStore,
        journal: Journal,
        fetcher: BlockFetcher,
        staging_dir: Path,
        settings: WriteBackSettings,
    ) -> None:
        self.store = store
        self.journal = journal
        self.fetcher = fetcher
        self.staging_dir = staging_dir
        self.settings = settings
        self.listener: WriteBackListener | None = None
        self.slots = trio.CapacityLimiter(settings.upload_concurrency)
        self.gate = UploadGate()  # while B2 is failing uploads (outage.py)
        self.entries: dict[int, Entry] = {}  # by journal row id (ids are never reused)
        self.write_budget = WriteBudget(WRITE_BUDGET)
        # Ids of entries whose row is not written yet (a new file, until its first flush).
        self._unjournalled_ids = itertools.count(-1, -1)
        self.by_name: dict[tuple[str, str], Entry] = {}
        # Kept as the entries change, so that nothing done per upload scans every entry (an
        # untar of 100,000 files may leave tens of thousands waiting): insertion-ordered sets
        # of the entries that are dirty and not discarded, and of those whose last attempt
        # failed (what ``retry_now`` retries).
        self._pending: dict[Entry, None] = {}
        self._failing: dict[Entry, None] = {}
        self._nursery: trio.Nursery | None = None
        self._changed = trio.Event()
        self._draining = False
        # Uploaded entries whose row deletion or release (staging file moved into the block
        # cache or removed) is under way: drain waits for them too.
        self._finishing = 0

    # -- start and recovery ---------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> list[Entry]:
        """Attach to the mount's nursery, re-stage what the journal lists, queue its uploads.

        The mount waits for this, so its B2 calls do not grow one by one with the files
        waiting (after a kill with thousands queued, one call each made the mount take
        minutes, past a service manager's start timeout): the base versions' sizes are asked
        for at once, and the unfinished large files are listed once per bucket."""
        self._nursery = nursery
        await trio.to_thread.run_sync(lambda: self.staging_dir.mkdir(parents=True, exist_ok=True))
        recovered = []
        for row in await self.journal.rows():
            if row.state != "pending":
                log.warning(
                    "dropping %s: it was being written when b2fs stopped and never closed",
                    row.name,
                )
                await self._drop_row(row)
                continue
            if not Path(row.staging).exists():
                log.error("lost the staged data of %s (staging file missing)", row.name)
                await self._drop_row(row)
                continue
            recovered.append(Entry(row=row, file=StagedFile(row, self.fetcher, row.base_limit)))
        await self._learn_base_sizes(recovered)
        for entry in recovered:
            await entry.file.open(create=False)
            self._add(entry)
        keep = {Path(entry.row.staging).name for entry in recovered}
        await trio.to_thread.run_sync(self._remove_stray_staging, keep)
        await self._cancel_orphan_large_files(recovered)
        for entry in recovered:
            log.info("resuming the upload of %s (%d bytes)", entry.row.name, entry.row.size)
            self._schedule(entry)
        return recovered

    async def _learn_base_sizes(self, entries: list[Entry]) -> None:
        """Ask B2 for the size of each entry's base version, ``RECOVERY_CONCURRENCY`` at once
        (a base that cannot be read keeps the journalled ``base_limit``)."""
        limiter = trio.CapacityLimiter(RECOVERY_CONCURRENCY)

        async def learn(entry: Entry) -> None:
            assert entry.row.base_file_id is not None
            async with limiter:
                try:
                    info = await self.store.get_file_info(entry.row.base_file_id)
                except Exception as exc:
                    log.warning("base version of %s is not readable: %s", entry.row.name, exc)
                    return
            entry.file.base_size = info.size

        async with trio.open_nursery() as nursery:
            for entry in entries:
                if entry.row.base_file_id is not None:
                    nursery.start_soon(learn, entry)

    async def _drop_row(self, row: JournalRow) -> None:
        """Forget a row that will not be uploaded, cancelling the large upload it had started
        (a promoted file that was never closed): it would otherwise stay on B2, billing."""
        if row.large_file_id is not None:
            await self._cancel_large(row.large_file_id)
        await self.journal.delete(row.id)

    def _remove_stray_staging(self, keep: set[str]) -> None:
        for path in self.staging_dir.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)

    async def _cancel_orphan_large_files(self, recovered: list[Entry]) -> None:
        """Cancel unfinished large files that an earlier attempt started but did not record
        (killed between start_large_file and the journal update): those of a recovered name,
        started since its row was made, and recorded by no row. One listing per bucket,
        under the longest prefix its recovered names share."""
        recorded = {e.row.large_file_id for e in recovered if e.row.large_file_id is not None}
        by_bucket: dict[str, dict[str, int]] = {}  # bucket id -> name -> earliest created_ms
        for entry in recovered:
            names = by_bucket.setdefault(entry.row.bucket_id, {})
            names[entry.row.name] = min(
                names.get(entry.row.name, entry.row.created_ms), entry.row.created_ms
            )
        for bucket_id, names in by_bucket.items():
            try:
                # B2 prefixes are of characters, not path components.
                prefix = os.path.commonprefix(list(names))  # noqa: RUF071
                unfinished = await self.store.list_unfinished(bucket_id, prefix)
            except Exception as exc:
                log.debug("cannot list unfinished large files: %s", exc)
                continue
            for remote in unfinished:
                since = names.get(remote.name)
                if (
                    since is not None
                    and remote.file_id
                    and remote.file_id not in recorded
                    and remote.upload_ms >= since
                ):
                    log.info("cancelling an abandoned large upload of %s", remote.name)
                    await self._cancel_large(remote.file_id)

    def _add(self, entry: Entry) -> None:
        """Register a new entry: staged and not on B2 yet, so dirty."""
        self.entries[entry.row.id] = entry
        self.by_name[entry.key] = entry
        self._mark(entry, dirty=True)

    def _mark(
        self, entry: Entry, *, dirty: bool | None = None, discarded: bool | None = None
    ) -> None:
        """Change whether the entry is dirty or discarded: every such change goes through
        here, which keeps ``_pending`` (and ``_failing``, which only pending entries are in)."""
        if dirty is not None:
            entry.dirty = dirty
        if discarded is not None:
            entry.discarded = discarded
        if entry.dirty and not entry.discarded:
            self._pending[entry] = None
        else:
            self._pending.pop(entry, None)
        self._set_failure(entry, entry.failure)

    def _set_failure(self, entry: Entry, failure: BaseException | None) -> None:
        """Record (or clear) why the entry's last attempt failed; keeps ``_failing``."""
        entry.failure = failure
        if failure is not None and entry in self._pending:
            self._failing[entry] = None
        else:
            self._failing.pop(entry, None)

    # -- creating and changing ------------------------------------------------------------

    async def create(
        self,
        bucket: BucketRef,
        name: str,
        *,
        kind: str,
        base: RemoteFile | None,
        size: int,
        mtime_ns: int,
        mode: int,
        uid: int,
        gid: int,
        content_type: str = "b2/x-auto",
        orphan: bool = False,
    ) -> Entry:
        """Stage a file. With a ``base``, its first ``size`` bytes come from that version
        until they are written; without, the file starts as ``size`` zero bytes. An
        ``orphan`` (a file unlinked while open) is staged but never journalled or uploaded."""
        staging = self.staging_dir / uuid.uuid4().hex
        row = JournalRow(
            id=next(self._unjournalled_ids),
            state="open",
            kind=kind,
            bucket_id=bucket.id,
            bucket_name=bucket.name,
            name=name,
            staging=str(staging),
            size=size,
            base_file_id=base.file_id if base is not None else None,
            base_limit=min(size, base.size) if base is not None else 0,
            filled=b"",
            block_size=self.settings.block_size,
            mtime_ns=mtime_ns,
            mode=mode,
            uid=uid,
            gid=gid,
            content_type=content_type,
            large_file_id=None,
            large_info=None,
            part_size=self.settings.part_size,
            created_ms=int(time.time() * 1000),
        )
        entry = Entry(
            row=row,
            file=StagedFile(row, self.fetcher, base.size if base else 0, self.write_budget),
            needs_row=True,
        )
        await entry.file.open(create=True)
        if size:
            try:
                await entry.file.make()
                await trio.to_thread.run_sync(os.ftruncate, entry.file.fd, size)
            except BaseException:  # a full cache disk, say: nothing of this entry stays behind
                with trio.CancelScope(shield=True):
                    await entry.file.close()
                    await trio.to_thread.run_sync(lambda: staging.unlink(missing_ok=True))
                raise
        if orphan:
            self._mark(entry, discarded=True)
            return entry
        previous = self.by_name.get(entry.key)
        if previous is not None:
            await self.discard(previous)
        self._add(entry)
        self._changed.set()
        return entry

    async def _modify(
        self, entry: Entry, *, let_upload_finish: bool = False, metadata_only: bool = False
    ) -> None:
        """Call before any change of content or metadata (see the module docstring). With
        ``let_upload_finish``, a one-piece upload already under way is awaited, not cut off:
        its outcome is then known (a removal or rename must know whether B2 has the name).
        A change of metadata only leaves an attempt still waiting out its delay alone: it
        reads the entry once the delay is over (tar sets times, owner and mode after each
        close: three attempts cut off and started again per file, before)."""
        entry.version += 1
        # A finished large file no longer holds the content (or not with what comes next):
        # the next attempt uploads it again rather than fix that file's metadata.
        entry.row.finished_file_id = None
        if metadata_only and entry.delaying:
            return  # (an attempt exists, so the entry is dirty and has its row)
        # A loop: an attempt that ends as it is cut off may start a rerun (it saw the version
        # move), which must not run while the content changes either.
        while entry.attempt is not None and not entry.attempt_large:
            done = entry.attempt_done
            assert done is not None
            if not (let_upload_finish and entry.sending):
                entry.attempt.cancel()
            await done.wait()
        if not entry.dirty and not entry.discarded:
            self._mark(entry, dirty=True)
            entry.row.state = "open"
            await self._new_row(entry)

    async def _new_row(self, entry: Entry, first: Callable[[], None] | None = None) -> None:
        """Journal a dirty entry under a new row. If the journal cannot be written (a full
        cache disk), the entry keeps its old id and ``needs_row``: the next flush tries again,
        so close() reports the failure instead of returning with the changes unjournalled."""
        old_id = entry.row.id
        entry.row.id = 0
        entry.inserting = inserted = trio.Event()
        try:
            await self.journal.insert(entry.row, first)
        except BaseException:
            entry.row.id = old_id
            entry.needs_row = True
            raise
        finally:
            entry.inserting = None
            inserted.set()
        entry.needs_row = False
        self.entries.pop(old_id, None)
        self.entries[entry.row.id] = entry
        self._changed.set()

    async def write(self, entry: Entry, offset: int, data: bytes) -> int:
        await self._modify(entry)
        if offset != entry.file.size:
            entry.appending = False
        if entry.large is not None:
            entry.large.touch(offset, offset + len(data))
        written = await entry.file.write(offset, data)
        entry.row.mtime_ns = time.time_ns()
        self._maybe_promote(entry)
        if entry.large is not None:
            entry.large.wake.set()
        return written

    async def truncate(self, entry: Entry, size: int) -> None:
        if entry.large is not None and entry.large.truncated_below_uploads(size):
            await self._abandon_large(entry)
        await self._modify(entry)
        if entry.large is not None:
            entry.large.touch(min(size, entry.file.size), max(size, entry.file.size))
        if size != entry.file.size:
            entry.appending = entry.appending and size > entry.file.size
        await entry.file.truncate(size)
        entry.row.mtime_ns = time.time_ns()

    async def set_meta(
        self,
        entry: Entry,
        *,
        mtime_ns: int | None = None,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        await self._modify(entry, metadata_only=True)
        row = entry.row
        row.mtime_ns = row.mtime_ns if mtime_ns is None else mtime_ns
        row.mode = row.mode if mode is None else mode
        row.uid = row.uid if uid is None else uid
        row.gid = row.gid if gid is None else gid
        if entry.writers == 0 and not entry.discarded:
            await self._persist(entry)
            self._schedule(entry)

    async def retarget(self, entry: Entry, bucket: BucketRef, name: str) -> None:
        """The file was renamed. A pending upload now goes to ``name``; a clean entry just
        follows the name (the caller copied it on B2 already)."""
        await self.settle(entry)
        dirty = entry.dirty
        if dirty:
            await self._stop_uploading_under_this_name(entry)
        if self.by_name.get(entry.key) is entry:
            del self.by_name[entry.key]
        displaced = self.by_name.get((bucket.id, name))
        if displaced is not None and displaced is not entry:
            await self.discard(displaced)
        entry.row.bucket_id, entry.row.bucket_name, entry.row.name = bucket.id, bucket.name, name
        self.by_name[entry.key] = entry
        if dirty:
            await self._persist(entry)
            if entry.writers == 0:
                self._schedule(entry)

    async def discard(self, entry: Entry) -> None:
        """The file was removed: never upload it; its bytes stay while it is held open."""
        if entry.discarded:
            return
        await self.settle(entry)
        await self._stop_uploading_under_this_name(entry)
        was_dirty = entry.dirty
        self._mark(entry, dirty=False, discarded=True)
        if self.by_name.get(entry.key) is entry:
            del self.by_name[entry.key]
        if was_dirty:
            await self._delete_row(entry)
        self._notify_progress(entry)
        await self._maybe_release(entry)
        self._changed.set()

    # -- open handles ---------------------------------------------------------------------

    def hold(self, entry: Entry, *, writer: bool) -> None:
        entry.holders += 1
        if writer:
            entry.writers += 1

    async def unhold(self, entry: Entry, *, writer: bool) -> None:
        entry.holders -= 1
        if writer:
            entry.writers -= 1
            if entry.writers == 0:
                if entry.large is not None:
                    entry.large.wake.set()
                elif entry.dirty and not entry.discarded:
                    self._schedule(entry)
        await self._maybe_release(entry)

    async def flushed(self, entry: Entry) -> None:
        """A writer closed the file: make what it wrote survive a restart."""
        if entry.dirty and not entry.discarded:
            entry.row.state = "pending"
            await self._persist(entry)

    async def submit(self, entry: Entry) -> None:
        """An entry with no writer is complete (a directory marker, a symlink): queue it."""
        await self.flushed(entry)
        self._schedule(entry)

    async def _persist(self, entry: Entry) -> None:
        if entry.dirty:
            # The journal must not list bytes not on disk: they are written out first, in
            # the journal's own trip to its worker thread.
            async with entry.file.writing_out() as write_out:
                entry.row.filled = entry.file.snapshot_filled()
                await self._save_row(entry, first=write_out)

    async def _row_settled(self, entry: Entry) -> None:
        """Wait while a new row for the entry is being inserted: a flush and a large upload
        starting at once must not both insert one (a second row would outlive the entry and
        be uploaded again at the next mount), nor a removal miss the row it should delete."""
        while entry.inserting is not None:
            await entry.inserting.wait()

    async def _save_row(self, entry: Entry, first: Callable[[], None] | None = None) -> None:
        """Write the entry's row as it is now: a new row if it has none (``needs_row``);
        ``first`` (file I/O the row must follow) runs in the journal's trip, before it."""
        await self._row_settled(entry)
        if entry.needs_row:
            await self._new_row(entry, first)
        else:
            await self.journal.update(entry.row, first)

    async def sync(self, entry: Entry) -> None:
        """Return once B2 holds the entry's current content (fsync); raise if the upload
        failed (the data stays queued). The bytes, that is: a large file's final metadata
        may still be on its way (``_fix_metadata``), as unmount and a restart finish it."""
        if entry.discarded or not entry.dirty:
            return
        entry.row.state = "pending"
        await self._persist(entry)
        target = entry.version

        def durable() -> bool:
            return max(entry.synced_version, entry.durable_version) >= target

        entry.sync_requested = True
        entry.hurry.set()
        while not durable() and entry.dirty and not entry.discarded:
            if entry.large is not None:
                entry.large.wake.set()
            elif entry.attempt is None:
                self._schedule(entry)
            failures = entry.failures
            progress = entry.progress
            await progress.wait()
            if (
                entry.failures > failures
                and entry.failure is not None
                and entry.failed_version >= target  # not an attempt at older content
                and not durable()
            ):
                raise entry.failure
        entry.sync_requested = False
        if not self._draining:
            entry.hurry = trio.Event()

    # -- uploading ------------------------------------------------------------------------

    def _maybe_promote(self, entry: Entry) -> None:
        if (
            entry.large is None
            and entry.attempt is None
            and entry.appending
            and not entry.discarded
            and entry.file.size >= self.settings.large_file_threshold
        ):
            self._schedule(entry)

    def _schedule(self, entry: Entry) -> None:
        if entry.discarded or not entry.dirty:
            return
        if entry.attempt is not None:
            entry.rerun = True
            return
        assert self._nursery is not None, "write-back not started"
        entry.attempt = trio.CancelScope()
        entry.attempt_done = trio.Event()
        entry.attempt_large = False
        self._nursery.start_soon(self._attempt, entry)

    def _should_wait(self, entry: Entry) -> bool:
        return not (
            self._draining
            or entry.sync_requested
            or entry.writers > 0  # a promotion: start at once
            or entry.failures > 0  # a retry has waited already
        )

    def _wants_large(self, entry: Entry) -> bool:
        size = entry.file.size
        return entry.row.kind == "file" and (
            entry.row.large_file_id is not None
            or entry.row.finished_file_id is not None
            or size > B2_MAX_SIMPLE_UPLOAD
            or size > self.settings.large_file_threshold
            or (entry.writers > 0 and size >= self.settings.large_file_threshold)
        )

    async def _attempt(self, entry: Entry) -> None:
        scope, done = entry.attempt, entry.attempt_done
        assert scope is not None and done is not None
        version = entry.version
        entry.attempt_version = version
        result: RemoteFile | None = None
        error: BaseException | None = None
        with scope:
            try:
                if self._should_wait(entry):
                    entry.delaying = True
                    try:
                        with trio.move_on_after(self.settings.delay):
                            await entry.hurry.wait()  # fsync or unmount: go now
                    finally:
                        entry.delaying = False
                    # What the upload sends: metadata set during the delay included.
                    version = entry.attempt_version = entry.version
                entry.attempt_large = self._wants_large(entry)
                if entry.attempt_large:
                    await self._pass_gate(entry)
                    result = await self._upload_large(entry)
                    version = entry.attempt_version
                else:
                    result = await self._upload_simple(entry)
            except Exception as exc:
                error = exc
        entry.attempt = None
        entry.attempt_done = None
        done.set()
        probe, entry.probing = entry.probing, False
        try:
            if result is not None:
                self.gate.succeeded()
                await self._uploaded(entry, result, version)
            elif error is not None:
                if is_retryable(error):
                    self.gate.failed(error, probe=probe)
                entry.failed_version = entry.attempt_version
                await self._failed(entry, error)
        finally:
            if probe:  # told the gate how it went first: no second probe in between
                self.gate.probe_ended()
        if entry.rerun and not entry.uploading:
            entry.rerun = False
            if entry.dirty and (entry.writers == 0 or entry.sync_requested):
                self._schedule(entry)
        self._notify_progress(entry)

    async def _upload_simple(self, entry: Entry) -> RemoteFile:
        def progress(sent: int) -> None:
            entry.sent = sent

        entry.sent = 0
        try:
            async with self.slots:
                # In the slot: waiting here holds it, so that no upload waiting for a slot
                # has gone past the gate before B2 started failing.
                await self._pass_gate(entry)
                await entry.file.fill_all()
                key = entry.key
                entry.sending = True
                try:
                    return await self.store.upload_file(
                        entry.row.bucket_id,
                        entry.row.name,
                        entry.file.path,
                        entry.file.size,
                        entry.row.content_type,
                        entry.info(),
                        progress=progress,
                    )
                except trio.Cancelled:
                    entry.unconfirmed.add(key)  # B2 may have stored it before the cut
                    raise
        finally:
            entry.sent = 0
            entry.sending = False

    async def _pass_gate(self, entry: Entry) -> None:
        """Wait while B2 is failing uploads (``outage.py``), unless an fsync waits for this
        upload: fsync then hears of the failure rather than wait for B2. An attempt that is
        the probe already (a large upload falling back to one piece) goes on."""
        if not entry.sync_requested and not entry.probing:
            entry.probing = await self.gate.enter()

    async def _upload_large(self, entry: Entry) -> RemoteFile | None:
        row = entry.row
        if row.finished_file_id is not None:
            fixed = await self._fix_finished(entry, row.finished_file_id)
            if fixed is not None:
                return fixed
        if entry.large is None:
            if row.large_file_id is None:
                info = entry.info()
                # Shielded: a large file B2 started must be recorded, or it would bill forever.
                with self._committing(entry), trio.CancelScope(shield=True):
                    file_id = await self.store.start_large_file(
                        row.bucket_id, row.name, row.content_type, info
                    )
                    row.large_file_id, row.large_info = file_id, json.dumps(info, sort_keys=True)
                    await self._save_row(entry)
                entry.large = LargeUpload(
                    self.store, file_id, row.part_size, row.staging, self.slots
                )
            else:
                entry.large = LargeUpload(
                    self.store, row.large_file_id, row.part_size, row.staging, self.slots
                )
                await entry.large.adopt_existing(row.size, _reader(row.staging))
        large = entry.large

        def final() -> bool:
            return entry.writers == 0 or entry.sync_requested

        async with trio.open_nursery() as parts_nursery:
            while True:
                large.wake = trio.Event()
                if large.error is not None:
                    error, large.error = large.error, None
                    raise error
                await large.pump(
                    parts_nursery, lambda: entry.file.size, final, entry.file.fill_range
                )
                if final() and large.all_current(entry.file.size):
                    break
                await large.wake.wait()
        # Every part reflects the content as of now; record which version that is.
        entry.attempt_version = entry.version
        with self._committing(entry):
            result = await large.finish(entry.file.size)
            if result is not None:
                entry.large = None
                row.large_file_id = None
                started_info = json.loads(row.large_info or "{}")
                row.large_info = None
                if started_info != entry.info():
                    # B2 holds the bytes: fsync may return now. The metadata follows,
                    # recorded first so that a restart copies it rather than upload again.
                    row.finished_file_id = result.file_id
                    with trio.CancelScope(shield=True):
                        await self._save_row(entry)
                    result = await self._fix_metadata(entry, result)
                return result
        # Too small to be a large file after all: send it in one piece.
        await self._abandon_large(entry, keep_attempt=True)
        return await self._upload_simple(entry)

    async def settle(self, entry: Entry) -> None:
        """Wait until no large-upload step B2 cannot take back is under way (``committing``):
        a rename or removal must know which version B2 holds under the old name, and no
        large file may be started, finished or copied under a name that was just removed.
        Without an await between this and the caller's next step, the attempt cannot start
        such a step meanwhile."""
        while entry.committing:
            await entry.step_done.wait()

    @contextlib.contextmanager
    def _committing(self, entry: Entry) -> Iterator[None]:
        """Mark a step of a large upload that B2 cannot take back (see ``settle``)."""
        entry.committing = True
        try:
            yield
        finally:
            entry.committing = False
            entry.step_done.set()
            entry.step_done = trio.Event()

    async def _fix_finished(self, entry: Entry, file_id: str) -> RemoteFile | None:
        """Fix the metadata of the finished large file that holds the entry's bytes (after a
        restart, or a failed copy); None if that file is gone (the bytes go up again)."""
        with self._committing(entry):
            try:
                finished = await self.store.get_file_info(file_id)
            except B2NotFound:
                log.warning(
                    "%s: its finished large file is gone; uploading it again", entry.row.name
                )
                entry.row.finished_file_id = None
                await self._save_row(entry)
                return None
            return await self._fix_metadata(entry, finished)

    async def _fix_metadata(self, entry: Entry, finished: RemoteFile) -> RemoteFile:
        """A large file's info is fixed when it starts; if the metadata changed while it was
        written (its mtime always does), replace it with a server-side copy (no download).
        ``finished`` holds the attempt's bytes: fsync returns now, and the filesystem hears
        of it first (until the copy lands, that is the version B2 holds under the name: a
        rename or unlink then removes it)."""
        assert finished.file_id is not None
        entry.durable_version = entry.attempt_version
        self._notify_progress(entry)
        if self.listener is not None and not entry.discarded:
            self.listener.uploaded(entry, finished)
        fixed = await server_copy(
            self.store, finished, entry.row.bucket_id, entry.row.name, info=entry.info()
        )
        try:
            await self.store.delete_version(finished.name, finished.file_id)
        except Exception as exc:  # without deleteFiles the intermediate version stays
            log.debug("could not delete the intermediate version of %s: %s", finished.name, exc)
        return fixed

    async def _stop_uploading_under_this_name(self, entry: Entry) -> None:
        """The entry's name is being given up (a rename or removal): cancel a large upload
        and let a one-piece upload under way finish (see the module docstring). ``_modify``
        waits for that; an attempt that was about to upload may have started a large file
        under the old name meanwhile: cancel it too, or its parts would be finished under
        that name and count as the entry's upload."""
        if entry.large is not None:
            await self._abandon_large(entry)
        await self._modify(entry, let_upload_finish=True)
        if entry.large is not None or entry.row.large_file_id is not None:
            await self._abandon_large(entry)

    async def _abandon_large(self, entry: Entry, *, keep_attempt: bool = False) -> None:
        """Stop a large upload and cancel it on B2 (never leave one billing)."""
        if entry.attempt is not None and not keep_attempt:
            entry.attempt.cancel()
            assert entry.attempt_done is not None
            await entry.attempt_done.wait()
        large_file_id = entry.row.large_file_id
        entry.large = None
        entry.row.large_file_id = None
        entry.row.large_info = None
        if large_file_id is not None:
            await self._cancel_large(large_file_id)
        await self._row_settled(entry)
        if entry.dirty and not entry.needs_row:
            await self.journal.update(entry.row)

    async def _cancel_large(self, large_file_id: str) -> None:
        try:
            await self.store.cancel_large_file(large_file_id)
        except Exception as exc:
            log.warning("could not cancel large upload %s: %s", large_file_id, exc)

    async def _uploaded(self, entry: Entry, result: RemoteFile, version: int) -> None:
        entry.uploaded = result
        self._set_failure(entry, None)
        entry.failures = 0
        # B2 answers again: the uploads still waiting out a backoff from an outage go now.
        self.retry_now()
        if self.listener is not None and not entry.discarded:
            self.listener.uploaded(entry, result)
        if version == entry.version and not entry.discarded:
            entry.synced_version = version
            with self._finishing_step():
                self._mark(entry, dirty=False)
                await self._delete_row(entry)
                log.debug("uploaded %s (%d bytes)", entry.row.name, result.size)
                await self._maybe_release(entry)
        else:
            entry.rerun = True

    @contextlib.contextmanager
    def _finishing_step(self) -> Iterator[None]:
        """Counts a step that must end before ``drain`` returns (an uploaded entry's row
        deletion and release), and tells ``drain`` when it has."""
        self._finishing += 1
        try:
            yield
        finally:
            self._finishing -= 1
            self._changed.set()

    async def _delete_row(self, entry: Entry) -> None:
        """Delete the entry's row, done with. If the journal cannot be written (a full cache
        disk), keep trying in the background: the entry is clean in memory already, and
        failing here would fail an unlink, or end the mount after a successful upload."""
        await self._row_settled(entry)
        if entry.needs_row:
            return  # none was written (a new file removed before its first flush, say)
        row = entry.row
        try:
            await self.journal.delete(row.id)
        except OSError as exc:
            log.warning("could not update the journal for %s (%s); will retry", row.name, exc)
            assert self._nursery is not None
            self._nursery.start_soon(self._delete_row_later, row.id)

    async def _delete_row_later(self, row_id: int) -> None:
        for attempt in itertools.count():
            await trio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            try:
                await self.journal.delete(row_id)
            except OSError:
                continue
            return

    async def _failed(self, entry: Entry, error: BaseException) -> None:
        self._set_failure(entry, error)
        entry.failures += 1
        delay = RETRY_DELAYS[min(entry.failures, len(RETRY_DELAYS)) - 1]
        log.warning(
            "upload of %s failed (%s); kept queued, next try in %.0f s",
            entry.row.name,
            error,
            delay,
        )
        assert self._nursery is not None
        self._nursery.start_soon(self._retry_later, entry, delay)

    async def _retry_later(self, entry: Entry, delay: float) -> None:
        failures = entry.failures
        await trio.sleep(delay)
        if (
            entry.failures == failures  # not retried meanwhile (retry_now, a newer failure)
            and entry.failure is not None
            and entry.dirty
            and not entry.discarded
            and (entry.writers == 0 or entry.sync_requested)
        ):
            self._schedule(entry)

    def _notify_progress(self, entry: Entry) -> None:
        entry.progress.set()
        entry.progress = trio.Event()

    def retry_now(self) -> None:
        """Try every failed upload again at once (after an outage ends, for instance)."""
        for entry in list(self._failing):
            if entry.writers == 0 and entry.attempt is None:
                self._set_failure(entry, None)  # its retry timer then finds nothing to do
                self._schedule(entry)

    # -- releasing ------------------------------------------------------------------------

    def _releasable(self, entry: Entry) -> bool:
        return (
            entry.holders == 0
            and not entry.dirty
            and entry.attempt is None
            and self.entries.get(entry.row.id) is entry
        )

    async def _maybe_release(self, entry: Entry) -> None:
        if not self._releasable(entry) or entry.adopting:
            return  # (an adopting entry is released, or not, when its copy ends)
        uploaded = entry.uploaded
        cache = self.fetcher.cache
        adoptable = (
            not entry.discarded
            and uploaded is not None
            and uploaded.file_id
            and entry.synced_version == entry.version
            and entry.file.size <= min(ADOPT_LIMIT, cache.capacity // 8)
        )
        # A file of one block: its staging file *is* the block, moved into the cache below.
        move_in = adoptable and 0 < entry.file.size <= cache.block_size and entry.file.complete
        if adoptable and not move_in:
            assert uploaded is not None and uploaded.file_id
            entry.adopting = True
            try:
                await self._adopt_into_cache(entry, uploaded.file_id)
            finally:
                entry.adopting = False
            if not self._releasable(entry):
                return  # opened or changed again while its bytes were copied
        # No await until the listener has detached the entry: once its staging file starts
        # closing, no open() can hold it and no read can reach it any more.
        del self.entries[entry.row.id]
        if self.by_name.get(entry.key) is entry:
            del self.by_name[entry.key]
        if self.listener is not None:
            self.listener.released(entry)
        close_staging = await entry.file.detach()
        staging = Path(entry.row.staging)
        if not (
            move_in
            and uploaded is not None
            and uploaded.file_id
            and await cache.adopt_file(
                uploaded.file_id, 0, staging, entry.file.size, first=close_staging
            )
        ):

            def remove() -> None:
                close_staging()  # (if the cache did not, having declined before its trip)
                staging.unlink(missing_ok=True)

            await trio.to_thread.run_sync(remove)
        self._changed.set()

    async def _adopt_into_cache(self, entry: Entry, file_id: str) -> None:
        """Copy the uploaded bytes into the block cache: reading them back costs no download.
        Stops at the first change (``_modify`` bumps the version before any byte changes), so
        the cache never holds bytes that are not ``file_id``'s."""
        block_size = self.fetcher.cache.block_size
        version = entry.version
        for index in range(-(-entry.file.size // block_size)):
            start = index * block_size
            data = await entry.file.read(start, min(block_size, entry.file.size - start))
            if entry.version != version:
                return
            await self.fetcher.cache.store(file_id, index, data)

    # -- waiting for everything -----------------------------------------------------------

    @property
    def pending(self) -> list[Entry]:
        """The entries B2 does not have yet (dirty and not discarded), oldest first."""
        return list(self._pending)

    @property
    def failing(self) -> list[Entry]:
        """The pending entries whose last attempt failed (each waits out a backoff)."""
        return list(self._failing)

    async def drain(self) -> None:
        """Return once nothing is waiting for upload (unmount), and every uploaded entry's
        row is deleted and its release done (no staging file left behind a clean unmount).

        Each change costs O(1) here: with tens of thousands of files waiting, looking at every
        one after each upload would cost more than the uploads. Every pending entry with no
        writer is scheduled as it becomes so (its close, a finished or failed attempt, a retry
        timer); the look over all of them, at the start and then every
        ``DRAIN_SWEEP_SECONDS``, only guards that."""
        self._draining = True
        for entry in self.entries.values():
            entry.hurry.set()
        while self._pending or self._finishing:
            for entry in list(self._pending):
                if entry.attempt is None and entry.writers == 0 and entry.failure is None:
                    self._schedule(entry)
            with trio.move_on_after(DRAIN_SWEEP_SECONDS):
                while self._pending or self._finishing:
                    changed = self._changed = trio.Event()
                    await changed.wait()

    def sent_bytes(self, entry: Entry) -> int:
        """How much of the entry's content its upload in flight has sent (0 when none is):
        the progress ``b2fs status`` and ``b2fs unmount`` show."""
        if entry.large is not None:
            return entry.large.bytes_sent(entry.file.size)
        if entry.uploading:
            return min(entry.sent, entry.file.size)
        return 0

    def stats(self) -> Mapping[str, int]:
        pending = self.pending
        return {
            "pending_files": len(pending),
            "pending_bytes": sum(e.file.size for e in pending),
            "sent_bytes": sum(self.sent_bytes(e) for e in pending),
            "uploading": sum(1 for e in pending if e.uploading),
            "failing": sum(1 for e in pending if e.failure is not None),
        }


def _reader(path: str) -> _RangeReader:
    return _RangeReader(path)


class _RangeReader:
    """Reads ranges of a staging file from a worker thread (for hashing parts at restart)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, start: int, end: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(start)
            return f.read(end - start)


def part_count_for(entry: Entry) -> int:
    return parts.part_count(entry.row.part_size, entry.file.size)
