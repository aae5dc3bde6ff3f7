"""Real b2fs mounts for tests: the daemon runs as `b2fs mount` would start it, on an emulator.

Every mount is cleaned up whatever happens: unmounted (lazily if it must), its daemon killed.
After a test, the daemon's log is checked: it must not contain a secret, nor a Python traceback
(an unexpected error in the daemon fails the test that caused it, as s3ql's test plugin does).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from b2fs.b2.client import B2Client
from b2fs.emulator import Emulator


def is_mounted(path: Path) -> bool:
    target = str(path).encode()
    with open("/proc/self/mountinfo", "rb") as mounts:
        return any(line.split()[4] == target for line in mounts)


@dataclass
class Mount:
    path: Path
    cache_dir: Path
    env: dict[str, str]
    source: str
    args: list[str] = field(default_factory=list)

    @property
    def log_text(self) -> str:
        try:
            return (self.cache_dir / "b2fs.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def daemon_pid(self) -> int | None:
        try:
            text = (self.cache_dir / "lock").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def b2fs(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run_b2fs(list(args), self.env, check=check, timeout=timeout)

    def unmount(self, timeout: float = 120) -> None:
        """`b2fs unmount`: returns once every pending upload is on B2, the mount is gone and
        so is its daemon (checked on every unmount of the suite)."""
        pid = self.daemon_pid
        self.b2fs("unmount", str(self.path), timeout=timeout)
        assert not is_mounted(self.path)
        assert pid is None or has_exited(pid), f"the daemon (pid {pid}) outlived b2fs unmount"

    def _wait_daemon_exit(self) -> None:
        pid = self.daemon_pid
        if pid is None:
            return
        # The daemon holds the cache lock until it exits; taking it waits for that.
        import fcntl

        with open(self.cache_dir / "lock", "rb+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)

    def kill(self) -> None:
        """kill -9 the daemon (a crash), then clear the dead mount."""
        pid = self.daemon_pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["fusermount3", "-uz", str(self.path)], capture_output=True)
        self._wait_daemon_exit()

    def cleanup(self) -> None:
        if is_mounted(self.path):
            pid = self.daemon_pid
            subprocess.run(["fusermount3", "-uz", str(self.path)], capture_output=True)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def has_exited(pid: int) -> bool:
    """Whether the process has ended (a zombie not yet reaped counts as ended)."""
    try:
        process = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([process], [], [], 0)[0])
    finally:
        os.close(process)


def run_b2fs(
    args: list[str], env: dict[str, str], *, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "b2fs", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"b2fs {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


class Mounter:
    """Makes mounts on one emulator; `cleanup` undoes all of them."""

    def __init__(self, emulator: Emulator, tmp: Path) -> None:
        self.emulator = emulator
        self.tmp = tmp
        self.mounts: list[Mount] = []
        self._count = 0

    def env(self, key_id: str | None = None, key: str | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            B2_APPLICATION_KEY_ID=key_id or self.emulator.master_key_id,
            B2_APPLICATION_KEY=key or self.emulator.master_key,
            B2FS_ENDPOINT=self.emulator.url,
            XDG_RUNTIME_DIR=str(self.tmp / "run"),
            XDG_CACHE_HOME=str(self.tmp / "xdg-cache"),
        )
        (self.tmp / "run").mkdir(exist_ok=True, mode=0o700)
        return env

    def mount(
        self,
        source: str,
        *,
        options: Iterable[str] = (),
        cache_dir: Path | None = None,
        mountpoint: Path | None = None,
        key_id: str | None = None,
        key: str | None = None,
        expect_failure: bool = False,
    ) -> Mount:
        self._count += 1
        path = mountpoint or self.tmp / f"mnt{self._count}"
        if mountpoint is None:
            path.mkdir()
        cache = cache_dir or self.tmp / f"cache{self._count}"
        args = ["mount", *([source] if source else []), str(path), "--cache-dir", str(cache)]
        for option in options:
            args += ["-o", option]
        mount = Mount(path, cache, self.env(key_id, key), source, args)
        self.mounts.append(mount)
        result = run_b2fs(args, mount.env, check=not expect_failure)
        if expect_failure:
            assert result.returncode != 0, "the mount should have failed"
            mount.error = result.stderr  # type: ignore[attr-defined]
        else:
            assert is_mounted(path)
        return mount

    def remount(self, mount: Mount, **changes: object) -> Mount:
        """Mount the same source again with the same cache directory (after unmount or kill)."""
        return self.mount(
            mount.source,
            cache_dir=mount.cache_dir,
            mountpoint=mount.path,
            options=changes.pop("options", ()),  # type: ignore[arg-type]
            **changes,  # type: ignore[arg-type]
        )

    def cleanup(self) -> list[str]:
        """Undo every mount; returns problems found in the daemons' logs."""
        problems = []
        for mount in self.mounts:
            mount.cleanup()
            log = mount.log_text
            if "Traceback" in log:
                problems.append(f"the daemon of {mount.path} logged a traceback:\n{log[-4000:]}")
        return problems


def client_call(emulator: Emulator, fn: object) -> object:
    """Run `await fn(client)` with a fresh master-key client (for checks straight on B2)."""

    async def main() -> object:
        async with await B2Client.connect(
            emulator.master_key_id, emulator.master_key, endpoint=emulator.url
        ) as client:
            return await fn(client)  # type: ignore[operator]

    return trio.run(main)
