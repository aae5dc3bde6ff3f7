"""Fixtures of the service tests: a NOTIFY_SOCKET to listen on, foreground daemons that are
always cleaned up, and the filesystem tier's emulator bucket and mounter."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filesystem.conftest import BUCKET, B2View, b2, mounter  # noqa: F401 (fixtures)
from filesystem.mounting import is_mounted

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's console scripts: b2fs, mount.fuse.b2fs

__all__ = ["BIN", "BUCKET", "REPO", "B2View", "Daemon", "NotifySocket"]


class NotifySocket:
    """A datagram socket standing in for systemd's: collects every notification sent to it."""

    def __init__(self) -> None:
        self.name = f"b2fs-test-notify-{uuid.uuid4().hex}"
        self.address = "@" + self.name  # what NOTIFY_SOCKET holds (abstract namespace)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.messages: list[str] = []
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if self._closed:
                return
            with self._changed:
                self.messages.append(data.decode())
                self._changed.notify_all()

    def clear(self) -> None:
        with self._changed:
            self.messages.clear()

    def fields(self) -> list[tuple[str, str]]:
        """Every KEY=VALUE line received, in order."""
        with self._changed:
            lines = [line for message in self.messages for line in message.split("\n")]
        return [tuple(line.split("=", 1)) for line in lines if "=" in line]  # type: ignore[misc]

    def wait_for(
        self,
        predicate: Callable[[list[tuple[str, str]]], bool],
        timeout: float,
        what: str,
        daemon: Daemon | None = None,
    ) -> None:
        """Wait until the notifications received satisfy ``predicate``; fail at the deadline,
        or at once if ``daemon`` exits first (with its log in the message)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                lines = [line for m in self.messages for line in m.split("\n")]
                fields = [tuple(line.split("=", 1)) for line in lines if "=" in line]
                if predicate(fields):  # type: ignore[arg-type]
                    return
                if daemon is not None and daemon.process.poll() is not None:
                    raise AssertionError(
                        f"the daemon exited ({daemon.process.returncode}) before {what}; "
                        f"got {self.messages}; its log:\n{daemon.log_text[-4000:]}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    detail = f"; its log:\n{daemon.log_text[-4000:]}" if daemon else ""
                    raise AssertionError(
                        f"timed out waiting for {what}; got {self.messages}{detail}"
                    )
                self._changed.wait(min(left, 0.5))

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=5)


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    try:
        yield sock
    finally:
        sock.close()


class Daemon:
    """A daemon started in the foreground (as systemd starts it); `stop` or `cleanup`
    always ends it and clears its mount."""

    def __init__(
        self,
        command: list[str],
        env: dict[str, str],
        mountpoint: Path,
        log_path: Path,
        cache_dir: Path,
        **popen: object,
    ) -> None:
        self.mountpoint = mountpoint
        self.log_path = log_path
        self.cache_dir = cache_dir
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed by cleanup
        self.process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            **popen,  # type: ignore[call-overload]
        )

    @property
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def pid(self) -> int | None:
        """The daemon's pid (from its cache lock; a wrapper such as strace may be between)."""
        try:
            text = (self.cache_dir / "lock").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def wait_exit(self, timeout: float = 120) -> int:
        return self.process.wait(timeout=timeout)

    def cleanup(self) -> None:
        if self.process.poll() is None:
            pid = self.pid
            if pid is not None:
                kill_pid(pid)
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        if is_mounted(self.mountpoint):
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], capture_output=True)
        self._log.close()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test starts: each is killed and unmounted at teardown."""
    started: list[Daemon] = []
    try:
        yield started
    finally:
        for daemon in started:
            daemon.cleanup()


def kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
