"""Tier 4: what another client's changes look like through a mount, and how the key shapes it.

What a user relies on: a change made through one mount (or by any other B2 client) shows up in
another mount of the same bucket within the metadata time-outs; a file that another client
removes or replaces while it is open keeps reading the version that was opened; a key limited
to a bucket and a name prefix shows exactly that; a key that may not write mounts read-only
and says so; with no bucket given, mkdir and rmdir at the root create and delete buckets, with
the errors the issue lists.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable

import pytest

from b2fs.b2.client import B2Client
from b2fs.emulator import Emulator
from filesystem.conftest import BUCKET, B2View
from filesystem.mounting import Mounter, client_call
from filesystem.waiting import wait_until

MiB = 1 << 20
SHORT_TTL = ["dir_timeout=1", "attr_timeout=1", "writeback_delay=0"]
READ = ["listBuckets", "listFiles", "readFiles"]
WRITE = [*READ, "writeFiles", "deleteFiles"]


def _make_key(
    emulator: Emulator,
    register: Callable[[str], None],
    capabilities: Iterable[str],
    *,
    bucket_id: str | None = None,
    name_prefix: str | None = None,
) -> tuple[str, str]:
    async def create(client: B2Client) -> tuple[str, str]:
        key = await client.create_key(
            "test-key", list(capabilities), bucket_id=bucket_id, name_prefix=name_prefix
        )
        return key.application_key_id, key.application_key

    key_id, secret = client_call(emulator, create)  # type: ignore[misc]
    register(secret)
    return key_id, secret


def _errno_of(action: Callable[[], object]) -> int:
    with pytest.raises(OSError) as raised:
        action()
    return raised.value.errno or 0


def _buckets(emulator: Emulator) -> dict[str, str]:
    async def fetch(client: B2Client) -> dict[str, str]:
        return {b.bucket_name: b.bucket_type for b in await client.list_buckets()}

    return client_call(emulator, fetch)  # type: ignore[return-value]


def test_changes_through_one_mount_appear_in_another_after_the_ttl(
    b2: B2View, mounter: Mounter
) -> None:
    b2.upload("kept.txt", b"kept")
    one = mounter.mount(BUCKET, options=SHORT_TTL)
    two = mounter.mount(BUCKET, options=SHORT_TTL)
    assert os.listdir(two.path) == ["kept.txt"]  # two has listed (and cached) the bucket

    (one.path / "new.txt").write_bytes(b"version 1")
    wait_until(lambda: (two.path / "new.txt").read_bytes() == b"version 1", what="the create")

    (one.path / "new.txt").write_bytes(b"version 2")  # same size: only the content differs
    wait_until(lambda: (two.path / "new.txt").read_bytes() == b"version 2", what="the overwrite")

    (one.path / "new.txt").rename(one.path / "renamed.txt")
    wait_until(
        lambda: sorted(os.listdir(two.path)) == ["kept.txt", "renamed.txt"], what="the rename"
    )
    assert (two.path / "renamed.txt").read_bytes() == b"version 2"

    (one.path / "renamed.txt").unlink()
    wait_until(lambda: os.listdir(two.path) == ["kept.txt"], what="the delete")
    wait_until(lambda: not (two.path / "renamed.txt").exists(), what="its cached entry to go")

    (two.path / "kept.txt").unlink()  # and the other way round
    wait_until(lambda: os.listdir(one.path) == [], what="the delete through the other mount")


def test_a_file_removed_or_replaced_by_another_client_keeps_reading_its_open_version(
    b2: B2View, mounter: Mounter
) -> None:
    old_removed = os.urandom(4 * MiB)
    old_replaced = os.urandom(4 * MiB)
    b2.upload("removed.bin", old_removed)
    b2.upload("replaced.bin", old_replaced)
    # No prefetch: what is read after the change is downloaded after it, by the pinned id.
    mount = mounter.mount(BUCKET, options=[*SHORT_TTL, "readahead=0"])
    with (
        open(mount.path / "removed.bin", "rb") as removed,
        open(mount.path / "replaced.bin", "rb") as replaced,
    ):
        head_removed, head_replaced = removed.read(65536), replaced.read(65536)
        b2.hide("removed.bin")
        new = os.urandom(4 * MiB)
        b2.upload("replaced.bin", new)
        wait_until(lambda: not (mount.path / "removed.bin").exists(), what="the removal")
        wait_until(lambda: (mount.path / "replaced.bin").read_bytes() == new, what="the new one")
        assert head_removed + removed.read() == old_removed
        assert head_replaced + replaced.read() == old_replaced


def test_a_key_limited_to_a_bucket_and_a_prefix_shows_only_that(
    b2: B2View, mounter: Mounter, emulator: Emulator, secret_registry: Callable[[str], None]
) -> None:
    b2.create_bucket("other-bucket")
    b2.upload("elsewhere.txt", b"not visible", bucket="other-bucket")
    b2.upload("secret.txt", b"not visible")
    b2.upload("otherdir/x", b"not visible")
    b2.upload("team/a.txt", b"team file")
    b2.upload("team/sub/b.txt", b"deeper")
    key_id, key = _make_key(
        emulator, secret_registry, WRITE, bucket_id=b2.bucket_id(), name_prefix="team/"
    )

    everything = mounter.mount("", key_id=key_id, key=key, options=SHORT_TTL)
    assert os.listdir(everything.path) == [BUCKET]
    top = everything.path / BUCKET
    assert os.listdir(top) == ["team"]
    assert sorted(os.listdir(top / "team")) == ["a.txt", "sub"]
    assert (top / "team" / "sub" / "b.txt").read_bytes() == b"deeper"
    assert _errno_of(lambda: (top / "secret.txt").read_bytes()) == errno.ENOENT
    (top / "team" / "new.txt").write_bytes(b"written through the scoped key")
    assert _errno_of(lambda: (top / "outside.txt").write_bytes(b"x")) == errno.EACCES
    everything.unmount()
    assert b2.read("team/new.txt") == b"written through the scoped key"
    assert "outside.txt" not in b2.names()

    one_bucket = mounter.mount(BUCKET, key_id=key_id, key=key)
    assert os.listdir(one_bucket.path) == ["team"]
    assert sorted(os.listdir(one_bucket.path / "team")) == ["a.txt", "new.txt", "sub"]


def test_a_key_without_write_files_mounts_read_only_and_says_so(
    b2: B2View, mounter: Mounter, emulator: Emulator, secret_registry: Callable[[str], None]
) -> None:
    b2.upload("f.txt", b"readable")
    key_id, key = _make_key(emulator, secret_registry, READ)
    mount = mounter.mount(BUCKET, key_id=key_id, key=key)
    assert "read-only" in mount.log_text
    assert (mount.path / "f.txt").read_bytes() == b"readable"
    assert _errno_of(lambda: (mount.path / "g.txt").write_bytes(b"x")) == errno.EROFS
    assert _errno_of(lambda: (mount.path / "f.txt").write_bytes(b"x")) == errno.EROFS
    assert _errno_of(lambda: (mount.path / "d").mkdir()) == errno.EROFS
    assert _errno_of(lambda: (mount.path / "f.txt").unlink()) == errno.EROFS
    assert b2.read("f.txt") == b"readable"


def test_mkdir_and_rmdir_at_the_root_create_and_delete_buckets(
    b2: B2View, mounter: Mounter, emulator: Emulator, secret_registry: Callable[[str], None]
) -> None:
    b2.upload("f.txt", b"1")
    # Listings trusted for long: a bucket made by someone else is not seen by the mount.
    mount = mounter.mount("", options=["dir_timeout=600"])
    root = mount.path
    assert os.listdir(root) == [BUCKET]

    (root / "new-bucket-1").mkdir()
    assert _buckets(emulator)["new-bucket-1"] == "allPrivate"
    assert sorted(os.listdir(root)) == ["new-bucket-1", BUCKET]
    (root / "new-bucket-1" / "file").write_bytes(b"in the new bucket")

    assert _errno_of(lambda: (root / BUCKET).mkdir()) == errno.EEXIST
    b2.create_bucket("taken-elsewhere")  # the mount's listing does not know it yet
    assert _errno_of(lambda: (root / "taken-elsewhere").mkdir()) == errno.EEXIST
    for bad in ("ab", "bad_name!", "b2-reserved", "x" * 64):
        assert _errno_of(lambda bad=bad: (root / bad).mkdir()) == errno.EINVAL, bad
    assert _errno_of(lambda: (root / BUCKET).rmdir()) == errno.ENOTEMPTY
    assert _errno_of(lambda: (root / "new-bucket-1").rmdir()) == errno.ENOTEMPTY

    (root / "new-bucket-2").mkdir()
    (root / "new-bucket-2").rmdir()
    assert "new-bucket-2" not in _buckets(emulator)
    assert sorted(os.listdir(root)) == ["new-bucket-1", BUCKET]
    mount.unmount()

    key_id, key = _make_key(emulator, secret_registry, WRITE)  # no writeBuckets/deleteBuckets
    limited = mounter.mount("", key_id=key_id, key=key)
    assert _errno_of(lambda: (limited.path / "mine-now").mkdir()) == errno.EACCES
    assert _errno_of(lambda: (limited.path / "taken-elsewhere").rmdir()) == errno.EACCES
    assert set(_buckets(emulator)) == {BUCKET, "new-bucket-1", "taken-elsewhere"}
