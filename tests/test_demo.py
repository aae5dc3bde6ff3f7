"""`make demo` runs b2fs.demo: it must work twice in a row and stop cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _demo(cwd: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b2fs.demo", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "XDG_RUNTIME_DIR": str(cwd / "run")},
    )


def test_demo_starts_twice_and_stops(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir(mode=0o700)
    try:
        first = _demo(tmp_path, "start")
        assert first.returncode == 0, first.stderr
        assert "Welcome to b2fs" in first.stdout
        assert "make demo-stop" in first.stdout
        assert os.path.ismount(tmp_path / "demo-mount")
        key = (tmp_path / "demo" / "credentials").read_text().split(":", 1)[1].strip()
        assert key not in first.stdout + first.stderr
        second = _demo(tmp_path, "start")
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stdout and "already mounted" in second.stdout
        copied = tmp_path / "demo-mount" / "copies" / "todo-copy.txt"
        assert copied.read_bytes() == (tmp_path / "demo-mount" / "notes" / "todo.txt").read_bytes()
    finally:
        stopped = _demo(tmp_path, "stop")
        subprocess.run(["fusermount3", "-uz", str(tmp_path / "demo-mount")], capture_output=True)
    assert stopped.returncode == 0, stopped.stderr
    assert not os.path.ismount(tmp_path / "demo-mount")
