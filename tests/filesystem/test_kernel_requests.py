"""What the kernel asks the daemon: big FUSE reads and writes, and stat answered from its cache.

Issue 7 asks for large FUSE reads and writes and for kernel attribute and entry caching. Both
are seen only in the requests that reach the daemon, so these tests read them off
``/dev/fuse``: ``strace`` attached to the daemon records each ``read`` of that descriptor,
whose first bytes are the request's header (``struct fuse_in_header``: length, opcode, ...;
linux/fuse.h) and, for a READ, the size asked (``struct fuse_read_in``).
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filesystem.conftest import BUCKET, B2View
from filesystem.mounting import Mounter

LOOKUP, GETATTR, READ, WRITE = 1, 3, 15, 16  # FUSE opcodes (linux/fuse.h)
MIB = 1 << 20
# strace -f lines: "PID read(FD, "\x..."..." whole, or split when another thread's call came
# in between: "PID read(FD, <unfinished ...>" then "PID <... read resumed>"\x..."...".
_WHOLE = re.compile(r'^(\d+)\s+read\((\d+), "((?:\\x[0-9a-f]{2})*)"')
_UNFINISHED = re.compile(r"^(\d+)\s+read\((\d+), <unfinished")
_RESUMED = re.compile(r'^(\d+)\s+<\.\.\. read resumed>"((?:\\x[0-9a-f]{2})*)"')


@dataclass(frozen=True)
class Request:
    opcode: int
    length: int  # the whole request, header included
    body: bytes  # what strace showed after the 40-byte header


def _fuse_fd(pid: int) -> int:
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/fuse":
            return int(fd)
    raise AssertionError(f"the daemon (pid {pid}) has no /dev/fuse open")


@contextmanager
def fuse_requests(pid: int, tmp: Path) -> Iterator[list[Request]]:
    """Every FUSE request the daemon reads while the block runs (filled in at its end)."""
    fd = _fuse_fd(pid)
    out = tmp / f"strace-{pid}.txt"
    tracer = subprocess.Popen(
        ["strace", "-f", "-p", str(pid), "-e", "trace=read", "-xx", "-s", "64", "-o", str(out)],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert tracer.stderr is not None
    try:
        for line in tracer.stderr:  # strace says so once it is attached to the main thread
            if f"Process {pid} attached" in line:
                break
        else:
            raise AssertionError("strace did not attach to the daemon")
        requests: list[Request] = []
        yield requests
    finally:
        tracer.terminate()
        tracer.wait(timeout=30)
    reading: dict[str, int] = {}  # thread -> descriptor of its unfinished read
    for line in out.read_text().splitlines():
        if found := _UNFINISHED.match(line):
            reading[found[1]] = int(found[2])
            continue
        if found := _RESUMED.match(line):
            thread, hexed = found[1], found[2]
            if reading.pop(thread, None) != fd:
                continue
        elif (found := _WHOLE.match(line)) and int(found[2]) == fd:
            hexed = found[3]
        else:
            continue
        data = bytes(int(h, 16) for h in hexed.split("\\x")[1:])
        if len(data) >= 8:
            length, opcode = struct.unpack_from("<II", data)
            requests.append(Request(opcode, length, data[40:]))


def test_writes_and_reads_reach_the_daemon_in_mebibyte_requests(
    b2: B2View, mounter: Mounter, tmp_path: Path
) -> None:
    """``dd bs=1M`` of 8 MiB: about eight WRITE requests of 1 MiB, not 64 of 128 KiB (the
    kernel's default); reading it back on a fresh mount: READ requests of 1 MiB."""
    data = os.urandom(8 * MIB)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    mount = mounter.mount(BUCKET)
    assert mount.daemon_pid is not None
    with fuse_requests(mount.daemon_pid, tmp_path) as requests:
        subprocess.run(
            ["dd", f"if={source}", f"of={mount.path / 'big.bin'}", "bs=1M"],
            check=True,
            capture_output=True,
        )
    writes = [r for r in requests if r.opcode == WRITE]
    assert sum(r.length for r in writes) >= len(data)
    assert len(writes) <= 9 and max(r.length for r in writes) > MIB, [r.length for r in writes]
    mount.unmount()  # the upload is on B2; a fresh mount has nothing of it cached

    again = mounter.remount(mount)
    assert again.daemon_pid is not None
    with fuse_requests(again.daemon_pid, tmp_path) as requests:
        subprocess.run(
            ["dd", f"if={again.path / 'big.bin'}", "of=/dev/null", "bs=1M"],
            check=True,
            capture_output=True,
        )
    asked = [struct.unpack_from("<QQI", r.body)[2] for r in requests if r.opcode == READ]
    assert sum(asked) >= len(data)
    assert max(asked) >= MIB and len(asked) <= 9, asked


def test_stat_is_answered_from_the_kernel_cache_within_attr_timeout(
    b2: B2View, mounter: Mounter, tmp_path: Path
) -> None:
    """Once a name was looked up, stat and ls -l of it within ``attr_timeout`` reach the
    daemon not at all: the kernel keeps the entry and its attributes."""
    for i in range(20):
        b2.upload(f"d/f{i:02d}", b"x" * i)
    mount = mounter.mount(BUCKET, options=["attr_timeout=60"])
    files = [mount.path / "d" / f"f{i:02d}" for i in range(20)]
    sizes = [f.stat().st_size for f in files]  # the first look: lookups reach the daemon
    assert mount.daemon_pid is not None
    with fuse_requests(mount.daemon_pid, tmp_path) as requests:
        for _ in range(10):
            assert [f.stat().st_size for f in files] == sizes
    asked = [r.opcode for r in requests if r.opcode in (LOOKUP, GETATTR)]
    assert asked == [], asked
