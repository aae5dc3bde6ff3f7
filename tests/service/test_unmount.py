"""`b2fs unmount`: a progress bar on a terminal, silence elsewhere, and Ctrl-C."""

from __future__ import annotations

import errno
import os
import re
import select
import subprocess
import sys
import time

import pytest
from filesystem.mounting import Mounter, is_mounted

from b2fs.emulator import Emulator
from service.conftest import BUCKET, B2View

# `python -m b2fs` as an interactive shell starts a foreground job: with Ctrl-C's default
# action even when this test runs where SIGINT is ignored (a background job of a
# non-interactive shell ignores it, and its children inherit that).
_AS_A_FOREGROUND_JOB = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'b2fs'; runpy.run_module('b2fs', run_name='__main__', alter_sys=True)"
)


class Terminal:
    """`b2fs ARGS` with a pseudo-terminal as its controlling terminal (setsid -c), so that
    Ctrl-C typed there is a real SIGINT from the terminal's line discipline."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.process = subprocess.Popen(
            ["setsid", "-c", sys.executable, "-c", _AS_A_FOREGROUND_JOB, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**env, "TERM": "xterm"},
        )
        os.close(slave)
        self.output = b""

    def read_until(self, pattern: str, timeout: float) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            matches = list(re.finditer(pattern.encode(), self.output))
            if matches:
                return matches[-1]  # the latest: a busy test may read several bars at once
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} on the terminal; it shows {self.output!r}")
            if not self._read(left):
                raise AssertionError(f"the terminal closed before {pattern!r}: {self.output!r}")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every process holding the terminal is gone
            return False
        self.output += chunk
        return bool(chunk)

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def finish(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self._read(max(0.0, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                break
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        os.close(self.master)


def test_unmount_shows_progress_on_a_terminal_and_ctrl_c_leaves_uploads_queued(
    b2: B2View, emulator: Emulator, mounter: Mounter
) -> None:
    # 0.5 MB/s: the upload lasts about ten seconds, so a Ctrl-C typed on seeing the bar
    # lands during it even on a busy machine (at 2 MB/s it once came after the upload).
    emulator.config.bandwidth_mbps = 4
    mount = mounter.mount(BUCKET, options=["writeback_delay=1h"])  # it waits for the unmount
    data = os.urandom(5_000_000)
    (mount.path / "backup.tar").write_bytes(data)
    terminal = Terminal(["unmount", str(mount.path)], mount.env)
    try:
        bar = terminal.read_until(
            r"b2fs: uploading \[(#+)-*\] +(\d+)% ([\d.]+ [kM]?B) of 5\.0 MB, 1 file\(s\) left",
            timeout=60,
        )
        assert 0 < int(bar.group(2)) < 100
        terminal.type(b"\x03")  # Ctrl-C
        assert terminal.finish() == 130, terminal.output[-600:]
    finally:
        terminal.close()
    text = terminal.output.decode(errors="replace")
    assert (
        f"b2fs: interrupted: unmounted {mount.path} with 1 upload(s) not yet on B2; they stay "
        "queued and resume at the next mount with the same cache directory"
    ) in text.replace("\r\n", " ").replace("\n", " ")
    assert not is_mounted(mount.path)
    assert "backup.tar" not in b2.names()

    emulator.config.bandwidth_mbps = 0
    mount = mounter.remount(mount, options=["writeback_delay=1h"])
    assert (mount.path / "backup.tar").read_bytes() == data  # still staged here
    quiet = mount.b2fs("unmount", str(mount.path))
    assert (quiet.stdout, quiet.stderr) == ("", "")  # not a terminal: nothing to say
    assert not is_mounted(mount.path)
    assert b2.read("backup.tar") == data


def test_waiting_for_the_daemon_is_bounded_and_optional(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A daemon still running past the bound is reported, not waited for forever; a daemon
    that cannot be watched (no pidfd before Linux 5.3) is not waited for at all."""
    from b2fs.commands.mount import _wait_exited

    lingering = subprocess.Popen(["sleep", "30"])
    try:
        _wait_exited(lingering.pid, timeout=0.05)
        assert f"the daemon (pid {lingering.pid}) is still running" in capsys.readouterr().err
        lingering.kill()
        lingering.wait()
        _wait_exited(lingering.pid, timeout=30)  # ended (and reaped): returns at once
        assert capsys.readouterr().err == ""
    finally:
        lingering.kill()
        lingering.wait()

    def no_pidfd(pid: int) -> int:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    _wait_exited(os.getpid(), timeout=30)
    assert capsys.readouterr().err == ""
