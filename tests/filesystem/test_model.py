"""Tier 5: hypothesis runs random operation sequences on a b2fs mount and on a local directory
side by side, and compares them after every step.

Operations: create (with or without O_EXCL), write at an offset, append, truncate, read,
rename, unlink, mkdir, rmdir through paths; fsync of every file (so that later operations also
meet files that are on B2 rather than staged); open/pwrite/pread/ftruncate/fsync/close through
descriptors kept open across steps (so files are also written, read and truncated while
renamed, replaced or unlinked); and, once per test case after a few steps, a remount after
`b2fs unmount`, either with the same cache directory or with an empty one (every byte then
comes from B2). Each operation's result, or its errno, must be the same on both sides; after
each step the two trees must have the same names, types, modes, file sizes and file contents.

Names come from a three-letter alphabet, three levels deep, so operations collide often.
Every test case (hypothesis example) runs on its own bucket and its own mount, with mount
options drawn from a few choices (write-back delay, unlink mode, directory and attribute
timeouts: with 0, every lookup merges a fresh B2 listing with local state); the block size
is 64 KiB so that small files already span several blocks.

Allowed differences from POSIX on a local disk (not compared):

- directory mtimes, and all atimes and ctimes (b2fs keeps directory times in memory only and
  reports ctime = atime = mtime);
- file mtimes (b2fs keeps milliseconds; the two sides write at different instants anyway);
- nlink (b2fs reports 1 for directories), inode numbers, st_blocks, st_dev.

Nothing else differs: errno values, contents, sizes and modes must match exactly.

B2FS_MODEL_EXAMPLES=200 in the environment runs more test cases than the default 15.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from b2fs.emulator import Emulator
from filesystem.conftest import B2View
from filesystem.mounting import Mount, Mounter

NAMES = ("a", "b", "c")
MAX_FDS = 3
BLOCK = 64 * 1024


def _paths(depth: int) -> list[str]:
    found = [""]
    for _ in range(depth):
        found = [f"{p}/{n}" if p else n for p in found for n in NAMES]
    return found


# Each depth equally likely, so shallow names (which collide most) come up often.
PATHS = st.one_of(*(st.sampled_from(_paths(d)) for d in (1, 2, 3)))
SIZES = st.one_of(
    st.integers(0, 300),
    st.sampled_from([BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK]),
    st.integers(0, 3 * BLOCK),
)
OFFSETS = SIZES


def pattern(seed: int, size: int) -> bytes:
    """Cheap recognisable bytes: a seed-dependent run that does not line up with blocks."""
    unit = bytes((seed * 7 + i) % 251 for i in range(251))
    return (unit * (size // 251 + 1))[:size]


DATA = st.builds(pattern, st.integers(0, 250), SIZES)
PATH_OPERATIONS = (
    "create",
    "write",
    "append",
    "truncate",
    "read",
    "rename",
    "unlink",
    "mkdir",
    "rmdir",
    "sync",
)
FD_OPERATIONS = ("open", "pwrite", "pread", "ftruncate", "fsync", "close")
OPEN_FLAGS = st.sampled_from(
    [
        os.O_RDONLY,
        os.O_RDWR,
        os.O_WRONLY | os.O_APPEND,
        os.O_RDWR | os.O_CREAT,
        os.O_WRONLY | os.O_TRUNC,
    ]
)


@pytest.fixture
def emulator(emulator_factory: Callable[..., Emulator]) -> Emulator:
    """The emulator, allowing a bucket per test case (hypothesis may run hundreds)."""
    return emulator_factory(max_buckets=1_000_000)


def read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Names, types and modes, and for files: size (from stat) and content."""
    found: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st_ = path.lstat()
            if stat.S_ISDIR(st_.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st_.st_mode))
            else:
                found[rel] = (
                    "file",
                    st_.st_size,
                    stat.S_IMODE(st_.st_mode),
                    path.read_bytes(),
                )
    return found


def describe(value: object) -> object:
    """Short form of a result for assertion messages (contents can be large)."""
    if isinstance(value, bytes) and len(value) > 40:
        return f"<{len(value)} bytes {value[:16]!r}...>"
    if isinstance(value, tuple):
        return tuple(describe(v) for v in value)
    return value


class MountVersusLocal(RuleBasedStateMachine):
    """Set up by test_mount_behaves_like_a_local_directory (class attributes)."""

    mounter: Mounter
    b2: B2View
    tmp: Path
    count = 0

    def __init__(self) -> None:
        super().__init__()
        MountVersusLocal.count += 1
        self.case = MountVersusLocal.count
        self.local = self.tmp / f"local{self.case}"
        shutil.rmtree(self.local, ignore_errors=True)
        self.local.mkdir()
        self.mount: Mount | None = None
        self.bucket = f"model-{self.case:05d}"
        self.options: list[str] = []
        self.fds: list[tuple[int, int, str]] = []  # (local fd, mount fd, path)
        self.remounts = 0
        self.steps = 0

    @initialize(
        delay=st.sampled_from(["0", "200ms", "1s"]),
        unlink=st.sampled_from(["hide", "delete"]),
        dir_timeout=st.sampled_from(["10s", "0"]),
        attr_timeout=st.sampled_from(["1s", "0"]),
    )
    def start(self, delay: str, unlink: str, dir_timeout: str, attr_timeout: str) -> None:
        self.b2.create_bucket(self.bucket)
        self.options = [
            f"block_size={BLOCK}",
            f"writeback_delay={delay}",
            f"unlink={unlink}",
            f"dir_timeout={dir_timeout}",  # 0: every lookup merges a fresh listing from B2
            f"attr_timeout={attr_timeout}",  # 0: the kernel asks b2fs every time
        ]
        self.mount = self.mounter.mount(self.bucket, options=self.options)

    def teardown(self) -> None:
        self._close_fds()
        if self.mount is not None:
            self.mount.cleanup()  # a graceful unmount is a rule; here only cleaning up
        shutil.rmtree(self.local, ignore_errors=True)

    # -- running one operation on both sides -----------------------------------------------

    @property
    def roots(self) -> tuple[Path, Path]:
        assert self.mount is not None
        return self.local, self.mount.path

    def both(self, what: str, operation: Callable[[Path], object]) -> object:
        """Run ``operation`` under each root; results (or errnos) must be equal."""
        results = []
        for root in self.roots:
            try:
                results.append(("ok", operation(root)))
            except OSError as exc:
                results.append(("error", errno.errorcode.get(exc.errno or 0, exc.errno)))
        local, mounted = results
        assert local == mounted, f"{what}: local {describe(local)} != mount {describe(mounted)}"
        event(f"{what.split()[0]}: {local[0] if local[0] == 'ok' else local[1]}")
        return local

    def both_fds(self, what: str, index: int, operation: Callable[[int], object]) -> object:
        local_fd, mount_fd, path = self.fds[index]
        results = []
        for fd in (local_fd, mount_fd):
            try:
                results.append(("ok", operation(fd)))
            except OSError as exc:
                results.append(("error", errno.errorcode.get(exc.errno or 0, exc.errno)))
        local, mounted = results
        assert local == mounted, (
            f"{what} (fd opened as {path}): local {describe(local)} != mount {describe(mounted)}"
        )
        event(f"fd {what.split()[0]}: {local[0] if local[0] == 'ok' else local[1]}")
        return local

    def _close_fds(self) -> None:
        for local_fd, mount_fd, _ in self.fds:
            for fd in (local_fd, mount_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.fds = []

    # -- choosing names ---------------------------------------------------------------------

    def _local_paths(self) -> tuple[list[str], list[str]]:
        """(directories, files) that exist now, from the local side."""
        dirs, files = [], []
        for dirpath, dirnames, filenames in os.walk(self.local):
            rel = Path(dirpath).relative_to(self.local)
            dirs += [str(rel / n) for n in dirnames]
            files += [str(rel / n) for n in filenames]
        return sorted(dirs), sorted(files)

    def draw_path(self, data: st.DataObject, want: str) -> str:
        """A path: mostly an existing file or directory (``want``), or a name in an existing
        directory ("new"); sometimes any path of the alphabet, for the error cases."""
        dirs, files = self._local_paths()
        pool = {"file": files, "dir": dirs}.get(want, [])
        how = data.draw(st.integers(0, 9), label=f"{want} path")  # 0-5, 6-8, 9
        if how < 6 and pool:
            return data.draw(st.sampled_from(pool), label="path")
        if how < 9:
            parent = data.draw(st.sampled_from(["", *dirs]), label="parent")
            name = data.draw(st.sampled_from(NAMES), label="name")
            return f"{parent}/{name}" if parent else name
        return data.draw(PATHS, label="path")

    # -- one step: an operation on paths, or on a descriptor kept open ---------------------

    @rule(data=st.data())
    def path_operation(self, data: st.DataObject) -> None:
        """Swarm testing enables only some rules per test case; one rule per family keeps a
        mix of operations in every case."""
        name = data.draw(st.sampled_from(PATH_OPERATIONS), label="operation")
        getattr(self, f"do_{name}")(data)

    @rule(data=st.data())
    def fd_operation(self, data: st.DataObject) -> None:
        if not self.fds:
            self.do_open(data)
            return
        name = data.draw(st.sampled_from(FD_OPERATIONS), label="fd operation")
        if name == "open" and len(self.fds) >= MAX_FDS:
            name = "close"
        getattr(self, f"do_{name}")(data)

    def do_create(self, data: st.DataObject) -> None:
        path = self.draw_path(data, "new")
        content = data.draw(DATA, label="content")
        exclusive = data.draw(st.booleans(), label="O_EXCL")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_EXCL if exclusive else 0)

        def run(root: Path) -> None:
            fd = os.open(root / path, flags, 0o644)
            try:
                os.write(fd, content)
            finally:
                os.close(fd)

        self.both(f"create {path} ({len(content)} bytes, O_EXCL={exclusive})", run)

    def do_write(self, data: st.DataObject) -> None:
        path = self.draw_path(data, "file")
        offset = data.draw(OFFSETS, label="offset")
        content = data.draw(DATA, label="content")

        def run(root: Path) -> int:
            fd = os.open(root / path, os.O_WRONLY)
            try:
                return os.pwrite(fd, content, offset)
            finally:
                os.close(fd)

        self.both(f"write {path} at {offset} ({len(content)} bytes)", run)

    def do_append(self, data: st.DataObject) -> None:
        path = self.draw_path(data, "file")
        content = data.draw(DATA, label="content")

        def run(root: Path) -> int:
            fd = os.open(root / path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                return os.write(fd, content)
            finally:
                os.close(fd)

        self.both(f"append {path} ({len(content)} bytes)", run)

    def do_truncate(self, data: st.DataObject) -> None:
        path = self.draw_path(data, "file")
        size = data.draw(SIZES, label="size")
        self.both(f"truncate {path} to {size}", lambda root: os.truncate(root / path, size))

    def do_read(self, data: st.DataObject) -> None:
        path = self.draw_path(data, "file")

        def run(root: Path) -> bytes:
            fd = os.open(root / path, os.O_RDONLY)
            try:
                return read_all(fd)
            finally:
                os.close(fd)

        self.both(f"read {path}", run)

    def do_rename(self, data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(["file", "dir"]), label="kind")
        old = self.draw_path(data, kind)
        new = self.draw_path(data, data.draw(st.sampled_from(["new", kind]), label="onto"))
        self.both(f"rename {old} -> {new}", lambda root: os.rename(root / old, root / new))

    def do_unlink(self, data: st.DataObject) -> None:
        path = self.draw_path(data, "file")
        self.both(f"unlink {path}", lambda root: os.unlink(root / path))

    def do_mkdir(self, data: st.DataObject) -> None:
        path = self.draw_path(data, "new")
        self.both(f"mkdir {path}", lambda root: os.mkdir(root / path))

    def do_rmdir(self, data: st.DataObject) -> None:
        path = self.draw_path(data, "dir")
        self.both(f"rmdir {path}", lambda root: os.rmdir(root / path))

    def do_sync(self, data: st.DataObject) -> None:
        """fsync every file: every pending upload is then on B2, and the next operations
        work on files B2 holds (server-side copies, ranges filled from B2)."""
        _, files = self._local_paths()

        def run(root: Path) -> None:
            for path in files:
                fd = os.open(root / path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

        self.both(f"sync {len(files)} files", run)

    def do_open(self, data: st.DataObject) -> None:
        path = self.draw_path(data, "file")
        flags = data.draw(OPEN_FLAGS, label="flags")
        opened: list[int] = []
        errors: list[str] = []
        for root in self.roots:
            try:
                opened.append(os.open(root / path, flags, 0o644))
            except OSError as exc:
                errors.append(errno.errorcode.get(exc.errno or 0, str(exc.errno)))
        try:
            assert len(opened) in (0, 2), f"open {path} {flags:o}: only one side opened {errors}"
            assert len(set(errors)) <= 1, f"open {path} {flags:o}: errors differ {errors}"
        except AssertionError:
            for fd in opened:
                os.close(fd)
            raise
        event(f"open: {errors[0] if errors else 'ok'}")
        if opened:
            self.fds.append((opened[0], opened[1], f"{path} with flags {flags:o}"))

    def _draw_fd(self, data: st.DataObject) -> int:
        return data.draw(st.integers(0, len(self.fds) - 1), label="descriptor")

    def do_pwrite(self, data: st.DataObject) -> None:
        index = self._draw_fd(data)
        offset = data.draw(OFFSETS, label="offset")
        content = data.draw(DATA, label="content")
        self.both_fds(
            f"pwrite at {offset} ({len(content)} bytes)",
            index,
            lambda fd: os.pwrite(fd, content, offset),
        )

    def do_pread(self, data: st.DataObject) -> None:
        index = self._draw_fd(data)
        self.both_fds("fstat and pread", index, lambda fd: (os.fstat(fd).st_size, read_all(fd)))

    def do_ftruncate(self, data: st.DataObject) -> None:
        index = self._draw_fd(data)
        size = data.draw(SIZES, label="size")
        self.both_fds(f"ftruncate to {size}", index, lambda fd: os.ftruncate(fd, size))

    def do_fsync(self, data: st.DataObject) -> None:
        self.both_fds("fsync", self._draw_fd(data), os.fsync)

    def do_close(self, data: st.DataObject) -> None:
        local_fd, mount_fd, _ = self.fds.pop(self._draw_fd(data))
        os.close(local_fd)
        os.close(mount_fd)

    # -- remounting ------------------------------------------------------------------------

    @precondition(lambda self: self.remounts < 1 and self.steps >= 8)
    @rule(empty_cache=st.booleans())
    def remount(self, empty_cache: bool) -> None:
        """`b2fs unmount` (every pending upload reaches B2), then mount again, with the same
        cache directory or an empty one."""
        assert self.mount is not None
        self.remounts += 1
        self._close_fds()
        self.mount.unmount()
        if empty_cache:
            fresh = self.tmp / f"cache-{self.case}-fresh"
            shutil.rmtree(fresh, ignore_errors=True)
            self.mount = self.mounter.mount(
                self.bucket, options=self.options, mountpoint=self.mount.path, cache_dir=fresh
            )
        else:
            self.mount = self.mounter.remount(self.mount, options=self.options)

    # -- after every step ------------------------------------------------------------------

    @invariant()
    def same_trees(self) -> None:
        if self.mount is None:
            return
        self.steps += 1
        local, mounted = (tree(root) for root in self.roots)
        if local != mounted:
            differing = sorted(
                name for name in set(local) | set(mounted) if local.get(name) != mounted.get(name)
            )
            details = [
                f"{name}: local {describe(local.get(name))} mount {describe(mounted.get(name))}"
                for name in differing
            ]
            raise AssertionError("trees differ:\n" + "\n".join(details))


# Hypothesis shrinks a failure for up to five minutes (each try mounts): leave it that time,
# so that a failure reports its smallest example rather than a timeout.
@pytest.mark.timeout(900)
def test_mount_behaves_like_a_local_directory(b2: B2View, mounter: Mounter, tmp_path: Path) -> None:
    MountVersusLocal.mounter = mounter
    MountVersusLocal.b2 = b2
    MountVersusLocal.tmp = tmp_path
    run_state_machine_as_test(
        MountVersusLocal,
        settings=settings(
            max_examples=int(os.environ.get("B2FS_MODEL_EXAMPLES", "15")),
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )


def test_removing_a_file_whose_upload_b2_stored_but_not_yet_answered(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> None:
    """Found by the model (a name came back after a remount): a file unlinked or renamed while
    B2 had stored its upload but not yet answered cut the upload off, and b2fs assumed B2
    never had it. The emulator here answers every request 0.3 s late, and each removal below
    comes once B2 holds the upload: afterwards B2 holds only the renamed file's new name."""
    emulator = emulator_factory(latency_ms=300)
    b2 = B2View(emulator)
    bucket_id = b2.create_bucket("slow-bucket")
    mounter = Mounter(emulator, tmp_path)
    try:
        mount = mounter.mount("slow-bucket", options=["writeback_delay=0", "unlink=delete"])

        def stored(name: str) -> None:  # on B2, the answer still on its way
            deadline = time.monotonic() + 30
            while emulator.app.store.latest_version(bucket_id, name) is None:
                assert time.monotonic() < deadline, f"{name} never reached B2"
                time.sleep(0.01)

        (mount.path / "removed").write_bytes(b"gone")
        stored("removed")
        (mount.path / "removed").unlink()
        (mount.path / "temp").write_bytes(b"renamed")
        stored("temp")
        (mount.path / "temp").rename(mount.path / "final")
        assert os.listdir(mount.path) == ["final"]
        mount.unmount()
        assert set(b2.names(bucket="slow-bucket")) == {"final"}
        assert b2.read("final", bucket="slow-bucket") == b"renamed"
    finally:
        problems = mounter.cleanup()
    assert not problems, "\n".join(problems)
