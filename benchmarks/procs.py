"""Processes: measuring them (CPU seconds, peak RSS, bytes written) and cleaning up after them.

The b2fs daemon is started by ``b2fs mount``, which exits once the mount is ready: the daemon
is then an orphan. The runner makes itself a *child subreaper* (``PR_SET_CHILD_SUBREAPER``) so
that such orphans become its children: when a daemon exits (``b2fs unmount``) the runner reaps
it with ``wait4`` and gets its exact CPU time and peak RSS, and no daemon outlives the runner
unnoticed.

While a process runs, its figures come from ``/proc/<pid>/stat`` (utime + stime, every thread)
and ``/proc/<pid>/status`` (``VmHWM``, the peak resident set; writing ``5`` to
``/proc/<pid>/clear_refs`` resets it, so a workload run on a daemon that already served another
one reports its own peak). ``/proc/<pid>/io`` ``wchar`` counts bytes a process wrote, sockets
and ``sendfile`` included: for the emulator during a read workload that is the bytes it sent.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

_PR_SET_CHILD_SUBREAPER = 36
_TICKS = os.sysconf("SC_CLK_TCK")

# Exit figures of children reaped by `reap`: pid -> (cpu seconds, peak RSS in bytes).
_reaped: dict[int, tuple[float, int]] = {}


def become_subreaper() -> None:
    """Adopt orphaned descendants (the b2fs daemons) so that they can be reaped and measured."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie that was not reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def peak_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if the kernel refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def bytes_written(pid: int) -> int:
    """``wchar`` of /proc/<pid>/io: bytes written by the process (sockets, sendfile, files)."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def reap(pid: int, timeout: float = 0.0) -> tuple[float, int] | None:
    """Reap child ``pid`` if it has exited (waiting up to ``timeout`` s) and return its total
    (CPU seconds, peak RSS bytes); None if it still runs or is not our child."""
    if pid in _reaped:
        return _reaped[pid]
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, _status, usage = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:
            return _reaped.get(pid)
        if got == pid:
            _reaped[pid] = (usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)
            return _reaped[pid]
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def reap_orphans() -> None:
    """Reap every exited child (adopted daemons included) so no zombie is left behind."""
    while True:
        try:
            got, _status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if got == 0:
            return
        _reaped[got] = (usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)


def stop_process(pid: int, *, grace: float = 10.0) -> None:
    """SIGTERM ``pid``, then SIGKILL after ``grace`` seconds; reaps it if it is our child."""
    if not alive(pid):
        reap(pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if reap(pid, grace) is None and alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        reap(pid, 5.0)


def children() -> list[int]:
    """Pids whose parent is this process: what it started, and the orphans it adopted."""
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


def sweep(roots: list[str]) -> None:
    """The last clean-up: lazily unmount whatever is still mounted under ``roots`` and stop
    every remaining child (a daemon whose pid was not yet in its lock file when its mount
    was undone), by pid."""
    with open("/proc/self/mountinfo") as mounts:
        points = [line.split()[4] for line in mounts]
    for point in points:
        if any(point.startswith(root.rstrip("/") + "/") for root in roots):
            subprocess.run(["fusermount3", "-uz", point], capture_output=True, timeout=60)
    for pid in children():
        stop_process(pid)
    reap_orphans()


@dataclass
class Usage:
    """CPU seconds and peak RSS of one process over one measured stretch."""

    cpu_seconds: float | None = None
    peak_rss_bytes: int | None = None


class Meter:
    """Measures one process from :meth:`start` to :meth:`stop`, whether it is still running at
    the end (``/proc``) or has exited and been reaped (``wait4``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu0 = 0.0
        self._fresh = False

    def start(self, *, fresh_process: bool) -> None:
        """``fresh_process``: the process was started for this measurement, so its lifetime
        peak is the measurement's peak even if it exits before :meth:`stop`."""
        self._fresh = fresh_process
        self._cpu0 = cpu_seconds(self.pid)
        reset_peak_rss(self.pid)

    def stop(self) -> Usage:
        if alive(self.pid):
            try:
                return Usage(cpu_seconds(self.pid) - self._cpu0, peak_rss_bytes(self.pid))
            except FileNotFoundError:
                pass
        total = reap(self.pid, 30.0)
        if total is None:
            return Usage()
        cpu, peak = total
        return Usage(cpu - self._cpu0, peak if self._fresh else None)


class Janitor:
    """Undo actions run in reverse order, whatever happens (failure, Ctrl-C, SIGTERM)."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, action: Callable[[], None]) -> Callable[[], None]:
        """Register ``action``; returns a function that runs it now and unregisters it."""
        entry = (what, action)
        self._actions.append(entry)

        def run_now() -> None:
            if entry in self._actions:
                self._actions.remove(entry)
                action()

        return run_now

    def clean(self) -> list[str]:
        """Run every action (newest first); returns the ones that failed, as text."""
        problems = []
        while self._actions:
            what, action = self._actions.pop()
            try:
                action()
            except BaseException as exc:
                problems.append(f"cleanup of {what} failed: {exc!r}")
        reap_orphans()
        return problems


def run(
    command: list[str], *, timeout: float, env: dict[str, str] | None = None, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a program to completion, capturing its output (raises on a non-zero exit)."""
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[:3])}... exited {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()[-800:]}"
        )
    return result
