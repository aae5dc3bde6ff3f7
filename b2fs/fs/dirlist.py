"""Directory listings: asking B2 what a directory holds, and merging that with local changes.

A directory's children come from one paged ``list_file_names`` with delimiter "/" under the
directory's prefix (folder rows become subdirectories), merged with what exists only locally:
staged files not yet on B2 (``WriteBack.by_name``, which also holds the ``.bzEmpty`` marker of
a directory made here). The listing is trusted as long as :class:`Freshness` says
(``dir_timeout``, or longer while B2 event notifications are healthy); within that time
lookups, negative ones included, are answered from it.

Merge rules:

- A listing that was in flight while the directory changed locally (its ``generation`` moved)
  is not applied: it is asked again, so a name just removed here is not brought back. A
  change B2 announced meanwhile (``Filesystem.remote_changed`` moves ``announced`` and the
  generation) is handled alike; a listing that only ever predates such a change is applied
  but left stale, to be taken again at the next use.
- A staged child keeps its local state; other file children take the listed version unless
  they know a newer one that this mount made (its upload may postdate the listing); an older
  listed version is current again because another client deleted the newer. A file open only
  for reading that another client replaced keeps its inode and version for its handles, and
  the name gets a new inode (so the kernel's pages of the two versions never mix).
- A child missing from the listing disappears unless it is staged, a directory with local
  content, a directory made here whose marker is still queued, or something an upload of
  this mount put on B2 after the listing was asked for (``Inode.landed_at``): its staged
  entry may be gone by the time the answer arrives, while the answer predates it.
- A name that is both a file and a folder shows the folder (the file stays on B2; docs say so).

The key's name-prefix restriction shapes what a directory may list (``scoped_prefix``): above
the restricted prefix only the path towards it is shown; at or below it, listings pass the
prefix B2 insists on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import trio

from b2fs.fs import names
from b2fs.fs.attrs import remote_kind
from b2fs.fs.errors import to_fs_error
from b2fs.fs.inodes import ROOT_INODE, Inode, InodeTable, Kind
from b2fs.fs.subtree import MAX_PAGE, list_subtree
from b2fs.objectstore import ObjectStore, RemoteFile
from b2fs.transfer.writeback import WriteBack

log = logging.getLogger(__name__)

_STALE_RETRIES = 3


@dataclass(frozen=True)
class Listed:
    """One child as B2 (or the local write-back) reports it."""

    kind: Kind
    remote: RemoteFile | None = None  # for files


_FOLDER = Listed(Kind.DIR)


class Freshness:
    """How long a listing taken from B2 is trusted: the one place of that decision, for the
    tree and the versions view.

    Always ``dir_timeout``. While B2 event notifications are healthy (the receiver in
    ``service/notifications.py`` calls :meth:`notified` and :meth:`unnotified`), a listing
    taken since they became healthy is trusted for ``notified_ttl`` (``notify_dir_timeout``)
    instead: every change made elsewhere then marks the listings it touches stale at once.
    A listing taken before keeps ``dir_timeout``: a change made while notifications were not
    healthy may never be announced.
    """

    def __init__(self, dir_timeout: float) -> None:
        self.dir_timeout = dir_timeout
        self.notified_ttl: float | None = None
        self.notified_since = math.inf  # trio time notifications became healthy

    def notified(self, ttl: float) -> None:
        if self.notified_ttl is None:
            self.notified_since = trio.current_time()
        self.notified_ttl = ttl

    def unnotified(self) -> None:
        self.notified_ttl = None
        self.notified_since = math.inf

    def ttl(self, directory: Inode) -> float:
        if self.notified_ttl is not None and directory.listed_at >= self.notified_since:
            return max(self.notified_ttl, self.dir_timeout)
        return self.dir_timeout

    def is_fresh(self, directory: Inode) -> bool:
        return trio.current_time() - directory.listed_at < self.ttl(directory)


@dataclass
class KernelDrops:
    """What the kernel must forget after changes B2 announced: names (directory inode and
    name, cached as entries, present or absent) and inodes' attributes. Only what the kernel
    may hold is listed: inodes it looked up (and the root)."""

    names: set[tuple[int, str]] = field(default_factory=set)
    attributes: set[int] = field(default_factory=set)

    def name(self, directory: Inode, name: str) -> None:
        if directory.lookups > 0 or directory.ino == ROOT_INODE:
            self.names.add((directory.ino, name))

    def attributes_of(self, inode: Inode) -> None:
        if inode.lookups > 0:
            self.attributes.add(inode.ino)

    def update(self, other: KernelDrops) -> None:
        self.names |= other.names
        self.attributes |= other.attributes

    def __len__(self) -> int:
        return len(self.names) + len(self.attributes)


def announce(directory: Inode, drops: KernelDrops, name: str | None) -> None:
    """B2 announced a change in ``directory`` (of ``name``): its listing is stale, and one in
    flight is not trusted (see the merge rules); the kernel must forget the name."""
    directory.listed_at = -math.inf
    directory.generation += 1
    directory.announced += 1
    if name is not None:
        drops.name(directory, name)


def scoped_prefix(dir_key: str, key_prefix: str | None) -> tuple[str | None, str | None]:
    """(prefix to list, or None) and (the one synthetic child to show, or None)."""
    if not key_prefix or dir_key.startswith(key_prefix):
        return dir_key, None
    if key_prefix.startswith(dir_key):
        rest = key_prefix[len(dir_key) :]
        if "/" in rest:
            return None, rest.split("/", 1)[0]
        return key_prefix, None
    return None, None  # outside the key's prefix: nothing visible


class DirectoryLister:
    def __init__(
        self,
        store: ObjectStore,
        inodes: InodeTable,
        writeback: WriteBack,
        freshness: Freshness,
        at_ms: int | None = None,
        concurrency: int = 1,
    ) -> None:
        self.store = store
        self.concurrency = concurrency  # list calls at once for a subtree
        self.inodes = inodes
        self.writeback = writeback
        self.freshness = freshness
        self.at_ms = at_ms  # show the tree as it was at this moment (a read-only mount)
        self.list_calls = 0  # listings made (for tests and status)
        self.walks: dict[Inode, SubtreeWalk] = {}  # subtree listings under way, by top

    def is_fresh(self, directory: Inode) -> bool:
        return self.freshness.is_fresh(directory)

    async def ensure_listed(self, directory: Inode) -> None:
        if not self.is_fresh(directory):
            await self.refresh(directory)

    async def refresh(self, directory: Inode) -> None:
        """List the directory from B2 and merge (single flight per directory)."""
        started = trio.current_time()
        async with directory.list_lock:
            if directory.listed_at >= started:
                return  # someone else listed it while we waited
            for _ in range(_STALE_RETRIES):
                generation, announced = directory.generation, directory.announced
                asked = trio.current_time()
                listed, marker = await self._fetch(directory)
                if directory.generation == generation:
                    break
            self._merge(directory, listed, marker, asked)
            current = directory.announced == announced
            directory.listed_at = trio.current_time() if current else -math.inf

    async def _fetch(self, directory: Inode) -> tuple[dict[str, Listed], RemoteFile | None]:
        assert directory.bucket is not None
        key = directory.key
        prefix, synthetic = scoped_prefix(key, self.store.scope.name_prefix)
        listed: dict[str, Listed] = {}
        marker: RemoteFile | None = None
        if synthetic is not None:
            listed[synthetic] = _FOLDER
        if prefix is not None:
            self.list_calls += 1
            async for remote in self._names(directory.bucket.id, prefix):
                rest = remote.name[len(key) :]
                if remote.is_folder:
                    component = rest[:-1]
                    if "/" in component or not names.is_showable(component):
                        names.skip_warning(remote.name, "its path has an empty, '.' or '..' part")
                        continue
                    listed[component] = _FOLDER
                else:
                    marker = _add_file(listed, remote, rest) or marker
        self._add_local(directory, listed)
        return listed, marker

    def _add_local(self, directory: Inode, listed: dict[str, Listed]) -> None:
        for component, kind in self._local_children(directory):
            current = listed.get(component)
            if current is None or kind is Kind.DIR:
                listed[component] = Listed(kind)

    # -- whole subtrees -------------------------------------------------------------------

    def walk_covering(self, directory: Inode) -> SubtreeWalk | None:
        """The subtree listing under way of one of ``directory``'s parents, if any."""
        node = directory.parent
        while node is not None:
            walk = self.walks.get(node)
            if walk is not None:
                return walk
            node = node.parent
        return None

    def start_subtree(self, directory: Inode) -> SubtreeWalk | None:
        """Announce a listing of everything below ``directory`` (``run_subtree`` makes it; the
        caller has seen that none is under way), or None where subtrees are not listed at
        once: a subtree known to be too big or whose listing failed within ``dir_timeout``
        (its folders are listed one by one meanwhile, rather than a new walk failing at each),
        a point-in-time mount, or where the key's name prefix shapes the listing."""
        if (
            directory.bucket is None
            or directory.subtree_too_big
            or trio.current_time() - directory.subtree_failed_at < self.freshness.dir_timeout
            or self.at_ms is not None
            or scoped_prefix(directory.key, self.store.scope.name_prefix) != (directory.key, None)
        ):
            return None
        walk = self.walks[directory] = SubtreeWalk()
        return walk

    async def run_subtree(self, directory: Inode, walk: SubtreeWalk) -> None:
        """List everything below ``directory`` without a delimiter (``fs/subtree.py``: in
        parallel ranges cut at its subfolders), and apply it to every folder it covers
        completely, each as soon as its names are in: a recursive walk, ``ls -lR`` or
        ``find``, then costs a few calls in all instead of one per folder, one after the
        other, and goes on with the first folders while the later ones are on their way.

        Up to ``SUBTREE_PAGES * SUBTREE_PAGE`` names: a bigger subtree is marked so and not
        tried again, but the folders already covered are applied. A failure is logged (as
        loud as the errno table says for a request) and marked (not tried again for
        ``dir_timeout``): the folders not applied are listed on their own when read (and
        fail there, with their own errno, if B2 still refuses).
        """
        try:
            assert directory.bucket is not None  # start_subtree saw to it
            async with directory.list_lock:
                applier = _SubtreeApplier(self, directory, walk)

                def covered(rows: list[RemoteFile], start: str, end: str | None) -> None:
                    applier.apply(rows, start, end)
                    walk.moved()

                found = await list_subtree(
                    self.store,
                    directory.bucket.id,
                    directory.key,
                    applier.subfolders,
                    concurrency=self.concurrency,
                    budget=SUBTREE_PAGES * SUBTREE_PAGE,
                    covered=covered,
                    asking=self._count_list_call,  # a failed walk's calls count too
                )
                if found.covered_to is not None:
                    self._too_big(directory)
        except Exception as exc:  # the folders not applied are listed on their own
            directory.subtree_failed_at = trio.current_time()
            error = to_fs_error(exc)  # the errno table decides how loud, as for a request
            log.log(
                error.level,
                "listing the subtree of %r at once failed (%s); its folders are listed one by one",
                directory.key,
                error,
                exc_info=error.level >= logging.ERROR,
            )
        finally:
            walk.end()
            if self.walks.get(directory) is walk:
                del self.walks[directory]

    def _count_list_call(self) -> None:
        self.list_calls += 1

    def _too_big(self, directory: Inode) -> None:
        node: Inode | None = directory
        while node is not None and not node.is_top:
            node.subtree_too_big = True
            node = node.parent
        if node is not None:
            node.subtree_too_big = True

    def apply_listed(
        self,
        folder: Inode,
        listed: dict[str, Listed],
        marker: RemoteFile | None,
        asked: float,
    ) -> None:
        """Merge a folder's names listed by a walk of its subtree (``_SubtreeApplier``), with
        the names that exist only here added, as a listing of its own would be."""
        self._add_local(folder, listed)
        self._merge(folder, listed, marker, asked)

    def folder_below(self, top: Inode, prefix: str) -> Inode | None:
        """The directory inode of ``prefix`` below ``top`` (its parents already merged)."""
        node = top
        for part in filter(None, prefix[len(top.key) :].split("/")):
            child = node.children.get(part)
            if child is None or not child.is_dir:
                return None
            node = child
        return node

    async def _names(self, bucket_id: str, prefix: str) -> AsyncIterator[RemoteFile]:
        """The visible names under prefix (folder rows included): now, or at ``at_ms``."""
        if self.at_ms is None:
            async for remote in self.store.list_names(bucket_id, prefix, "/"):
                yield remote
            return
        # Versions come by name, newest first: the first one not newer than the moment
        # decides the name (a hide marker means it was hidden then).
        decided = ""
        async for version in self.store.list_versions(bucket_id, prefix, "/"):
            if version.is_folder:
                yield version
            elif (
                version.name != decided
                and version.action in ("upload", "hide")
                and version.upload_ms <= self.at_ms
            ):
                decided = version.name
                if version.action == "upload":
                    yield version

    def _local_children(self, directory: Inode) -> Iterable[tuple[str, Kind]]:
        """Children that exist because of staged entries (not on B2 yet)."""
        assert directory.bucket is not None
        key = directory.key
        bucket_id = directory.bucket.id
        for (entry_bucket, name), entry in self.writeback.by_name.items():
            if entry_bucket != bucket_id or not name.startswith(key) or name == key:
                continue
            rest = name[len(key) :]
            component, slash, _ = rest.partition("/")
            if slash:
                yield component, Kind.DIR
            elif component != names.MARKER:
                kind = Kind.SYMLINK if entry.row.kind == "symlink" else Kind.FILE
                yield component, kind

    def _merge(
        self,
        directory: Inode,
        listed: dict[str, Listed],
        marker: RemoteFile | None,
        asked: float,
    ) -> None:
        """Apply a listing asked for at trio time ``asked``."""
        directory.marker = marker
        for name, child in list(directory.children.items()):
            seen = listed.get(name)
            if seen is None:
                if not self._keep_unlisted(child, asked):
                    self.detach(directory, name)
                continue
            if seen.kind is not child.kind and child.staged is None:
                self.detach(directory, name)
                continue
            if child.staged is None and seen.remote is not None:
                latest = seen.remote
                if self.store.own.is_own(child.remote.file_id if child.remote else None):
                    latest = newer(child.remote, seen.remote)
                if self._replaced_while_read(child, latest):
                    self.detach(directory, name)  # a new inode is made for the name below
                    continue
                child.remote = latest
        for name, seen in listed.items():
            if name in directory.children:
                continue
            child = self.inodes.new(seen.kind, name, directory, remote=seen.remote)
            directory.children[name] = child
            self.attach_entry(child)

    @staticmethod
    def _replaced_while_read(child: Inode, latest: RemoteFile) -> bool:
        """Another client replaced a file that is open here only for reading. Its handles
        keep reading the version they opened, and so must the kernel's page cache, which is
        per inode: the old inode stays with them, and the name gets a new one."""
        return (
            child.opens > 0
            and child.write_opens == 0
            and child.remote is not None
            and latest.file_id != child.remote.file_id
        )

    def _keep_unlisted(self, child: Inode, asked: float) -> bool:
        if child.staged is not None and not child.staged.discarded:
            return True
        if child.landed_at >= asked:
            return True  # B2 got it after answering
        if child.is_dir and child.remote is None:
            # Made here and still empty on B2, or holding staged files below it.
            return any(self._local_children(child)) or self._has_staged_marker(child)
        return False

    def _has_staged_marker(self, directory: Inode) -> bool:
        assert directory.bucket is not None
        return (directory.bucket.id, directory.key + names.MARKER) in self.writeback.by_name

    def attach_entry(self, child: Inode) -> None:
        """Link a new inode with the staged entry of its name, if there is one."""
        if child.is_dir or child.bucket is None:
            return
        entry = self.writeback.by_name.get((child.bucket.id, child.key))
        if entry is not None and entry.owner is None:
            entry.owner = child
            child.staged = entry

    def detach(self, directory: Inode, name: str) -> Inode | None:
        """Remove a child from the tree (its inode lives on while the kernel or a handle has it)."""
        child = directory.children.pop(name, None)
        if child is not None:
            child.unlinked = True
            self.inodes.maybe_drop(child)
        return child


class SubtreeWalk:
    """A subtree listing under way, for the readdirs of the folders below it to wait on: which
    stretches of names (in name order) are in and applied."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str | None]] = []  # [start, end), merged where they meet
        self.ended = False
        self._waiting = trio.lowlevel.ParkingLot()  # readdirs, woken at every change

    def covers(self, key: str) -> bool:
        """Every name below the folder ``key`` is in: one span holds them all."""
        return any(
            start <= key and (end is None or (end > key and not end.startswith(key)))
            for start, end in self.spans
        )

    def add(self, start: str, end: str | None) -> None:
        spans = sorted([*self.spans, (start, end)], key=lambda span: span[0])
        merged = [spans[0]]
        for span in spans[1:]:
            if merged[-1][1] == span[0]:
                merged[-1] = (merged[-1][0], span[1])
            else:
                merged.append(span)
        self.spans = merged

    def moved(self) -> None:
        self._waiting.unpark_all()

    def end(self) -> None:
        self.ended = True
        self.moved()

    async def wait_for(self, key: str) -> None:
        """Until the folder ``key`` is covered or the walk is over (then the folder may still
        need a listing of its own: the caller's ``ensure_listed`` decides)."""
        while not self.ended and not self.covers(key):
            await self._waiting.park()


class _SubtreeApplier:
    """Files a subtree listing's rows under their folders and applies each folder once it is
    covered completely and its parent folder has been applied (the top's subfolders: once
    covered; the top itself: at the end)."""

    def __init__(self, lister: DirectoryLister, top: Inode, walk: SubtreeWalk) -> None:
        self.lister = lister
        self.top = top
        self.walk = walk
        self.before = _generations(top)
        self.asked = trio.current_time()
        self.subfolders = sorted(child.key for child in top.children.values() if child.is_dir)
        self.folders: dict[str, tuple[dict[str, Listed], list[RemoteFile | None]]] = {}
        self.applied: set[str] = {top.key}  # a subfolder of the top needs no parent applied

    def apply(self, rows: list[RemoteFile], start: str, end: str | None) -> None:
        """Take the rows of a stretch now complete: from ``start`` up to ``end``."""
        for remote in rows:
            _place(self.folders, self.top.key, remote)
        self.walk.add(start, end)
        now = trio.current_time()
        for prefix in sorted(self.folders):  # parents before children
            parent = prefix[: prefix.rstrip("/").rfind("/") + 1]
            if not self.walk.covers(prefix) or (
                prefix != self.top.key and parent not in self.applied
            ):
                continue  # not all in yet, or its parent is not merged (yet): its inode waits
            listed, marker = self.folders.pop(prefix)
            folder = self.lister.folder_below(self.top, prefix)
            if folder is None or self.before.get(folder, folder.generation) != folder.generation:
                continue  # changed here meanwhile: listed again on its own later
            self.lister.apply_listed(folder, listed, marker[0], self.asked)
            folder.listed_at = now
            self.applied.add(prefix)


SUBTREE_PAGE = MAX_PAGE  # names per listing page (remote.py asks for B2's maximum)
SUBTREE_PAGES = 5  # the most pages a subtree listing reads before giving up on the subtree


def _add_file(listed: dict[str, Listed], remote: RemoteFile, rest: str) -> RemoteFile | None:
    """Add a file row named ``rest`` (relative to its folder); returns it if it is the
    folder's empty-directory marker. A folder of the same name wins over the file."""
    if rest == names.MARKER:
        return remote
    if not names.is_showable(rest):
        names.skip_warning(remote.name, "it ends in '/' or has a '.' or '..' part")
    elif (existing := listed.get(rest)) is not None and existing.kind is Kind.DIR:
        names.skip_warning(remote.name, "a folder of the same name hides it")
    else:
        listed[rest] = Listed(remote_kind(remote), remote)
    return None


def _place(
    folders: dict[str, tuple[dict[str, Listed], list[RemoteFile | None]]],
    top: str,
    remote: RemoteFile,
) -> None:
    """File a row of a subtree listing under every folder on its path."""
    parts = remote.name[len(top) :].split("/")
    leaf = parts.pop()
    if not names.all_showable(parts):
        names.skip_warning(remote.name, "its path has an empty, '.' or '..' part")
        return
    prefix = top
    for part in parts:
        folder = folders.get(prefix)
        if folder is None:
            folder = folders[prefix] = ({}, [None])
        folder[0][part] = _FOLDER  # a folder wins over a file of the same name
        prefix += part + "/"
    folder = folders.get(prefix)
    if folder is None:
        folder = folders[prefix] = ({}, [None])
    found = _add_file(folder[0], remote, leaf)
    if found is not None:
        folder[1][0] = found


def _generations(top: Inode) -> dict[Inode, int]:
    """The generation of every directory below ``top`` (to spot changes made meanwhile)."""
    found: dict[Inode, int] = {}
    stack = [top]
    while stack:
        node = stack.pop()
        found[node] = node.generation
        stack.extend(child for child in node.children.values() if child.is_dir)
    return found


def newer(current: RemoteFile | None, listed: RemoteFile) -> RemoteFile:
    """The newer of two versions of one name (by upload time; a tie takes the listed one)."""
    if current is None or listed.upload_ms >= current.upload_ms:
        return listed
    return current
