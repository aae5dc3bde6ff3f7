"""The benchmark runner (``python -m benchmarks``) works end to end, and its verdicts are right.

No speed is asserted here: the runner runs in its tiny mode (one workload, b2fs and the
limit, unshaped), and the checks are about what it produces: the JSON with its fields, the
results section of a PERFORMANCE.md, and nothing left mounted or running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import report, targets
from benchmarks.dataset import LocalData, RemoteData
from benchmarks.results import Result
from benchmarks.settings import PROFILES, SCALES, Settings

ROOT = Path(__file__).resolve().parent.parent


def _mounts_under(root: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [p for p in (line.split()[4] for line in f) if p.startswith(f"{root}/")]


@pytest.mark.mount
@pytest.mark.slow
def test_tiny_run_writes_json_and_the_performance_section(tmp_path: Path) -> None:
    doc = tmp_path / "PERFORMANCE.md"
    doc.write_text("# Performance\n\nHand-written text that must stay.\n")
    results = tmp_path / "results"
    command = [sys.executable, "-m", "benchmarks", "--scale", "tiny", "--only", "1,2"]
    command += ["--systems", "b2fs,limit", "--profiles", "unshaped"]
    command += ["--results-dir", str(results), "--doc", str(doc), "--work-dir", str(tmp_path)]
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    assert "b2fs/limit" in done.stdout  # the table

    files = list(results.glob("*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    for key in ("machine", "settings", "results", "tables", "targets", "started", "elapsed_s"):
        assert key in data, key
    assert {"cpu", "cores", "ram_gib", "kernel"} <= set(data["machine"])
    measured = {(r["workload"], r["system"]) for r in data["results"]}
    assert measured == {(1, "b2fs"), (2, "b2fs"), (1, "limit")}
    for r in data["results"]:
        assert r["ok"], r["error"]
        assert r["seconds"] > 0 and r["mb_per_s"] > 0
        assert r["cpu_seconds"] is not None and r["cpu_seconds"] >= 0
        assert r["peak_rss_mib"] and r["peak_rss_mib"] > 0
    cold = next(r for r in data["results"] if r["workload"] == 1 and r["system"] == "b2fs")
    # Calls were counted by the emulator: the mount's and the downloads.
    assert cold["calls"].get("b2_authorize_account") == 1
    assert cold["calls"].get("b2_download_file_by_id", 0) >= 1
    assert cold["file_bytes_sent"] >= SCALES["tiny"].file_size
    row = data["tables"]["unshaped"][0]
    assert set(row) == {"workload", "b2fs", "rclone", "limit", "b2fs/limit", "b2fs/rclone"}
    assert {t["id"] for t in data["targets"]} >= {"1", "2", "3", "4", "5", "6", "7", "rss"}

    text = doc.read_text()
    assert "Hand-written text that must stay." in text
    assert report.BEGIN in text and report.END in text
    assert "| workload | b2fs | rclone | limit | b2fs/limit | b2fs/rclone |" in text
    assert "#### Targets" in text

    # Nothing left behind: no mount, no work directory (other runs may be going on: only
    # this one's directory is looked at).
    assert _mounts_under(tmp_path) == []
    assert not list(tmp_path.glob("b2fs-bench-*"))


def _result(workload: int, system: str, seconds: float, **fields: object) -> Result:
    r = Result("wan", workload, system, seconds=seconds, bytes=100_000_000, files=100)
    for key, value in fields.items():
        setattr(r, key, value)
    return r


def test_targets_say_met_and_missed_from_the_same_run() -> None:
    settings = Settings(SCALES["tiny"], [PROFILES["wan"]], [1, 4, 5, 6], ["b2fs", "limit"])
    local = LocalData(Path("s"), 1, Path("d"), {f"f{i}": 1 for i in range(100)}, Path("t"), {}, 0)
    remote = RemoteData("b", "f", 1, tree_folders=10, tree_files=1000)
    results = [
        _result(1, "b2fs", 1.0, peak_rss_bytes=300 << 20),
        _result(1, "limit", 1.1),
        _result(4, "b2fs", 2.0),
        _result(4, "limit", 1.0),
        _result(4, "rclone", 8.0),
        _result(5, "b2fs", 1.0, calls={"b2_upload_file": 100, "b2_get_upload_url": 3}),
        _result(5, "rclone-writes", 5.0),
        _result(5, "rclone", 6.0),
        _result(6, "b2fs", 1.0, calls={"b2_list_file_names": 20, "b2_authorize_account": 1}),
        _result(6, "rclone", 2.0),
    ]
    checked = {t.id: t for t in targets.check(results, settings, local, remote)}
    assert checked["1"].met is True  # 1.1 / 1.0 >= 0.8
    assert checked["4"].met is False  # half the limit, though 4x rclone
    assert "b2fs/limit = 0.50" in checked["4"].detail
    assert checked["5"].met is True  # 5x the better rclone (writes mode)
    assert "rclone-writes" in checked["5"].detail
    assert checked["6"].met is False  # 21 calls > 12 folders + 1 page + 2; only 2x rclone
    assert checked["3"].met is None  # not measured
    assert checked["rss"].met is False and "300.0 MiB" in checked["rss"].detail

    rows = report.table_rows(results, "wan", settings)
    assert rows[0][0].startswith("1.") and rows[0][4] == "1.10x"
    # Workload 5: the rclone column shows the better mode, and the ratio is against it.
    five = next(r for r in rows if r[0].startswith("5."))
    assert five[2].endswith("(writes)") and five[5] == "5.00x"


def _cached_bytes(path: Path) -> int:
    done = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout.split()[0])


def test_the_files_a_workload_copies_in_are_in_the_page_cache_before_it_runs(
    tmp_path: Path,
) -> None:
    """These machines page out files left alone for a minute: whichever system ran first
    would read its input from disk and the next from memory. The runner reads the inputs of
    workloads 4, 5, 7 and 8 right before each measurement (``workloads.warm_inputs``)."""
    from benchmarks import workloads

    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(4 << 20))
    small = tmp_path / "small"
    small.mkdir()
    for i in range(3):
        (small / f"f{i}").write_bytes(os.urandom(64 << 10))
    tar = tmp_path / "t.tar"
    tar.write_bytes(os.urandom(1 << 20))
    local = LocalData(source, 4 << 20, small, {f"f{i}": 64 << 10 for i in range(3)}, tar, {}, 0)
    ctx = workloads.Context.__new__(workloads.Context)
    ctx.local = local
    inputs = {4: [source], 8: [source], 5: sorted(small.iterdir()), 7: [tar]}
    for workload, paths in inputs.items():
        for path in paths:  # written files are clean once synced: then they can be dropped
            fd = os.open(path, os.O_RDONLY)
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
            assert _cached_bytes(path) < path.stat().st_size
        workloads.warm_inputs(ctx, workload)
        for path in paths:
            assert _cached_bytes(path) == path.stat().st_size


def test_a_finished_mounts_cache_is_set_aside_until_the_run_ends_unless_space_is_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting thousands of cache files slows the next measurement's file creation on these
    machines' journal-less ext4, whichever system it is: a finished mount's cache is moved
    into the work directory (removed with it at the end of the run), unless free space is
    short, then it is deleted at once. The mount point goes either way."""
    import shutil

    from benchmarks import systems

    mounter = systems.Mounter.__new__(systems.Mounter)
    mounter.work = tmp_path

    def finished_mount(name: str) -> tuple[Path, Path]:
        cache, mountpoint = tmp_path / f"cache-{name}", tmp_path / f"mnt-{name}"
        (cache / "blocks").mkdir(parents=True)
        (cache / "blocks" / "b1").write_bytes(b"x" * 100)
        mountpoint.mkdir()
        return cache, mountpoint

    real = shutil.disk_usage(tmp_path)
    room = {"free": systems.SET_ASIDE_MIN_FREE}
    monkeypatch.setattr(systems.shutil, "disk_usage", lambda path: real._replace(**room))
    for _ in range(2):  # the next profile's mounts have the same names
        cache, mountpoint = finished_mount("1")
        mounter._discard(cache, mountpoint)
        assert not cache.exists() and not mountpoint.exists()
    kept = sorted((tmp_path / "set-aside").glob("cache-1-*/cache/blocks/b1"))
    assert [path.read_bytes() for path in kept] == [b"x" * 100] * 2

    room["free"] = systems.SET_ASIDE_MIN_FREE - 1
    cache, mountpoint = finished_mount("2")
    mounter._discard(cache, mountpoint)
    assert not cache.exists() and not mountpoint.exists()
    assert not list((tmp_path / "set-aside").glob("cache-2*"))

    # A cache that cannot be moved aside is deleted: a clean-up never fails the run.
    room["free"] = systems.SET_ASIDE_MIN_FREE
    shutil.rmtree(tmp_path / "set-aside")
    (tmp_path / "set-aside").write_bytes(b"")  # not a directory: moving aside fails
    cache, mountpoint = finished_mount("3")
    mounter._discard(cache, mountpoint)
    assert not cache.exists() and not mountpoint.exists()
