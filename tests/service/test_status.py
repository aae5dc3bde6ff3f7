"""`b2fs status`, the Prometheus endpoint, and the control socket's owner check."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from filesystem.mounting import Mount, Mounter, is_mounted, run_b2fs
from filesystem.waiting import wait_until

from b2fs.commands.status import request
from b2fs.emulator import Emulator
from b2fs.service.control import socket_path
from service.conftest import BUCKET, B2View

NOBODY = 65534


def metrics_samples(address: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_status_shows_upload_progress_cache_requests_errors_and_metrics_agree(
    b2: B2View, emulator: Emulator, mounter: Mounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.config.bandwidth_mbps = 24  # 3 MB/s: an upload takes long enough to watch
    photo = os.urandom(2_000_000)
    b2.upload("photo.jpg", photo)
    emulator.faults.script("b2_upload_file", "503", count=1)  # one error, one retry
    mount = mounter.mount(BUCKET, options=["writeback_delay=0", "metrics=127.0.0.1:0"])
    monkeypatch.setenv("XDG_RUNTIME_DIR", mount.env["XDG_RUNTIME_DIR"])  # for request()
    data = os.urandom(6_000_000)
    (mount.path / "video.bin").write_bytes(data)

    def in_flight() -> dict[str, Any] | None:
        # ``sent`` counts the bytes handed to the connection: the kernel's socket buffers on
        # loopback can take all 6 MB at once and then feed the 3 MB/s emulator for seconds,
        # so "under way" may show every byte sent (seen in 2 of 13 runs); what it must show
        # is an upload under way that has sent something, never more than the file.
        status = request(mount.path, {"command": "status"})
        entry = status["pending"][0] if status["pending"] else None
        if entry and entry["uploading"] and 0 < entry["sent"] <= entry["size"]:
            return status
        return None

    status = wait_until(in_flight, timeout=60, what="an upload under way")
    entry = status["pending"][0]
    assert (entry["bucket"], entry["name"], entry["size"]) == (BUCKET, "video.bin", len(data))
    assert status["pending_files"] == 1 and status["pending_bytes"] == len(data)
    human = mount.b2fs("status", str(mount.path)).stdout
    assert re.search(rf"  {BUCKET}/video.bin  6.0 MB  (uploading \d+%|waiting)", human), human

    wait_until(
        lambda: request(mount.path, {"command": "status"})["pending_files"] == 0,
        timeout=60,
        what="the upload",
    )
    for _ in range(2):  # a download into the block cache, then a read from it
        with open(mount.path / "photo.jpg", "rb") as f:
            assert f.read() == photo
            # Out of the kernel's page cache: the next read reaches b2fs and its block cache.
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    status = json.loads(mount.b2fs("status", "--json", str(mount.path)).stdout)
    b2stats = status["b2"]
    assert b2stats["requests"]["b2_upload_file"] == 2
    assert b2stats["errors"] == {"b2_upload_file": 1}
    assert b2stats["errors_by_code"] == {"503 service_unavailable": 1}
    assert b2stats["retries"] == {"b2_upload_file": 1}
    assert b2stats["bytes_uploaded"] >= len(data)
    assert status["cache"]["hits"] >= 2 and status["cache"]["misses"] >= 2
    assert status["cache"]["used_bytes"] >= len(photo)
    assert status["downloads"]["bytes"] >= len(photo) and b2stats["bytes_downloaded"] >= len(photo)
    assert status["state"] == "serving" and status["read_only"] is False

    human = mount.b2fs("status", str(mount.path)).stdout
    assert "pending uploads: none" in human
    assert re.search(r"cache: .* hit ratio \d+%", human), human
    assert re.search(r"b2_upload_file +2  1 errors  1 retries", human), human
    assert "503 service_unavailable  1" in human

    samples = metrics_samples(status["metrics"])
    assert samples['b2fs_b2_requests_total{endpoint="b2_upload_file"}'] == 2
    assert samples['b2fs_b2_errors_by_code_total{status="503",code="service_unavailable"}'] == 1
    assert samples['b2fs_b2_retries_total{endpoint="b2_upload_file"}'] == 1
    assert samples["b2fs_b2_uploaded_bytes_total"] == b2stats["bytes_uploaded"]
    assert samples["b2fs_cache_hits_total"] == status["cache"]["hits"]
    assert samples["b2fs_pending_uploads"] == 0
    assert samples[f'b2fs_info{{version="0.1.0",source="{BUCKET}",mountpoint="{mount.path}"}}']
    for endpoint, count in status["b2"]["requests"].items():
        if endpoint not in ("b2_list_file_names", "b2_download_file_by_id"):  # idle mount
            assert samples[f'b2fs_b2_requests_total{{endpoint="{endpoint}"}}'] == count
    mount.unmount()


def test_a_metrics_port_in_use_fails_the_mount_in_one_line(b2: B2View, mounter: Mounter) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = mounter.mount(BUCKET, options=[f"metrics={port}"], expect_failure=True)
    error = failed.error  # type: ignore[attr-defined]
    assert error.strip() == (
        f"b2fs: metrics: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert not is_mounted(failed.path)


def as_nobody(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `b2fs ARGS` as another user (root can: setpriv)."""
    return subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            sys.executable,
            "-m",
            "b2fs",
            *args,
        ],
        env={**env, "HOME": "/"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


def test_the_control_socket_refuses_another_user(
    b2: B2View, mounter: Mounter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runtime directory outside pytest's private temporary tree, so that opening its
    # door below lets the other user reach the socket.
    runtime = Path(tempfile.mkdtemp(prefix="b2fs-test-run-", dir="/tmp"))
    try:
        env = {**mounter.env(), "XDG_RUNTIME_DIR": str(runtime)}
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))  # for socket_path()
        mountpoint = tmp_path / "mnt"
        mountpoint.mkdir()
        mount = Mount(mountpoint, tmp_path / "cache", env, BUCKET)
        mounter.mounts.append(mount)
        # writeback_delay=1h: "pending" waits for the unmount.
        args = ["mount", BUCKET, str(mountpoint), "--cache-dir", str(mount.cache_dir)]
        run_b2fs([*args, "-o", "writeback_delay=1h"], env)
        (mountpoint / "pending").write_bytes(b"x")
        # Stopped at the door: the runtime directory (0700) and the socket (0600) are root's.
        for command in (["status", str(mountpoint)], ["unmount", str(mountpoint)]):
            refused = as_nobody(command, env)
            assert refused.returncode == 1
            assert refused.stderr.strip() == (
                f"b2fs: permission denied: the b2fs mount at {mountpoint} belongs to another "
                "user (its control socket answers only its owner and root)"
            )
        assert is_mounted(mountpoint)
        # With the door left open, the daemon still checks who is asking (SO_PEERCRED).
        path = socket_path(mountpoint)
        os.chmod(runtime, 0o755)
        os.chmod(path.parent, 0o755)
        os.chmod(path, 0o666)
        for command in (["status", str(mountpoint)], ["unmount", str(mountpoint)]):
            refused = as_nobody(command, env)
            assert refused.returncode == 1
            assert refused.stderr.strip() == "b2fs: permission denied"
            assert "pending" not in refused.stdout + refused.stderr
        assert is_mounted(mountpoint)
        assert "refused a control connection from uid 65534" in mount.log_text
        # Its owner is still welcome.
        status = json.loads(mount.b2fs("status", "--json", str(mountpoint)).stdout)
        assert status["pending_files"] == 1
        mount.unmount()
        assert b2.read("pending") == b"x"
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def test_status_of_a_directory_without_a_mount_says_so(mounter: Mounter, tmp_path: Path) -> None:
    result = run_b2fs(["status", str(tmp_path)], mounter.env(), check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"b2fs: no running b2fs mount at {tmp_path}"
