"""Mounting from /etc/fstab: mount(8) finds the helper mount.fuse.b2fs and mounts for real.

mount(8) looks for `/sbin/mount.<type>`. The test links the helper there under a type of its
own (`fuse.b2fs<random>`: the helper does not care about the subtype it is called for), so
that it never replaces nor removes a helper someone installed, and concurrent runs never meet;
the mount then runs exactly as it would for a `fuse.b2fs` line.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from filesystem.mounting import Mount, Mounter, is_mounted

from b2fs.commands.mount_helper import translate
from b2fs.emulator import Emulator
from service.conftest import BIN, BUCKET, B2View


@pytest.fixture
def helper_type() -> Iterator[str]:
    """A mount type whose mount(8) helper is b2fs's, for the length of the test."""
    subtype = f"b2fs{uuid.uuid4().hex[:10]}"
    link = Path("/sbin") / f"mount.fuse.{subtype}"
    link.symlink_to(BIN / "mount.fuse.b2fs")
    try:
        yield f"fuse.{subtype}"
    finally:
        link.unlink()


def test_fstab_entry_mounts_through_the_helper(
    b2: B2View,
    emulator: Emulator,
    mounter: Mounter,
    tmp_path: Path,
    helper_type: str,
) -> None:
    b2.upload("docs/readme.txt", b"read me")
    b2.upload("elsewhere.txt", b"not under docs/")
    key_file = tmp_path / "b2.key"
    key_file.write_text(f"{emulator.master_key_id}:{emulator.master_key}\n")
    key_file.chmod(0o600)
    mountpoint = tmp_path / "docs"
    mountpoint.mkdir()
    cache = tmp_path / "cache"
    fstab = tmp_path / "fstab"
    fstab.write_text(
        f"# b2fs\n{BUCKET}/docs {mountpoint} {helper_type} "
        "_netdev,noauto,nofail,x-systemd.automount,x-systemd.idle-timeout=10min,"
        f"key_file={key_file},endpoint={emulator.url},cache_dir={cache},"
        "cache_size=64M,dir_timeout=2s 0 0\n"
    )
    # As a systemd .mount unit runs mount(8): no key or endpoint in the environment.
    env = {
        k: v for k, v in mounter.env().items() if not k.startswith(("B2_APPLICATION_KEY", "B2FS_"))
    }
    mount = Mount(mountpoint, cache, env, f"{BUCKET}/docs")
    mounter.mounts.append(mount)
    result = subprocess.run(
        ["mount", "-T", str(fstab), str(mountpoint)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert is_mounted(mountpoint)
    found = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE,SOURCE", str(mountpoint)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert found == ["fuse.b2fs", f"b2fs:{BUCKET}/docs"]
    assert os.listdir(mountpoint) == ["readme.txt"]
    assert (mountpoint / "readme.txt").read_bytes() == b"read me"
    (mountpoint / "new.txt").write_bytes(b"written through fstab")
    status = mount.b2fs("status", "--json", str(mountpoint)).stdout
    assert '"cache_size": 67108864' in status and '"dir_timeout": 2.0' in status
    mount.unmount()
    assert b2.read("docs/new.txt") == b"written through fstab"
    assert emulator.master_key not in mount.log_text


def test_helper_arguments_become_b2fs_mount_arguments() -> None:
    """The helper's translation of what mount(8) passes (see its module docstring)."""
    assert translate(
        [
            "b2fs:bkt/photos",
            "/mnt/p",
            "-o",
            "rw,_netdev,key_file=/etc/b2fs/p.key,cache_dir=/var/cache/b2fs/p,debug,ro",
            "-t",
            "fuse.b2fs",
        ]
    ) == [
        "mount",
        "bkt/photos",
        "/mnt/p",
        "--key-file",
        "/etc/b2fs/p.key",
        "--cache-dir",
        "/var/cache/b2fs/p",
        "--debug",
        "-o",
        "rw,_netdev,ro",
    ]
    assert translate(["b2fs:", "/mnt/all", "-o", "config=/etc/b2fs/all.toml"]) == [
        "mount",
        "",
        "/mnt/all",
        "--config",
        "/etc/b2fs/all.toml",
    ]
    assert translate(["bkt", "/mnt/b", "-f", "-o", "ro"]) is None  # mount -f: fake


def test_helper_refuses_a_bad_option_in_one_line(
    mounter: Mounter, tmp_path: Path, helper_type: str
) -> None:
    mountpoint = tmp_path / "m"
    mountpoint.mkdir()
    result = subprocess.run(
        ["mount", "-t", helper_type, "-o", "cache_sise=1G", BUCKET, str(mountpoint)],
        env=mounter.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "b2fs: -o: unknown mount option 'cache_sise'" in result.stderr
    assert not is_mounted(mountpoint)
