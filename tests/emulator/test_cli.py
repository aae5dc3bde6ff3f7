"""The ``b2fs emulator`` command line."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx
import pytest
from emu_helpers import EmulatorProcess


@pytest.fixture
def proc_factory(
    secret_registry: Callable[[str], None],
) -> Iterator[Callable[..., EmulatorProcess]]:
    started: list[EmulatorProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> EmulatorProcess:
        p = EmulatorProcess(*args, env=env)
        started.append(p)
        secret_registry(p.key)
        return p

    yield start
    for p in started:
        p.stop()


def test_prints_url_and_key_then_serves(proc_factory: Callable[..., EmulatorProcess]) -> None:
    p = proc_factory("--listen", "127.0.0.1:0")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", p.url)
    assert len(p.key) == 31 and p.key.startswith("K")
    r = httpx.get(f"{p.url}/b2api/v4/b2_authorize_account", auth=(p.key_id, p.key))
    assert r.status_code == 200
    assert p.terminate() == 0  # SIGTERM stops it cleanly


def test_key_from_environment(proc_factory: Callable[..., EmulatorProcess]) -> None:
    key = "K" + "e" * 30
    p = proc_factory(env={"B2FS_EMULATOR_KEY_ID": "00000000abcd", "B2FS_EMULATOR_KEY": key})
    assert p.key_id == "00000000abcd" and p.key == key
    assert (
        httpx.get(f"{p.url}/b2api/v3/b2_authorize_account", auth=(p.key_id, key)).status_code == 200
    )


def test_options_reach_the_server(proc_factory: Callable[..., EmulatorProcess]) -> None:
    p = proc_factory(
        "--faults",
        "auth:503",
        "--token-ttl",
        "10",
        "--latency-ms",
        "1",
        "--bandwidth-mbps",
        "1000",
        "--recommended-part-size",
        "1000",
        "--min-part-size",
        "100",
    )
    r = httpx.get(f"{p.url}/b2api/v3/b2_authorize_account", auth=(p.key_id, p.key))
    assert r.status_code == 503


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b2fs", "emulator", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_help_documents_faults() -> None:
    out = run("--help").stdout
    for word in (
        "--listen",
        "--data",
        "--faults",
        "TARGET:KIND[:PROBABILITY]",
        "429@N",
        "reset",
        "--token-ttl",
        "--bandwidth-mbps",
        "--latency-ms",
    ):
        assert word in out


@pytest.mark.parametrize(
    "args",
    [("--faults", "upload:teapot"), ("--listen", "nonsense"), ("--key-id", "only-id")],
)
def test_bad_arguments(args: tuple[str, ...]) -> None:
    r = run(*args)
    assert r.returncode == 2 and "b2fs emulator:" in r.stderr


def test_port_in_use_is_a_clean_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run("--listen", f"127.0.0.1:{port}")
    assert r.returncode == 1 and "Address already in use" in r.stderr
    assert "Traceback" not in r.stderr
