"""Start-up messages and control-socket paths of the mount daemon."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from b2fs.b2.errors import B2BadCredentials
from b2fs.mount import MountError, describe_error
from b2fs.service.control import SOCKET_PATH_MAX, socket_path


def test_a_failure_inside_trio_groups_is_told_as_itself() -> None:
    nested = BaseExceptionGroup(
        "outer", [ExceptionGroup("inner", [MountError("mount point busy")])]
    )
    assert describe_error(nested) == "mount point busy"
    refused = B2BadCredentials(401, "unauthorized", "the application key was refused", "auth")
    assert "refused" in describe_error(ExceptionGroup("x", [refused]))


def test_a_deep_runtime_directory_still_gives_a_usable_socket_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    path = socket_path(tmp_path / "mnt")
    assert len(os.fsencode(path)) <= SOCKET_PATH_MAX
    assert path == socket_path(tmp_path / "mnt")  # the client finds the daemon's socket
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert socket_path(tmp_path / "mnt").parent == tmp_path / "b2fs"
