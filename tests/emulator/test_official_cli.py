"""The official ``b2`` command-line tool (b2 CLI 5.x, b2sdk, API v4) against the emulator.

The CLI talks to the emulator through ``B2_ENVIRONMENT`` (B2-API.md §12); its own checks
(hashes, clock skew, response shapes) run as usual. Outputs are captured and never shown
whole: some of them contain keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from b2fs.emulator import Emulator

B2_BIN = shutil.which("b2", path=str(Path(sys.executable).parent)) or shutil.which("b2")


@pytest.fixture(autouse=True)
def _the_cli_is_installed() -> None:
    """A missing CLI fails these tests (never skips them): `make test` installs it."""
    assert B2_BIN is not None, "the b2 CLI is missing: the test extra of pyproject.toml has it"


class Cli:
    def __init__(self, emu: Emulator, tmp: Path, key_id: str, key: str) -> None:
        self.tmp = tmp
        self.env = {
            **os.environ,
            "B2_ENVIRONMENT": emu.url,
            "B2_APPLICATION_KEY_ID": key_id,
            "B2_APPLICATION_KEY": key,
            "B2_ACCOUNT_INFO": str(tmp / "acct.sqlite"),
            "XDG_CONFIG_HOME": str(tmp),
            "HOME": str(tmp),
            "B2_ESCAPE_CONTROL_CHARACTERS": "0",
        }

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        assert B2_BIN is not None
        r = subprocess.run(
            [B2_BIN, *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if ok and r.returncode != 0:
            # stderr of a failing command carries the error, never a key
            raise AssertionError(f"b2 {' '.join(args)} failed: {r.stderr[-2000:]}")
        return r


@pytest.fixture
def cli_emulator(emulator_factory: Callable[..., Emulator]) -> Emulator:
    # Small part sizes so that a 300 kB file takes the large-file path quickly.
    return emulator_factory(min_part_size=50_000, recommended_part_size=100_000)


@pytest.fixture
def cli(cli_emulator: Emulator, tmp_path: Path) -> Cli:
    return Cli(cli_emulator, tmp_path, cli_emulator.master_key_id, cli_emulator.master_key)


def sha1_of(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_cli_buckets_files_versions_copy_rules(cli: Cli, cli_emulator: Emulator) -> None:
    tmp = cli.tmp
    r = cli.run("account", "authorize")
    assert r.returncode == 0
    bucket_id = cli.run("bucket", "create", "cli-bucket", "allPrivate").stdout.strip()
    assert len(bucket_id) == 24
    assert "cli-bucket" in cli.run("bucket", "list").stdout
    updated = json.loads(cli.run("bucket", "update", "cli-bucket", "allPublic").stdout)
    assert updated["bucketType"] == "allPublic"

    small = tmp / "small.txt"
    small.write_bytes(b"hello from the cli\n")
    big = tmp / "big.bin"
    big.write_bytes(os.urandom(300_000))
    cli.run("file", "upload", "--info", "color=blue", "cli-bucket", str(small), "dir/small.txt")
    cli_emulator.stats.reset()
    up = json.loads(
        cli.run(
            "file",
            "upload",
            "--threads",
            "2",
            "--no-progress",
            "cli-bucket",
            str(big),
            "dir/big.bin",
        ).stdout.split("\n", 2)[2]
    )
    calls = cli_emulator.stats.calls()
    assert calls.get("b2_upload_part", 0) >= 3 and calls["b2_finish_large_file"] == 1
    assert up["contentSha1"] == "none"
    assert up["fileInfo"]["large_file_sha1"] == sha1_of(big)

    for name, local in (("dir/small.txt", small), ("dir/big.bin", big)):
        out = tmp / f"out-{local.name}"
        cli.run("file", "download", "--no-progress", f"b2://cli-bucket/{name}", str(out))
        assert sha1_of(out) == sha1_of(local)
    assert cli.run("file", "cat", "b2://cli-bucket/dir/small.txt").stdout == small.read_text()

    cli.run("file", "upload", "--no-progress", "cli-bucket", str(small), "top.txt")
    assert cli.run("ls", "b2://cli-bucket").stdout.split() == ["dir/", "top.txt"]
    assert cli.run("ls", "-r", "b2://cli-bucket").stdout.split() == [
        "dir/big.bin",
        "dir/small.txt",
        "top.txt",
    ]

    cli.run("file", "upload", "--no-progress", "cli-bucket", str(big), "top.txt")
    versions = json.loads(
        cli.run("ls", "-r", "--versions", "--json", "b2://cli-bucket/top.txt").stdout
    )
    assert [v["size"] for v in versions] == [300_000, small.stat().st_size]

    cli.run("file", "hide", "b2://cli-bucket/dir/small.txt")
    assert cli.run("ls", "-r", "b2://cli-bucket/dir/").stdout.split() == ["dir/big.bin"]
    cli.run("file", "unhide", "b2://cli-bucket/dir/small.txt")
    assert "dir/small.txt" in cli.run("ls", "-r", "b2://cli-bucket/dir/").stdout

    cli.run(
        "file", "server-side-copy", "b2://cli-bucket/dir/small.txt", "b2://cli-bucket/copied.txt"
    )
    assert cli.run("file", "cat", "b2://cli-bucket/copied.txt").stdout == small.read_text()

    cli.run("rm", "--versions", "--no-progress", "b2://cli-bucket/top.txt")
    listed = json.loads(cli.run("ls", "-r", "--versions", "--json", "b2://cli-bucket").stdout)
    assert "top.txt" not in {v["fileName"] for v in listed}
    assert {v["action"] for v in listed if v["fileName"] == "dir/small.txt"} == {"upload"}
    (copied,) = [v for v in listed if v["fileName"] == "copied.txt"]
    assert copied["fileInfo"]["color"] == "blue"

    cli.run(
        "bucket",
        "notification-rule",
        "create",
        "b2://cli-bucket/logs/",
        "my-rule-1",
        "--event-type",
        "b2:ObjectCreated:*",
        "--webhook-url",
        "https://example.com/hook",
    )
    rules = cli.run("bucket", "notification-rule", "list", "--json", "b2://cli-bucket").stdout
    (rule,) = json.loads(rules)
    assert rule["name"] == "my-rule-1" and rule["objectNamePrefix"] == "logs/"
    assert rule["eventTypes"] == ["b2:ObjectCreated:*"] and rule["isSuspended"] is False

    cli.run("rm", "-r", "--versions", "--no-progress", "b2://cli-bucket")
    cli.run("bucket", "delete", "cli-bucket")
    assert cli_emulator.app.store.list_buckets() == []


def test_cli_restricted_key(
    cli: Cli, cli_emulator: Emulator, tmp_path: Path, secret_registry: Callable[[str], None]
) -> None:
    cli.run("bucket", "create", "scoped-bucket", "allPrivate")
    cli.run("bucket", "create", "other-bucket", "allPrivate")
    f = tmp_path / "f.txt"
    f.write_text("scoped")
    r = cli.run(
        "key",
        "create",
        "--bucket",
        "scoped-bucket",
        "--name-prefix",
        "in/",
        "scoped",
        "listBuckets,listFiles,readFiles,writeFiles,deleteFiles",
    )
    key_id, key = r.stdout.split()
    secret_registry(key)
    scoped = Cli(cli_emulator, tmp_path / "scoped", key_id, key)
    (tmp_path / "scoped").mkdir()
    scoped.run("file", "upload", "--no-progress", "scoped-bucket", str(f), "in/ok.txt")
    assert scoped.run("file", "cat", "b2://scoped-bucket/in/ok.txt").stdout == "scoped"
    assert scoped.run("ls", "b2://scoped-bucket/in/").stdout.split() == ["in/ok.txt"]
    refused = scoped.run(
        "file", "upload", "--no-progress", "scoped-bucket", str(f), "out/no.txt", ok=False
    )
    assert refused.returncode != 0
    assert scoped.run("ls", "b2://other-bucket", ok=False).returncode != 0
    assert (
        scoped.run(
            "file", "upload", "--no-progress", "other-bucket", str(f), "in/no.txt", ok=False
        ).returncode
        != 0
    )
    keys = cli.run("key", "list").stdout
    assert key_id in keys and key not in keys
