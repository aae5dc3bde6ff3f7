"""The workloads, through a mount (b2fs, rclone) and as the limit (b2fs's client, no FUSE).

Through a mount each workload runs ordinary programs (``dd``, ``cp -r``, ``ls -lR``, ``tar``,
``du``) or :mod:`benchmarks.randread`, and fills a :class:`~benchmarks.results.Result` with
its wall time, split into phases. The runner (``runner.py``) mounts, measures the daemon and
counts B2 calls around it.

"Until on B2" (workloads 4, 5, 7): the clock stops when the system says the data is durable
(b2fs: ``fsync`` returns for one file, ``b2fs unmount`` returns for many) *and* B2 has it.
The runner then lists the files on B2: if they are all there, the time is the system's; if
not (rclone returns from ``fsync`` and unmount before it uploads), it keeps listing every
0.2 s and the time is when the listing first showed every file with its size. Those listing
calls are the runner's and are taken out of the B2 call counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import procs
from benchmarks.dataset import BIG_NAME, TREE_PREFIX, LocalData, RemoteData
from benchmarks.emulator import Api, EmulatorProcess, Profile
from benchmarks.results import Result
from benchmarks.settings import Settings
from benchmarks.systems import Mounted, Mounter


@dataclass
class Context:
    settings: Settings
    profile: Profile
    emulator: EmulatorProcess
    api: Api
    mounter: Mounter
    local: LocalData
    remote: RemoteData
    work: Path

    @property
    def timeout(self) -> float:
        return self.settings.scale.timeout

    def name(self, workload: int, system: str) -> str:
        """A bucket-root name unique to this workload, profile and system."""
        return f"w{workload}-{self.profile.name}-{system}"


def _run(command: list[str], ctx: Context, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return procs.run(command, timeout=ctx.timeout, **kwargs)


def fsync_path(path: Path) -> None:
    """open, fsync, close: b2fs's fsync waits until the file is on B2, rclone's does not."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dd_read(path: Path, ctx: Context) -> int:
    """Read a file to /dev/null with 1 MiB reads; returns the bytes dd copied."""
    done = _run(["dd", f"if={path}", "of=/dev/null", "bs=1M"], ctx)
    last = done.stderr.strip().splitlines()[-1]
    return int(last.split()[0])


def until_on_b2(
    ctx: Context,
    mounted: Mounted,
    result: Result,
    prefix: str,
    expected: dict[str, int],
    t_start: float,
    t_signal: float,
) -> None:
    """Stop the clock at ``t_signal`` if B2 has every file by then, else when it first does."""
    first = ctx.api.list_names(ctx.remote.bucket_id, prefix)
    if all(first.get(prefix + name, {}).get("contentLength") == n for name, n in expected.items()):
        end = t_signal
    else:
        end = ctx.api.wait_for(ctx.remote.bucket_id, prefix, expected, timeout=ctx.timeout)
        result.phases["until on B2 (polled)"] = end - t_signal
    result.extra["on_b2_when_system_returned"] = end == t_signal
    result.seconds = end - t_start


# -- workloads 1 and 2: sequential read, cold then warm -----------------------------------------


def seq_read(ctx: Context, mounted: Mounted, result: Result) -> None:
    path = mounted.path / BIG_NAME
    t0 = time.perf_counter()
    got = dd_read(path, ctx)
    result.seconds = time.perf_counter() - t0
    result.phases["dd"] = result.seconds
    result.bytes, result.files = got, 1
    if got != ctx.remote.big_size:
        raise RuntimeError(f"read {got} bytes of {ctx.remote.big_size}")


# Workload 2 is the same read again on the same mount (see runner.py).
seq_read_warm = seq_read


# -- workload 3: random 4 KiB reads ---------------------------------------------------------


def random_read(ctx: Context, mounted: Mounted, result: Result) -> None:
    scale = ctx.settings.scale
    command = [sys.executable, "-m", "benchmarks.randread", str(mounted.path / BIG_NAME)]
    command += ["--size", str(ctx.remote.big_size), "--count", str(scale.random_reads)]
    command += ["--deadline", str(scale.random_deadline), "--verify", str(ctx.local.source)]
    done = _run(command, ctx, cwd=str(Path(__file__).resolve().parent.parent))
    report = json.loads(done.stdout)
    _random_result(report, result, scale.random_reads)


def _random_result(report: dict[str, Any], result: Result, asked: int) -> None:
    latencies = report["latencies_ms"]
    result.seconds = report["seconds"]
    result.phases["reads"] = report["seconds"]
    result.bytes, result.files = len(latencies) * 4096, 1
    result.extra["latencies_ms"] = latencies
    result.extra["reads_asked"] = asked
    result.extra["capped"] = len(latencies) < asked
    result.extra["mismatches"] = report["mismatches"]
    if report["mismatches"]:
        raise RuntimeError(f"{report['mismatches']} random reads returned wrong bytes")


# -- workload 4: sequential write ---------------------------------------------------------------


def seq_write(ctx: Context, mounted: Mounted, result: Result) -> None:
    name = ctx.name(4, mounted.system) + ".bin"
    target = mounted.path / name
    t0 = time.perf_counter()
    _run(["dd", f"if={ctx.local.source}", f"of={target}", "bs=1M"], ctx)
    t1 = time.perf_counter()
    fsync_path(target)
    t2 = time.perf_counter()
    result.phases.update({"dd (write, close)": t1 - t0, "fsync": t2 - t1})
    result.bytes, result.files = ctx.local.source_size, 1
    until_on_b2(ctx, mounted, result, "", {name: ctx.local.source_size}, t0, t2)


def warm_inputs(ctx: Context, workload: int) -> None:
    """Read the local files a workload copies in, so that every system finds them in the page
    cache. These machines page out what was not touched for about a minute (DAMON's reclaim,
    /sys/kernel/mm/damon), so whichever system ran first would also measure the local disk
    (512 MiB read at about 160 MB/s) and the next one would not."""
    local = ctx.local
    paths = {
        4: [local.source],
        8: [local.source],
        5: [local.small_dir / name for name in local.small_files],
        7: [local.tar],
    }.get(workload, [])
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass


# -- workload 5: many small files ---------------------------------------------------------------


def _flush_all(ctx: Context, mounted: Mounted, result: Result) -> float:
    """b2fs: ``b2fs unmount`` (waits for every upload). rclone: nothing to wait on."""
    t = time.perf_counter()
    if mounted.system == "b2fs":
        ctx.mounter.b2fs_unmount(mounted, ctx.timeout)
        result.phases["b2fs unmount (waits for uploads)"] = time.perf_counter() - t
    return time.perf_counter()


def small_files(ctx: Context, mounted: Mounted, result: Result) -> None:
    name = ctx.name(5, mounted.system)
    t0 = time.perf_counter()
    _run(["cp", "-r", str(ctx.local.small_dir), str(mounted.path / name)], ctx)
    t1 = time.perf_counter()
    result.phases["cp -r"] = t1 - t0
    t2 = _flush_all(ctx, mounted, result)
    result.files = len(ctx.local.small_files)
    result.bytes = sum(ctx.local.small_files.values())
    until_on_b2(ctx, mounted, result, name + "/", ctx.local.small_files, t0, t2)


# -- workload 6: ls -lR ---------------------------------------------------------------------------


def ls_lR(ctx: Context, mounted: Mounted, result: Result) -> None:
    t0 = time.perf_counter()
    done = _run(["ls", "-lR", str(mounted.path / TREE_PREFIX.rstrip("/"))], ctx)
    result.seconds = time.perf_counter() - t0
    result.phases["ls -lR"] = result.seconds
    files = sum(1 for line in done.stdout.splitlines() if line.startswith("-"))
    folders = sum(1 for line in done.stdout.splitlines() if line.startswith("d"))
    result.files = files
    result.extra.update({"files_listed": files, "folders_listed": folders})
    if files != ctx.remote.tree_files or folders != ctx.remote.tree_folders:
        raise RuntimeError(
            f"ls -lR showed {files} files in {folders} folders, expected "
            f"{ctx.remote.tree_files} in {ctx.remote.tree_folders}"
        )


# -- workload 7: extract a source tree, then du -s ------------------------------------------------


def untar_du(ctx: Context, mounted: Mounted, result: Result) -> None:
    target = mounted.path / ctx.name(7, mounted.system)
    t0 = time.perf_counter()
    target.mkdir()
    _run(["tar", "-xf", str(ctx.local.tar), "-C", str(target)], ctx)
    t1 = time.perf_counter()
    du = _run(["du", "-s", str(target)], ctx)
    t2 = time.perf_counter()
    result.phases.update({"mkdir + tar -x": t1 - t0, "du -s": t2 - t1})
    result.extra["du_s"] = du.stdout.split()[0]
    t3 = _flush_all(ctx, mounted, result)
    result.files = len(ctx.local.tar_files)
    result.bytes = sum(ctx.local.tar_files.values())
    result.extra["directories"] = ctx.local.tar_dirs
    prefix = ctx.name(7, mounted.system) + "/"
    until_on_b2(ctx, mounted, result, prefix, ctx.local.tar_files, t0, t3)


FUSE = {
    1: seq_read,
    2: seq_read_warm,
    3: random_read,
    4: seq_write,
    5: small_files,
    6: ls_lR,
    7: untar_du,
}


# -- the limit ------------------------------------------------------------------------------------


def limit_spec(ctx: Context, workload: int) -> dict[str, Any]:
    """What the limit process does for ``workload`` (see limit.py)."""
    options = ctx.settings.mount_options
    remote, local, scale = ctx.remote, ctx.local, ctx.settings.scale
    bucket = remote.bucket_id
    if workload == 1:
        return {
            "op": "read",
            "file_id": remote.big_file_id,
            "size": remote.big_size,
            "connections": options.download_concurrency,
        }
    if workload == 3:
        return {
            "op": "random",
            "file_id": remote.big_file_id,
            "size": remote.big_size,
            "count": scale.limit_random_reads,
            "seed": 7,
            "deadline": scale.random_deadline,
            "verify": str(local.source),
        }
    if workload == 4:
        return {
            "op": "write",
            "bucket_id": bucket,
            "name": ctx.name(4, "limit") + ".bin",
            "source": str(local.source),
            "part_size": options.part_size,
            "threshold": options.large_file_threshold,
            "connections": options.upload_concurrency,
        }
    if workload == 5:
        prefix = ctx.name(5, "limit") + "/"
        files = [[str(local.small_dir / n), prefix + n] for n in sorted(local.small_files)]
        return {
            "op": "upload_files",
            "bucket_id": bucket,
            "files": files,
            "connections": options.upload_concurrency,
        }
    if workload == 6:
        return {
            "op": "list",
            "bucket_id": bucket,
            "prefix": TREE_PREFIX,
            "connections": options.list_concurrency,
        }
    if workload == 7:
        extracted = ctx.work / "stdlib-extracted"
        if not extracted.exists():
            extracted.mkdir()
            _run(["tar", "-xf", str(local.tar), "-C", str(extracted)], ctx)
        prefix = ctx.name(7, "limit") + "/"
        files = [[str(extracted / n), prefix + n] for n in sorted(local.tar_files)]
        return {
            "op": "upload_files",
            "bucket_id": bucket,
            "files": files,
            "connections": options.upload_concurrency,
        }
    raise ValueError(f"no limit for workload {workload}")


def limit_result(report: dict[str, Any], workload: int, result: Result, asked: int) -> None:
    if workload == 3:
        _random_result(report, result, asked)
        return
    result.seconds = report["seconds"]
    result.phases["transfer"] = report["seconds"]
    result.bytes, result.files = report["bytes"], report["files"]


def run_limit(ctx: Context, workload: int, result: Result) -> None:
    """Run the limit process for ``workload`` and measure it like a daemon."""
    spec = limit_spec(ctx, workload)
    env = {
        **os.environ,
        "B2_APPLICATION_KEY_ID": ctx.emulator.key_id,
        "B2_APPLICATION_KEY": ctx.emulator.key,
        "B2FS_ENDPOINT": ctx.emulator.url,
    }
    out_path = ctx.work / "limit-out.json"
    err_path = ctx.work / "limit-err.txt"
    spec_path = ctx.work / "limit-spec.json"
    spec_path.write_text(json.dumps(spec))
    root = str(Path(__file__).resolve().parent.parent)
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _LIMIT_MAIN, str(spec_path)],
            stdout=out,
            stderr=err,
            env=env,
            cwd=root,
        )
        try:
            total = procs.reap(proc.pid, ctx.timeout)
        finally:
            if procs.alive(proc.pid):
                procs.stop_process(proc.pid)
        proc.returncode = 0
    if total is None:
        raise RuntimeError(f"the limit process did not finish within {ctx.timeout:.0f} s")
    report_text = out_path.read_text()
    if not report_text:
        raise RuntimeError(f"the limit process failed: {err_path.read_text()[-1500:]}")
    result.cpu_seconds, result.peak_rss_bytes = total
    asked = ctx.settings.scale.limit_random_reads
    limit_result(json.loads(report_text), workload, result, asked)


# The spec can be large (thousands of file names): it goes in a file, not on the command line.
_LIMIT_MAIN = (
    "import json, sys; from benchmarks import limit; "
    "sys.exit(limit.main([open(sys.argv[1]).read()]))"
)
