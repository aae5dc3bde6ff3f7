"""rclone (Debian's 1.60, which speaks /b2api/v1/) as a client: needed by the benchmarks."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from b2fs.emulator import Emulator

RCLONE = shutil.which("rclone")


@pytest.fixture(autouse=True)
def _rclone_is_installed() -> None:
    """A missing rclone fails this test (never skips it): `make test` installs it."""
    assert RCLONE is not None, "rclone is missing: scripts/install-system-deps.sh installs it"


def test_rclone_copy_lsf_cat_check(emulator: Emulator, tmp_path: Path) -> None:
    conf = tmp_path / "rclone.conf"
    conf.write_text(
        f"[emu]\ntype = b2\naccount = {emulator.master_key_id}\n"
        f"key = {emulator.master_key}\nendpoint = {emulator.url}\n"
    )
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello rclone")
    (src / "big.bin").write_bytes(os.urandom(12_000_000))

    def rclone(*args: str) -> str:
        assert RCLONE is not None
        r = subprocess.run(
            [RCLONE, "--config", str(conf), *args], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, f"rclone {args[0]} failed: {r.stderr[-1500:]}"
        return r.stdout

    rclone("mkdir", "emu:rc-bucket")
    emulator.stats.reset()
    rclone(
        "copy", "--b2-upload-cutoff", "5M", "--b2-chunk-size", "5M", str(src), "emu:rc-bucket/dir/"
    )
    assert emulator.stats.calls().get("b2_upload_part", 0) >= 3  # big.bin went in parts
    assert sorted(rclone("lsf", "-R", "emu:rc-bucket").split()) == [
        "dir/",
        "dir/a.txt",
        "dir/big.bin",
    ]
    assert rclone("cat", "emu:rc-bucket/dir/a.txt") == "hello rclone"
    rclone("check", "--download", str(src), "emu:rc-bucket/dir/")
    out = tmp_path / "out"
    rclone("copy", "emu:rc-bucket/dir/", str(out))
    assert (out / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    rclone("delete", "emu:rc-bucket/dir/a.txt")
    assert sorted(rclone("lsf", "-R", "emu:rc-bucket").split()) == ["dir/", "dir/big.bin"]
