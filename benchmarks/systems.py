"""Mounting the systems under test on the emulator: b2fs and rclone mount.

Each mount gets a fresh cache directory (cold) and a fresh mount point; every mount registers
its undo with the run's :class:`~benchmarks.procs.Janitor` (``fusermount3 -uz`` and the end of
its daemon, by pid), so nothing stays mounted after a failure or Ctrl-C.

A finished mount's cache directory is set aside in the work directory, removed with it at the
end of the run, not deleted at once: ext4 without a journal (these machines' disks) allocates
inodes slowly for a minute or more after thousands of files were deleted (its
``recently_deleted`` check), so deleting one system's cache of small files would slow the
next measurement that creates files, whichever system it is. With less than
:data:`SET_ASIDE_MIN_FREE` free on the work directory's file system, caches are deleted at once.

How "durable" is reached differs, and that is part of what is measured:

- b2fs: ``fsync`` of a file waits until it is on B2; ``b2fs unmount`` waits for every pending
  upload (the daemon then exits and is reaped).
- rclone: ``close`` and ``fsync`` return before the upload, and rclone does not wait for
  pending uploads when unmounted (they resume at its next start). So for rclone the runner
  polls B2 until every written file is there with its size.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import procs
from benchmarks.emulator import EmulatorProcess

RCLONE = "/usr/bin/rclone"

# rclone's flags (see docs/PERFORMANCE.md for why each); the cache mode is added per system.
RCLONE_FLAGS = [
    "--b2-upload-cutoff",
    "16M",
    "--b2-chunk-size",
    "8M",
    "--transfers",
    "16",
    "--b2-disable-checksum",
    "--vfs-write-back",
    "0s",
    "--vfs-read-chunk-size",
    "1M",
    "--vfs-read-chunk-size-limit",
    "off",
    "--buffer-size",
    "16M",
    "--vfs-read-ahead",
    "64M",
    "--dir-cache-time",
    "1h",
    "--poll-interval",
    "0",
    "--attr-timeout",
    "1s",
    "--write-back-cache",
]

SYSTEMS = ("b2fs", "rclone", "rclone-writes", "limit")

# Below this much free space, a finished mount's cache is deleted at once, not set aside.
SET_ASIDE_MIN_FREE = 16 * 1024**3


def is_mounted(path: Path) -> bool:
    target = str(path).encode()
    with open("/proc/self/mountinfo", "rb") as mounts:
        return any(line.split()[4] == target for line in mounts)


def _lazy_unmount(path: Path) -> None:
    if is_mounted(path):
        subprocess.run(["fusermount3", "-uz", str(path)], capture_output=True, timeout=60)


@dataclass
class Mounted:
    system: str
    path: Path
    pid: int
    cache_dir: Path
    log_path: Path
    mount_seconds: float
    # Runs the undo now (unmount lazily, end the daemon) and unregisters it.
    cleanup: object = None
    # rclone only: the process object (it is our child).
    proc: subprocess.Popen[bytes] | None = None

    @property
    def waits_for_b2(self) -> bool:
        """True if fsync and unmount return only once the data is on B2 (b2fs)."""
        return self.system == "b2fs"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        assert callable(self.cleanup)
        self.cleanup()


class Mounter:
    """Makes mounts of one system kind on the running emulator."""

    def __init__(
        self,
        emulator: EmulatorProcess,
        bucket: str,
        work: Path,
        janitor: procs.Janitor,
        b2fs_options: list[str],
        rclone_args: list[str] | None = None,
    ) -> None:
        self.emulator = emulator
        self.bucket = bucket
        self.work = work
        self.janitor = janitor
        self.b2fs_options = b2fs_options
        self.rclone_args = rclone_args or []
        self._count = 0
        # b2fs's control socket lives in $XDG_RUNTIME_DIR/b2fs/: keep that path short (an
        # AF_UNIX path has at most 107 bytes; under a long --work-dir b2fs cannot mount).
        run_dir = Path(tempfile.mkdtemp(prefix="b2fs-bench-run-"))
        janitor.push(f"runtime directory {run_dir}", lambda: shutil.rmtree(run_dir, True))
        self.env = {
            **os.environ,
            "B2_APPLICATION_KEY_ID": emulator.key_id,
            "B2_APPLICATION_KEY": emulator.key,
            "XDG_RUNTIME_DIR": str(run_dir),
            "XDG_CACHE_HOME": str(work / "xdg-cache"),
        }

    def _discard(self, cache: Path, mountpoint: Path) -> None:
        """Remove a finished mount's directories: the cache is set aside (see the module
        docstring) when there is room; a mount point still mounted is left alone."""
        if cache.exists() and shutil.disk_usage(self.work).free >= SET_ASIDE_MIN_FREE:
            set_aside = self.work / "set-aside"
            try:
                set_aside.mkdir(exist_ok=True)
                # A directory of its own: each profile's mounts count from 1 again.
                place = Path(tempfile.mkdtemp(prefix=f"{cache.name}-", dir=set_aside))
                cache.rename(place / "cache")
            except OSError:
                pass  # a clean-up must not fail: deleted below instead
        shutil.rmtree(cache, ignore_errors=True)
        if not is_mounted(mountpoint):
            shutil.rmtree(mountpoint, ignore_errors=True)

    def _fresh_dirs(self, system: str) -> tuple[Path, Path]:
        self._count += 1
        mountpoint = self.work / f"mnt-{self._count}-{system}"
        cache = self.work / f"cache-{self._count}-{system}"
        mountpoint.mkdir()
        return mountpoint, cache

    def mount(self, system: str) -> Mounted:
        if system == "b2fs":
            return self._mount_b2fs()
        if system in ("rclone", "rclone-writes"):
            return self._mount_rclone(system, "full" if system == "rclone" else "writes")
        raise ValueError(f"not a mountable system: {system}")

    # -- b2fs --------------------------------------------------------------------------------

    def _mount_b2fs(self) -> Mounted:
        mountpoint, cache = self._fresh_dirs("b2fs")
        command = [sys.executable, "-m", "b2fs", "mount", self.bucket, str(mountpoint)]
        command += ["--cache-dir", str(cache), "--endpoint", self.emulator.url]
        for option in self.b2fs_options:
            command += ["-o", option]

        def undo() -> None:
            pid = _read_pid(cache / "lock")
            _lazy_unmount(mountpoint)
            if pid is not None:
                procs.stop_process(pid)
            self._discard(cache, mountpoint)

        cleanup = self.janitor.push(f"b2fs mount {mountpoint}", undo)
        t0 = time.perf_counter()
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=120)
        seconds = time.perf_counter() - t0
        if result.returncode != 0:
            log = cache / "b2fs.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            cleanup()
            raise RuntimeError(f"b2fs mount failed: {result.stderr.strip()}\n{tail}")
        pid = _read_pid(cache / "lock")
        if pid is None:
            cleanup()
            raise RuntimeError("b2fs mount: no daemon pid in the cache directory's lock file")
        return Mounted("b2fs", mountpoint, pid, cache, cache / "b2fs.log", seconds, cleanup)

    def b2fs_unmount(self, mounted: Mounted, timeout: float) -> None:
        """``b2fs unmount``: returns once every pending upload is on B2 and the mount is gone;
        then reaps the daemon (whose exit figures the meter reads)."""
        procs.run(
            [sys.executable, "-m", "b2fs", "unmount", str(mounted.path)],
            env=self.env,
            timeout=timeout,
        )
        procs.reap(mounted.pid, 60.0)

    # -- rclone ------------------------------------------------------------------------------

    def rclone_config(self) -> Path:
        """The remote ``bench:`` for this emulator (its port changes with every start)."""
        path = self.work / f"rclone-{self.emulator.url.rsplit(':', 1)[1]}.conf"
        if not path.exists():
            path.write_text(
                "[bench]\ntype = b2\n"
                f"account = {self.emulator.key_id}\nkey = {self.emulator.key}\n"
                f"endpoint = {self.emulator.url}\n"
            )
            path.chmod(0o600)
        return path

    def rclone_command(self, mode: str, mountpoint: Path, cache: Path, log: Path) -> list[str]:
        command = [RCLONE, "mount", f"bench:{self.bucket}", str(mountpoint)]
        command += ["--config", str(self.rclone_config()), "--cache-dir", str(cache)]
        command += ["--vfs-cache-mode", mode, *RCLONE_FLAGS, *self.rclone_args]
        command += [
            "--log-file",
            str(log),
            "--log-level",
            os.environ.get("BENCH_RCLONE_LOG", "NOTICE"),
        ]
        return command

    def _mount_rclone(self, system: str, mode: str) -> Mounted:
        mountpoint, cache = self._fresh_dirs(system)
        cache.mkdir()
        log = cache / "rclone.log"
        command = self.rclone_command(mode, mountpoint, cache, log)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def undo() -> None:
            _lazy_unmount(mountpoint)
            procs.stop_process(proc.pid)
            proc.returncode = proc.returncode if proc.returncode is not None else -1
            self._discard(cache, mountpoint)

        cleanup = self.janitor.push(f"rclone mount {mountpoint}", undo)
        deadline = time.monotonic() + 60
        while not is_mounted(mountpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                cleanup()
                raise RuntimeError(f"rclone mount did not come up:\n{tail}")
            time.sleep(0.02)
        seconds = time.perf_counter() - t0
        return Mounted(system, mountpoint, proc.pid, cache, log, seconds, cleanup, proc)

    def rclone_unmount(self, mounted: Mounted) -> None:
        """Unmount and wait for rclone to exit (uploads it still had pending are abandoned:
        the runner only unmounts once it saw the data on B2)."""
        subprocess.run(["fusermount3", "-u", str(mounted.path)], capture_output=True, timeout=60)
        procs.reap(mounted.pid, 30.0)


def _read_pid(lock: Path) -> int | None:
    try:
        text = lock.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None
