"""The daemon's log at --debug: one line per B2 request with its timing, and never a secret."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from filesystem.mounting import Mount, Mounter, is_mounted, run_b2fs
from filesystem.waiting import wait_until

from b2fs.emulator import Emulator
from service.conftest import BUCKET, B2View


def test_debug_log_has_every_request_with_its_timing_and_no_secret(
    b2: B2View, emulator: Emulator, mounter: Mounter, tmp_path: Path
) -> None:
    b2.upload("old.txt", b"from before")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    cache = tmp_path / "cache"
    env = mounter.env()
    mount = Mount(mountpoint, cache, env, BUCKET)
    mounter.mounts.append(mount)
    options = "writeback_delay=0,large_file_threshold=10M,part_size=5M"
    args = ["mount", BUCKET, str(mountpoint), "--cache-dir", str(cache), "--debug"]
    run_b2fs([*args, "-o", options], env)
    assert is_mounted(mountpoint)
    # Every kind of request: listings, a download, small and large uploads (with their
    # upload URLs and tokens), a copy (rename), a hide (unlink), a failure and its retry,
    # and a re-authorization after the account token expired.
    assert (mountpoint / "old.txt").read_bytes() == b"from before"
    (mountpoint / "small.txt").write_bytes(b"small")
    large = os.urandom(12 << 20)
    emulator.faults.script("b2_upload_part", "503", count=1)
    (mountpoint / "large.bin").write_bytes(large)
    (mountpoint / "old.txt").rename(mountpoint / "renamed.txt")
    emulator.expire_tokens()
    (mountpoint / "renamed.txt").unlink()
    with open(mountpoint / "small.txt", "rb+") as f:
        f.write(b"S")
        os.fsync(f.fileno())
    wait_until(lambda: "large.bin" in b2.names(), timeout=60, what="the large upload")
    status = mount.b2fs("status", "--json", str(mountpoint)).stdout
    assert json.loads(status)["b2"]["reauthorizations"] >= 1
    mount.unmount()
    assert b2.read("large.bin") == large and b2.read("small.txt") == b"Small"

    log = mount.log_text
    for endpoint in (
        "b2_authorize_account",
        "b2_list_buckets",
        "b2_list_file_names",
        "b2_download_file_by_id",
        "b2_get_upload_url",
        "b2_upload_file",
        "b2_start_large_file",
        "b2_get_upload_part_url",
        "b2_upload_part",
        "b2_finish_large_file",
        "b2_copy_file",
        "b2_hide_file",
    ):
        assert re.search(
            rf"DEBUG b2fs\.b2\.transport: \w+ {endpoint} -> \d{{3}} in [\d.]+ ms", log
        ), endpoint
    assert re.search(r"b2_upload_part -> 503 in [\d.]+ ms", log)
    assert "retrying in" in log and "re-authorizing" in log
    secrets = emulator.secrets()
    assert len(secrets) > 10  # the key, account token(s), upload tokens, download tokens
    leaked = sorted(s[:6] for s in secrets if len(s) >= 12 and (s in log or s in status))
    assert not leaked, f"secrets in the daemon's log or status, starting {leaked}"
