"""Tier 4: a real mount on the emulator, one behaviour per test."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from b2fs.emulator import Emulator
from filesystem.conftest import BUCKET, B2View
from filesystem.mounting import Mounter


def test_files_on_b2_are_listed_and_read(b2: B2View, mounter: Mounter) -> None:
    b2.upload("hello.txt", b"hello world\n", info={"src_last_modified_millis": "1600000000123"})
    b2.upload("dir/a.txt", b"aaa")
    mount = mounter.mount(BUCKET)
    assert sorted(os.listdir(mount.path)) == ["dir", "hello.txt"]
    assert (mount.path / "hello.txt").read_bytes() == b"hello world\n"
    st = (mount.path / "hello.txt").stat()
    assert st.st_size == 12
    assert st.st_mtime_ns == 1600000000123 * 1_000_000
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
    assert stat.S_ISDIR((mount.path / "dir").stat().st_mode)
    assert (mount.path / "dir" / "a.txt").read_bytes() == b"aaa"


def test_ls_l_costs_one_listing_per_directory_and_no_request_per_file(
    b2: B2View, mounter: Mounter
) -> None:
    for i in range(30):
        b2.upload(f"d/f{i:02d}", b"x" * i)
    mount = mounter.mount(BUCKET)
    before = b2.calls()
    sizes = {p.name: p.stat().st_size for p in (mount.path / "d").iterdir()}
    after = b2.calls()
    assert sizes == {f"f{i:02d}": i for i in range(30)}
    assert after.get("b2_get_file_info", 0) == before.get("b2_get_file_info", 0)
    listings = after.get("b2_list_file_names", 0) - before.get("b2_list_file_names", 0)
    assert listings == 2  # the root (to find d) and d itself


def test_written_and_closed_file_reaches_b2(b2: B2View, mounter: Mounter) -> None:
    mount = mounter.mount(BUCKET)
    (mount.path / "new.txt").write_bytes(b"fresh data")
    assert (mount.path / "new.txt").read_bytes() == b"fresh data"
    mount.unmount()
    assert b2.read("new.txt") == b"fresh data"
    info = b2.names()["new.txt"].file_info
    assert stat.S_IMODE(int(info["mode"])) == 0o644
    assert "src_last_modified_millis" in info


def test_fsync_returns_once_the_data_is_on_b2(b2: B2View, mounter: Mounter) -> None:
    mount = mounter.mount(BUCKET)
    with open(mount.path / "synced.bin", "wb") as f:
        f.write(b"durable" * 1000)
        f.flush()
        os.fsync(f.fileno())
        assert b2.read("synced.bin") == b"durable" * 1000
        f.write(b"more")
        f.flush()
        os.fsync(f.fileno())
        assert b2.read("synced.bin") == b"durable" * 1000 + b"more"


def test_mkdir_keeps_an_empty_directory_on_b2(b2: B2View, mounter: Mounter) -> None:
    mount = mounter.mount(BUCKET)
    (mount.path / "empty").mkdir()
    assert os.listdir(mount.path / "empty") == []
    mount.unmount()
    assert "empty/.bzEmpty" in b2.names()
    mount = mounter.remount(mount)
    assert os.listdir(mount.path) == ["empty"]
    assert os.listdir(mount.path / "empty") == []  # the marker never shows
    (mount.path / "empty" / "f").write_bytes(b"1")
    mount.unmount()
    assert set(b2.names()) == {"empty/f"}  # the marker went when content came


def test_rmdir(b2: B2View, mounter: Mounter) -> None:
    b2.upload("full/file", b"1")
    mount = mounter.mount(BUCKET)
    (mount.path / "gone").mkdir()
    with pytest.raises(OSError) as raised:
        (mount.path / "full").rmdir()
    assert raised.value.errno == errno.ENOTEMPTY
    (mount.path / "gone").rmdir()
    assert sorted(os.listdir(mount.path)) == ["full"]
    mount.unmount()
    assert set(b2.names()) == {"full/file"}


def test_directory_emptied_by_unlink_stays(b2: B2View, mounter: Mounter) -> None:
    b2.upload("d/only", b"1")
    mount = mounter.mount(BUCKET)
    (mount.path / "d" / "only").unlink()
    assert os.listdir(mount.path / "d") == []
    mount.unmount()
    mount = mounter.remount(mount)
    assert os.listdir(mount.path) == ["d"]


def test_unlink_hides_by_default_keeping_old_versions(b2: B2View, mounter: Mounter) -> None:
    b2.upload("f", b"v1")
    mount = mounter.mount(BUCKET)
    (mount.path / "f").unlink()
    assert not (mount.path / "f").exists()
    actions = [(v.file_name, str(v.action)) for v in b2.versions()]
    assert actions == [("f", "hide"), ("f", "upload")]


def test_unlink_delete_removes_every_version(b2: B2View, mounter: Mounter) -> None:
    b2.upload("f", b"v1")
    b2.upload("f", b"v2")
    b2.upload("g", b"keep")
    mount = mounter.mount(BUCKET, options=["unlink=delete"])
    (mount.path / "f").unlink()
    assert [v.file_name for v in b2.versions()] == ["g"]


def test_rename_is_a_server_side_copy(b2: B2View, mounter: Mounter) -> None:
    b2.upload("a.txt", b"content of a", info={"src_last_modified_millis": "1500000000000"})
    mount = mounter.mount(BUCKET)
    before = b2.calls()
    (mount.path / "a.txt").rename(mount.path / "b.txt")
    after = b2.calls()
    assert after.get("b2_copy_file", 0) - before.get("b2_copy_file", 0) == 1
    assert after.get("b2_download_file_by_id", 0) == before.get("b2_download_file_by_id", 0)
    assert os.listdir(mount.path) == ["b.txt"]
    assert (mount.path / "b.txt").read_bytes() == b"content of a"
    assert (mount.path / "b.txt").stat().st_mtime == 1500000000
    assert set(b2.names()) == {"b.txt"}


def test_rename_over_an_existing_file_replaces_it(b2: B2View, mounter: Mounter) -> None:
    b2.upload("old", b"old content")
    b2.upload("new", b"new content")
    mount = mounter.mount(BUCKET)
    (mount.path / "new").rename(mount.path / "old")
    assert os.listdir(mount.path) == ["old"]
    assert (mount.path / "old").read_bytes() == b"new content"
    assert b2.read("old") == b"new content"
    assert set(b2.names()) == {"old"}


def test_rename_of_a_pending_file_uploads_it_once_under_the_new_name(
    b2: B2View, mounter: Mounter
) -> None:
    mount = mounter.mount(BUCKET)
    (mount.path / "tmp").write_bytes(b"x" * 100)
    (mount.path / "tmp").rename(mount.path / "final")
    mount.unmount()
    assert set(b2.names()) == {"final"}
    assert b2.read("final") == b"x" * 100
    assert b2.calls().get("b2_copy_file", 0) == 0


def test_a_directory_bigger_than_one_readdir_batch_lists_every_name_once(
    b2: B2View, mounter: Mounter
) -> None:
    """b2fs answers a readdir in batches (fuse_ops.READDIR_BATCH) until the kernel's buffer is
    full: across batches and buffers, ls sees every name once, with its size."""
    mount = mounter.mount(BUCKET)
    (mount.path / "many").mkdir()
    for number in range(700):
        (mount.path / "many" / f"{number:04d}").write_bytes(b"x" * (number % 7))
    with os.scandir(mount.path / "many") as entries:
        listed = {entry.name: entry.stat().st_size for entry in entries}
    assert listed == {f"{number:04d}": number % 7 for number in range(700)}
    mount.unmount()
    assert len(b2.names("many/")) == 700


def test_rename_directory_moves_its_subtree(b2: B2View, mounter: Mounter) -> None:
    b2.upload("src/a", b"a")
    b2.upload("src/sub/b", b"b")
    mount = mounter.mount(BUCKET)
    (mount.path / "src" / "pending").write_bytes(b"p")
    (mount.path / "src").rename(mount.path / "dst")
    assert os.listdir(mount.path) == ["dst"]
    assert (mount.path / "dst" / "sub" / "b").read_bytes() == b"b"
    assert (mount.path / "dst" / "pending").read_bytes() == b"p"
    mount.unmount()
    assert set(b2.names()) == {"dst/a", "dst/sub/b", "dst/pending"}


def test_chmod_touch_chown_are_kept_in_file_info_without_download(
    b2: B2View, mounter: Mounter
) -> None:
    b2.upload("f", b"data")
    mount = mounter.mount(BUCKET)
    path = mount.path / "f"
    before = b2.calls()
    path.chmod(0o755)
    os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    os.chown(path, 1234, 5678)
    after = b2.calls()
    assert after.get("b2_download_file_by_id", 0) == before.get("b2_download_file_by_id", 0)
    assert after.get("b2_upload_file", 0) == before.get("b2_upload_file", 0)
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o755, 1234, 5678)
    assert st.st_mtime_ns == 1_700_000_000_000_000_000
    info = b2.names()["f"].file_info
    assert stat.S_IMODE(int(info["mode"])) == 0o755
    assert (info["uid"], info["gid"]) == ("1234", "5678")
    assert info["src_last_modified_millis"] == "1700000000000"
    mount.unmount()
    mount = mounter.remount(mount)
    st = (mount.path / "f").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o755, 1234, 5678)


def test_symlinks_hard_links_and_xattrs(b2: B2View, mounter: Mounter) -> None:
    b2.upload("target", b"t")
    mount = mounter.mount(BUCKET)
    (mount.path / "link").symlink_to("target")
    assert os.readlink(mount.path / "link") == "target"
    assert (mount.path / "link").read_bytes() == b"t"
    with pytest.raises(OSError) as raised:
        os.link(mount.path / "target", mount.path / "hard")
    assert raised.value.errno == errno.EPERM
    file_id = os.getxattr(mount.path / "target", "user.b2.file_id").decode()
    assert file_id == b2.names()["target"].file_id
    assert os.getxattr(mount.path / "target", "user.b2.content_sha1").decode() == (
        "8efd86fb78a56a5145ed7739dcb00c78581c5375"
    )
    with pytest.raises(OSError) as raised:
        os.setxattr(mount.path / "target", "user.b2.file_id", b"x")
    assert raised.value.errno == errno.EPERM
    mount.unmount()
    mount = mounter.remount(mount)
    assert os.readlink(mount.path / "link") == "target"
    assert stat.S_ISLNK((mount.path / "link").lstat().st_mode)


def test_ls_l_asks_for_acls_and_labels_once_not_for_every_file(
    b2: B2View, mounter: Mounter
) -> None:
    """GNU ls -l asks every file for its SELinux label and POSIX ACL (each ask a request to
    the daemon) unless the filesystem says the namespace is not supported: b2fs says so
    (ENOTSUP), and keeps ENODATA for an absent user. name."""
    for i in range(30):
        b2.upload(f"d/f{i:02d}", b"x")
    mount = mounter.mount(BUCKET)
    some = mount.path / "d" / "f00"
    for name in ("security.selinux", "system.posix_acl_access", "trusted.x"):
        with pytest.raises(OSError) as raised:
            os.getxattr(some, name)
        assert raised.value.errno == errno.ENOTSUP, name
    for name in ("user.other", "user.b2.no_such_field"):  # answered by fuse_ops, by the core
        with pytest.raises(OSError) as raised:
            os.getxattr(some, name)
        assert raised.value.errno == errno.ENODATA, name
    traced = subprocess.run(
        ["strace", "-f", "-c", "-e", "trace=getxattr,lgetxattr", "ls", "-l", str(some.parent)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert traced.stdout.count("\n") == 31  # "total" and 30 files
    total = [line for line in traced.stderr.splitlines() if line.endswith(" total")]
    calls = int(total[0].split()[3])
    assert calls <= 4, traced.stderr  # once per attribute, not 2 x 30


def test_bad_names_are_refused_before_any_upload(b2: B2View, mounter: Mounter) -> None:
    mount = mounter.mount(BUCKET)
    deep = mount.path
    for i in range(5):
        deep = deep / ("d" * 200 + str(i))
        deep.mkdir()
    with pytest.raises(OSError) as raised:
        (deep / ("x" * 100)).write_bytes(b"1")
    assert raised.value.errno == errno.ENAMETOOLONG
    with pytest.raises(OSError) as raised:
        (mount.path / "bad\x01name").write_bytes(b"1")
    assert raised.value.errno == errno.EINVAL


def test_names_that_cannot_be_files_are_skipped(b2: B2View, mounter: Mounter) -> None:
    b2.upload("a//b", b"1")
    b2.upload("trailing/", b"1")
    b2.upload("dot/./x", b"1")
    b2.upload("both", b"file")
    b2.upload("both/inner", b"in folder")
    b2.upload("fine", b"1")
    mount = mounter.mount(BUCKET)
    names = sorted(os.listdir(mount.path))
    assert "fine" in names and "both" in names
    assert (mount.path / "both").is_dir()  # a name that is both shows the folder
    assert (mount.path / "both" / "inner").read_bytes() == b"in folder"
    assert os.listdir(mount.path / "a") == []  # "a//b" has an empty component
    assert os.listdir(mount.path / "trailing") == []


def test_statfs_is_large_and_sane(b2: B2View, mounter: Mounter) -> None:
    mount = mounter.mount(BUCKET)
    st = os.statvfs(mount.path)
    assert st.f_blocks * st.f_frsize >= 1 << 40
    assert st.f_bavail > 0 and st.f_namemax >= 255


def test_truncate_append_and_random_writes(b2: B2View, mounter: Mounter) -> None:
    original = bytes(range(256)) * 40_000  # ~10 MB, several cache blocks
    b2.upload("big", original)
    mount = mounter.mount(BUCKET)
    path = mount.path / "big"
    expected = bytearray(original)
    with open(path, "r+b") as f:
        f.seek(5_000_000)
        f.write(b"MIDDLE")
        expected[5_000_000:5_000_006] = b"MIDDLE"
    with open(path, "ab") as f:
        f.write(b"TAIL")
        expected += b"TAIL"
    assert path.read_bytes() == bytes(expected)
    os.truncate(path, 3_000_001)
    del expected[3_000_001:]
    os.truncate(path, 3_000_100)
    expected += b"\0" * 99
    assert path.read_bytes() == bytes(expected)
    mount.unmount()
    assert b2.read("big") == bytes(expected)


def test_random_write_fetches_only_the_blocks_it_needs(b2: B2View, mounter: Mounter) -> None:
    b2.upload("big", os.urandom(8 << 20))
    mount = mounter.mount(BUCKET, options=["block_size=1M"])
    before = b2.calls().get("b2_download_file_by_id", 0)
    with open(mount.path / "big", "r+b") as f:
        f.seek(3 << 20)
        f.write(b"x")  # a partial block: that block, and only it, comes from B2
        f.seek(5 << 20)
        f.write(b"y" * (1 << 20))  # a whole block: nothing to fetch
        assert b2.calls().get("b2_download_file_by_id", 0) - before == 1
    mount.unmount()
    data = b2.read("big")
    assert data[3 << 20] == ord("x") and data[5 << 20 : 6 << 20] == b"y" * (1 << 20)


def test_large_file_is_uploaded_in_parts_while_written(b2: B2View, mounter: Mounter) -> None:
    mount = mounter.mount(BUCKET)
    data = os.urandom(40 << 20)
    with open(mount.path / "large.bin", "wb") as f:
        for offset in range(0, len(data), 1 << 20):
            f.write(data[offset : offset + (1 << 20)])
        f.flush()
        # Parts leave while the program is still writing.
        assert b2.calls().get("b2_upload_part", 0) >= 2
    mount.unmount()
    assert b2.read("large.bin") == data
    assert b2.unfinished() == []
    assert [v.file_name for v in b2.versions()] == ["large.bin"]


def test_unlinked_file_stays_usable_while_open(b2: B2View, mounter: Mounter) -> None:
    b2.upload("f", b"still here")
    mount = mounter.mount(BUCKET)
    with open(mount.path / "f", "r+b") as f:
        (mount.path / "f").unlink()
        assert not (mount.path / "f").exists()
        assert f.read() == b"still here"
        f.write(b"!")
        f.seek(0)
        assert f.read() == b"still here!"
    mount.unmount()
    assert "f" not in b2.names()


def test_unlink_delete_of_an_open_file_waits_for_its_close(b2: B2View, mounter: Mounter) -> None:
    b2.upload("f", b"pinned version")
    mount = mounter.mount(BUCKET, options=["unlink=delete"])
    with open(mount.path / "f", "rb") as f:
        (mount.path / "f").unlink()
        assert f.read() == b"pinned version"
    mount.unmount()
    assert b2.versions() == []


def test_read_only_mount(b2: B2View, mounter: Mounter) -> None:
    b2.upload("f", b"1")
    mount = mounter.mount(BUCKET, options=["ro"])
    assert (mount.path / "f").read_bytes() == b"1"
    with pytest.raises(OSError) as raised:
        (mount.path / "g").write_bytes(b"2")
    assert raised.value.errno == errno.EROFS


def test_mount_failures_say_why(b2: B2View, mounter: Mounter, tmp_path: Path) -> None:
    failed = mounter.mount("no-such-bucket", expect_failure=True)
    assert "no-such-bucket" in failed.error  # type: ignore[attr-defined]
    failed = mounter.mount(BUCKET, key="K" + "0" * 30, expect_failure=True)
    assert "refused" in failed.error  # type: ignore[attr-defined]
    failed = mounter.mount(BUCKET, mountpoint=tmp_path / "missing-dir", expect_failure=True)
    failed = mounter.mount(BUCKET, options=["cache_size=lots"], expect_failure=True)
    assert "cache_size" in failed.error  # type: ignore[attr-defined]


def test_the_block_cache_is_reused_after_a_remount(b2: B2View, mounter: Mounter) -> None:
    data = os.urandom(3 << 20)
    b2.upload("cached.bin", data)
    mount = mounter.mount(BUCKET)
    assert (mount.path / "cached.bin").read_bytes() == data
    mount.unmount()
    downloads = b2.calls().get("b2_download_file_by_id", 0)
    mount = mounter.remount(mount)  # same cache directory
    assert (mount.path / "cached.bin").read_bytes() == data
    assert b2.calls().get("b2_download_file_by_id", 0) == downloads  # served from disk


def test_unmount_returns_once_the_daemon_is_gone(
    b2: B2View, mounter: Mounter, emulator: Emulator
) -> None:
    """Downloads still in flight when the mount goes (a prefetch on a slow link) keep the
    daemon alive a little longer: b2fs unmount waits for it, so that removing or reusing
    the cache directory right after is safe."""
    b2.upload("big", bytes(16 << 20))
    emulator.config.bandwidth_mbps = 8  # 1 MB/s per connection, for the mount's connections
    mount = mounter.mount(BUCKET)
    with open(mount.path / "big", "rb") as reader:
        assert reader.read(1 << 20) == bytes(1 << 20)  # the prefetch window is under way
    mount.unmount()  # asserts that the daemon has exited
    shutil.rmtree(mount.cache_dir)  # nothing writes there any more
