"""`b2fs key create|list|delete` on the emulator, and mounts with the keys it makes."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from filesystem.mounting import Mounter, client_call, run_b2fs

from b2fs.b2.client import B2Client
from b2fs.b2.models import ApplicationKey
from b2fs.emulator import Emulator
from service.conftest import BUCKET, B2View

READ = {"listBuckets", "listFiles", "readFiles"}


def keys_on_b2(emulator: Emulator) -> dict[str, ApplicationKey]:
    async def fetch(client: B2Client) -> dict[str, ApplicationKey]:
        return {key.key_name: key async for key in client.list_keys()}

    return client_call(emulator, fetch)  # type: ignore[return-value]


def create(mounter: Mounter, register: Callable[[str], None], *args: str) -> tuple[str, str, str]:
    """`b2fs key create ARGS`: the key id and secret it printed once, and its explanation."""
    result = run_b2fs(["key", "create", *args], mounter.env())
    lines = result.stdout.splitlines()
    assert len(lines) == 1, "stdout holds exactly the one keyID:applicationKey line"
    key_id, _, secret = lines[0].partition(":")
    register(secret)
    assert secret not in result.stderr
    return key_id, secret, result.stderr


def test_keys_get_exactly_the_capabilities_of_their_mount(
    b2: B2View,
    emulator: Emulator,
    mounter: Mounter,
    secret_registry: Callable[[str], None],
    tmp_path: Path,
) -> None:
    b2.upload("photos/cat.jpg", b"meow")
    b2.upload("notes/todo.txt", b"outside the prefix")
    rw_id, rw_key, explained = create(
        mounter, secret_registry, "photos-rw", "--bucket", BUCKET, "--prefix", "photos"
    )
    assert "shown this once only" in explained and f"{BUCKET}/photos/" in explained
    ro_id, ro_key, _ = create(mounter, secret_registry, "all-ro", "--bucket", BUCKET, "--read-only")
    # --output: the secret goes to a new file of mode 600, not to stdout.
    output = tmp_path / "keys" / "keep-all.key"
    output.parent.mkdir()
    result = run_b2fs(
        ["key", "create", "keep-all", "--bucket", BUCKET, "--no-delete", "--output", str(output)],
        mounter.env(),
    )
    assert result.stdout == ""
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    nd_id, _, nd_key = output.read_text().strip().partition(":")
    secret_registry(nd_key)

    keys = keys_on_b2(emulator)
    bucket_id = b2.bucket_id()
    assert set(keys["photos-rw"].capabilities) == READ | {"writeFiles", "deleteFiles"}
    assert (keys["photos-rw"].bucket_id, keys["photos-rw"].name_prefix) == (bucket_id, "photos/")
    assert set(keys["all-ro"].capabilities) == READ
    assert set(keys["keep-all"].capabilities) == READ | {"writeFiles"}
    assert all(keys[n].bucket_id == bucket_id for n in ("all-ro", "keep-all"))
    assert keys["all-ro"].name_prefix is None
    assert keys["photos-rw"].application_key_id == rw_id
    assert keys["keep-all"].application_key_id == nd_id

    listed = run_b2fs(["key", "list"], mounter.env()).stdout
    assert f"{rw_id}  photos-rw  {BUCKET}/photos/  " in listed
    assert not any(s in listed for s in (rw_key, ro_key, nd_key))
    as_json = {
        k["name"]: k for k in json.loads(run_b2fs(["key", "list", "--json"], mounter.env()).stdout)
    }
    assert as_json["all-ro"]["capabilities"] == sorted(READ)
    assert as_json["photos-rw"]["prefix"] == "photos/" and as_json["photos-rw"]["bucket"] == BUCKET

    # The prefix key mounts its folder and writes there.
    mount = mounter.mount(f"{BUCKET}/photos", key_id=rw_id, key=rw_key)
    assert os.listdir(mount.path) == ["cat.jpg"]
    (mount.path / "dog.jpg").write_bytes(b"woof")
    mount.unmount()
    assert b2.read("photos/dog.jpg") == b"woof"

    # Without writeFiles the mount is read-only, and says why.
    mount = mounter.mount(BUCKET, key_id=ro_id, key=ro_key)
    assert (mount.path / "notes" / "todo.txt").read_bytes() == b"outside the prefix"
    with pytest.raises(OSError) as raised:
        (mount.path / "new.txt").write_bytes(b"no")
    assert raised.value.errno == errno.EROFS
    assert "no writeFiles capability: mounting read-only" in mount.log_text
    mount.unmount()

    # unlink=delete without deleteFiles hides instead, with a warning.
    mount = mounter.mount(BUCKET, key_id=nd_id, key=nd_key, options=["unlink=delete"])
    assert "no deleteFiles capability: unlink will hide instead of delete" in mount.log_text
    (mount.path / "notes" / "todo.txt").unlink()
    mount.unmount()
    actions = [str(v.action) for v in b2.versions("notes/todo.txt")]
    assert actions == ["hide", "upload"]  # hidden; the old version stays

    # Delete by name; the key no longer opens anything.
    deleted = run_b2fs(["key", "delete", "photos-rw"], mounter.env())
    assert deleted.stdout.strip() == f"b2fs: deleted key 'photos-rw' (id {rw_id})"
    assert "photos-rw" not in keys_on_b2(emulator)
    failed = mounter.mount(f"{BUCKET}/photos", key_id=rw_id, key=rw_key, expect_failure=True)
    assert rw_key not in failed.error  # type: ignore[attr-defined]


def test_key_commands_say_no_in_one_line(b2: B2View, mounter: Mounter) -> None:
    for args, message in [
        (["create", "x", "--bucket", "no-such-bucket"], "b2fs: bucket 'no-such-bucket' does not"),
        (["delete", "no-such-key"], "b2fs: no key with the id or name 'no-such-key'"),
    ]:
        result = run_b2fs(["key", *args], mounter.env(), check=False)
        assert result.returncode == 1 and result.stdout == ""
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(message)
