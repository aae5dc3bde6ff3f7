"""Large uploads: the parts of one B2 large file, uploaded in parallel, even while being written.

A ``LargeUpload`` follows the part plan of ``transfer.parts``. Every part number has a change
counter, bumped (by the write-back layer, before the bytes are written) whenever a write
touches the part's range; an uploaded part remembers the counter value it was read at. A part
is *current* when those two agree, so a write into a part that is uploading or already
uploaded simply makes it stale, and it is uploaded again; nothing is ever cancelled for it.

While the file is still open (``final`` False), only parts that lie wholly below the current
size are uploaded: a sequential writer sees its parts leave while it writes the next ones.
Once the file is closed (``final`` True), the last short part follows, and when every part is
current the large file is finished with the parts' SHA1s. Each part upload holds one of the
shared upload slots, so small files and parts together respect ``upload_concurrency``.

A large file whose final size does not make two parts cannot be finished on B2: ``finish``
then returns None, the caller cancels it and uploads the file in one piece instead.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from b2fs.objectstore import ObjectStore, RemoteFile, UploadedPart
from b2fs.transfer import parts

log = logging.getLogger(__name__)


@dataclass
class PartState:
    changes: int = 0  # bumped by every write that touches the part
    uploaded_at: int = -1  # `changes` when the uploaded copy was read; -1: none
    uploading: bool = False
    sha1: str = ""
    size: int = 0
    sent: int = 0  # bytes of the upload in flight sent so far (progress, for status)


@dataclass
class LargeUpload:
    store: ObjectStore
    file_id: str
    part_size: int
    path: str
    slots: trio.CapacityLimiter
    parts: dict[int, PartState] = field(default_factory=dict)
    wake: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None
    # Parts below this number are current and not uploading: ``_ready`` (on every write of
    # a streaming writer) starts there instead of going over every part again.
    settled_below: int = 1

    def part(self, number: int) -> PartState:
        state = self.parts.get(number)
        if state is None:
            state = self.parts[number] = PartState()
        return state

    def touch(self, start: int, end: int) -> None:
        """Bytes [start, end) are about to change: the parts covering them become stale."""
        touched = parts.parts_touched(self.part_size, start, end)
        for number in touched:
            self.part(number).changes += 1
        if touched:
            self.settled_below = min(self.settled_below, touched[0])
        self._wake()

    def truncated_below_uploads(self, size: int) -> bool:
        """True if truncating to ``size`` would leave parts on B2 past the new end."""
        last = parts.part_count(self.part_size, size) if size else 0
        return any(n > last and s.uploaded_at >= 0 for n, s in self.parts.items())

    def _wake(self) -> None:
        self.wake.set()

    async def adopt_existing(self, size: int, read_range: Callable[[int, int], bytes]) -> None:
        """After a restart: keep the parts B2 already has whose bytes still match ours."""
        for uploaded in await self.store.list_parts(self.file_id):
            start, end = parts.part_range(self.part_size, uploaded.number, size)
            if end - start != uploaded.size:
                continue
            local = await trio.to_thread.run_sync(_sha1_of, read_range, start, end)
            if local == uploaded.sha1:
                state = self.part(uploaded.number)
                state.uploaded_at, state.sha1, state.size = state.changes, local, uploaded.size
        log.debug("large file %s: %d parts reused after restart", self.file_id, len(self.parts))

    def _ready(self, size: int, final: bool) -> list[int]:
        if size <= 0:
            return []
        count = parts.part_count(self.part_size, size)
        ready = []
        settled = True
        for number in range(min(self.settled_below, count + 1), count + 1):
            start, end = parts.part_range(self.part_size, number, size)
            complete = end - start == parts.part_length(self.part_size, number)
            if not final and not (complete and end < size):
                break  # the part is still growing (or ends exactly at the write frontier)
            state = self.part(number)
            current = state.uploaded_at == state.changes
            if not state.uploading and not current:
                ready.append(number)
            # A complete part below the end keeps its range whatever the size becomes
            # (a shorter last part is planned anew).
            settled = settled and current and not state.uploading and complete and end < size
            if settled:
                self.settled_below = number + 1
        return ready

    def bytes_sent(self, size: int) -> int:
        """Bytes of a file of ``size`` that are on B2 as current parts or on their way now
        (progress for ``b2fs status``)."""
        count = parts.part_count(self.part_size, size) if size else 0
        done = 0
        for number in range(1, count + 1):
            state = self.parts.get(number)
            if state is None:
                continue
            if state.uploading:
                done += state.sent
            elif state.uploaded_at == state.changes:
                done += state.size
        return min(done, size)

    def all_current(self, size: int) -> bool:
        count = parts.part_count(self.part_size, size)
        return all(
            (s := self.part(n)).uploaded_at == s.changes and not s.uploading
            for n in range(1, count + 1)
        )

    async def pump(
        self,
        nursery: trio.Nursery,
        size: Callable[[], int],
        final: Callable[[], bool],
        prepare: Callable[[int, int], Awaitable[None]],
    ) -> None:
        """Start uploads of every part that is ready; returns at once."""
        for number in self._ready(size(), final()):
            state = self.part(number)
            state.uploading = True
            nursery.start_soon(self._upload_part, number, size, prepare)

    async def _upload_part(
        self,
        number: int,
        size: Callable[[], int],
        prepare: Callable[[int, int], Awaitable[None]],
    ) -> None:
        state = self.part(number)
        try:
            async with self.slots:
                start, end = parts.part_range(self.part_size, number, size())
                changes = state.changes
                await prepare(start, end)
                state.sent = 0

                def progress(sent: int) -> None:
                    state.sent = sent

                uploaded: UploadedPart = await self.store.upload_part(
                    self.file_id, number, Path(self.path), start, end - start, progress=progress
                )
            state.uploaded_at, state.sha1, state.size = changes, uploaded.sha1, uploaded.size
        except Exception as exc:
            self.error = exc
        finally:
            state.uploading = False
            self._wake()

    async def finish(self, size: int) -> RemoteFile | None:
        """Finish the large file (every part must be current); None if it has < 2 parts."""
        count = parts.part_count(self.part_size, size)
        if count < 2:
            return None
        sha1s = [self.part(n).sha1 for n in range(1, count + 1)]
        return await self.store.finish_large_file(self.file_id, sha1s)


def _sha1_of(read_range: Callable[[int, int], bytes], start: int, end: int) -> str:
    digest = hashlib.sha1()
    position = start
    while position < end:
        chunk = read_range(position, min(end, position + (1 << 20)))
        if not chunk:
            break
        digest.update(chunk)
        position += len(chunk)
    return digest.hexdigest()
