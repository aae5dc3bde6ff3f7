"""Issue 5: the versions directory and point-in-time mounts, on a real mount."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from filesystem.conftest import BUCKET, B2View
from filesystem.mounting import Mounter


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def version_entries(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_every_version_is_listed_with_its_content(b2: B2View, mounter: Mounter) -> None:
    mount = mounter.mount(BUCKET)
    root = mount.path
    (root / "docs").mkdir()
    contents = [b"first", b"second, longer", b"third"]
    for data in contents:
        (root / "docs" / "a.txt").write_bytes(data)
        with open(root / "docs" / "a.txt", "rb+") as f:
            os.fsync(f.fileno())  # each content is its own version on B2
    deleted = b2.upload("docs/a.txt", b"a version deleted by another client")
    b2.delete_version(deleted)  # gone from B2: gone from the history too
    (root / "docs" / "a.txt").unlink()  # hidden: a hide marker on top
    (root / "gone.bin").write_bytes(b"will be renamed")
    with open(root / "gone.bin", "rb+") as f:
        os.fsync(f.fileno())
    (root / "gone.bin").rename(root / "kept.bin")

    assert ".versions" not in os.listdir(root)  # not listed, so find and rsync skip it
    versions = root / ".versions"
    assert sorted(os.listdir(versions)) == ["docs", "gone.bin", "kept.bin"]
    assert os.listdir(versions / "docs") == ["a.txt"]
    entries = version_entries(versions / "docs" / "a.txt")
    assert len(entries) == 4
    # Entries sort by time: oldest first; the newest is the hide marker.
    assert entries[-1].endswith(".hidden")
    assert (versions / "docs" / "a.txt" / entries[-1]).stat().st_size == 0
    assert all(e.endswith(".txt") for e in entries[:3])
    on_b2 = [v for v in b2.versions("docs/a.txt") if v.action == "upload"]
    for entry, data in zip(entries[:3], contents, strict=True):
        path = versions / "docs" / "a.txt" / entry
        assert sha1(path.read_bytes()) == sha1(data)
        file_id = os.getxattr(path, "user.b2.file_id").decode()
        assert file_id in {v.file_id for v in on_b2}
        assert os.getxattr(path, "user.b2.content_sha1").decode() == sha1(data)
        assert os.getxattr(path, "user.b2.action") == b"upload"
        stamp = int(os.getxattr(path, "user.b2.upload_timestamp"))
        assert path.stat().st_mtime_ns == stamp * 1_000_000  # mtime is the upload time
    hide = versions / "docs" / "a.txt" / entries[-1]
    assert os.getxattr(hide, "user.b2.action") == b"hide"
    # A renamed file: its old name keeps its history (hidden), the new name has the copy.
    assert [e.endswith(".hidden") for e in version_entries(versions / "gone.bin")] == [False, True]
    (kept,) = version_entries(versions / "kept.bin")
    assert (versions / "kept.bin" / kept).read_bytes() == b"will be renamed"


def test_restore_by_copy_and_unhide(b2: B2View, mounter: Mounter) -> None:
    b2.upload("report.txt", b"good version")
    b2.upload("report.txt", b"broken version")
    b2.upload("hidden.txt", b"please come back")
    b2.hide("hidden.txt")
    mount = mounter.mount(BUCKET)
    history = mount.path / ".versions" / "report.txt"
    oldest = version_entries(history)[0]
    shutil.copyfile(history / oldest, mount.path / "report.txt")
    assert (mount.path / "report.txt").read_bytes() == b"good version"

    assert not (mount.path / "hidden.txt").exists()
    (marker,) = [
        e for e in version_entries(mount.path / ".versions" / "hidden.txt") if e.endswith(".hidden")
    ]
    (mount.path / ".versions" / "hidden.txt" / marker).unlink()  # unhide
    assert (mount.path / "hidden.txt").read_bytes() == b"please come back"
    mount.unmount()
    assert b2.read("report.txt") == b"good version"
    assert b2.read("hidden.txt") == b"please come back"


def test_the_versions_directory_is_read_only(b2: B2View, mounter: Mounter) -> None:
    b2.upload("d/f", b"1")
    mount = mounter.mount(BUCKET)
    versions = mount.path / ".versions"
    (entry,) = version_entries(versions / "d" / "f")
    attempts = [
        lambda: (versions / "new").write_bytes(b"x"),
        lambda: (versions / "d" / "newdir").mkdir(),
        lambda: (versions / "d" / "f" / entry).unlink(),  # not a hide marker
        lambda: (versions / "d" / "f" / entry).write_bytes(b"x"),
        lambda: (versions / "d" / "f" / entry).rename(versions / "d" / "f" / "x"),
        lambda: (versions / "d" / "f").rename(mount.path / "elsewhere"),
        lambda: os.chmod(versions / "d" / "f" / entry, 0o600),
        lambda: (versions / "d").rmdir(),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as raised:
            attempt()
        assert raised.value.errno == errno.EROFS
    assert [v.file_name for v in b2.versions()] == ["d/f"]


def test_listing_versions_costs_one_call_per_directory(b2: B2View, mounter: Mounter) -> None:
    for i in range(20):
        for j in range(3):
            b2.upload(f"many/f{i:02d}.txt", f"{i}-{j}".encode())
    mount = mounter.mount(BUCKET)
    before = b2.calls().get("b2_list_file_versions", 0)
    many = mount.path / ".versions" / "many"
    counts = {name: len(os.listdir(many / name)) for name in os.listdir(many)}
    assert counts == {f"f{i:02d}.txt": 3 for i in range(20)}
    after = b2.calls().get("b2_list_file_versions", 0)
    assert after - before == 2  # the versions root, then "many/" (which fills every file)
    # One file's versions looked up on its own: one listing of that name.
    mount2 = mounter.mount(BUCKET)
    before = b2.calls().get("b2_list_file_versions", 0)
    assert len(os.listdir(mount2.path / ".versions" / "many" / "f07.txt")) == 3
    assert b2.calls().get("b2_list_file_versions", 0) - before <= 3


def test_versions_dir_option(b2: B2View, mounter: Mounter) -> None:
    b2.upload("f", b"1")
    mount = mounter.mount(BUCKET, options=["versions_dir=.history"])
    assert os.listdir(mount.path / ".history") == ["f"]
    assert not (mount.path / ".versions").exists()
    off = mounter.mount(BUCKET, options=["versions_dir=none"])
    assert not (off.path / ".versions").exists()


def test_find_and_rsync_of_the_mount_skip_versions(
    b2: B2View, mounter: Mounter, tmp_path: Path
) -> None:
    b2.upload("a/b", b"1")
    b2.upload("a/b", b"2")
    mount = mounter.mount(BUCKET)
    found = subprocess.run(["find", str(mount.path)], capture_output=True, text=True, check=True)
    assert ".versions" not in found.stdout
    subprocess.run(["rsync", "-a", f"{mount.path}/", str(tmp_path / "copy")], check=True)
    assert sorted(p.name for p in (tmp_path / "copy").rglob("*")) == ["a", "b"]


def test_point_in_time_mount(b2: B2View, mounter: Mounter) -> None:
    changes = [
        (b2.upload("doc.txt", b"one").upload_timestamp, {"doc.txt": b"one"}),
        (
            b2.upload("sub/other.txt", b"other").upload_timestamp,
            {"doc.txt": b"one", "sub/other.txt": b"other"},
        ),
        (
            b2.upload("doc.txt", b"two").upload_timestamp,
            {"doc.txt": b"two", "sub/other.txt": b"other"},
        ),
    ]
    b2.hide("sub/other.txt")
    hide = next(v for v in b2.versions("sub/other.txt") if v.action == "hide")
    changes.append((hide.upload_timestamp, {"doc.txt": b"two"}))
    b2.upload("late.txt", b"late")  # after every moment below: never shown
    moments = [(changes[0][0] - 1, {})]
    for (stamp, state), following in zip(changes, [*changes[1:], (None, None)], strict=True):
        if stamp != following[0]:  # two changes in one millisecond: only the later is a state
            moments.append((stamp, state))
    for moment, expected in moments:
        mount = mounter.mount(BUCKET, options=[f"version_at={moment}"])
        seen = {
            str(path.relative_to(mount.path)): path.read_bytes()
            for path in sorted(mount.path.rglob("*"))
            if path.is_file()
        }
        assert seen == expected, moment
        with pytest.raises(OSError) as raised:
            (mount.path / "new").write_bytes(b"x")
        assert raised.value.errno == errno.EROFS
        mount.unmount()
