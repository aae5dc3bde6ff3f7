"""`b2fs notify setup|show|remove` on the emulator: the mounts' rule is added, updated and
removed while every other rule of the bucket is kept; its secret goes to a file only its owner
can read and is never printed; the key needs the notification capabilities."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Callable
from pathlib import Path

from filesystem.mounting import Mounter, client_call, run_b2fs
from filesystem.waiting import wait_until

from b2fs.b2.client import B2Client
from b2fs.b2.models import NotificationRule, WebhookTarget
from b2fs.emulator import Emulator
from notify.conftest import BUCKET, B2View, rules

OTHER_SECRET = "Other" + "s" * 27


def add_other_rule(emulator: Emulator) -> None:
    """A rule some other tool keeps on the bucket, for logs/, with its own secret."""

    async def apply(client: B2Client) -> None:
        bucket = await client.get_bucket(BUCKET)
        rule = NotificationRule(
            name="other-tool",
            event_types=("b2:ObjectCreated:Upload",),
            target=WebhookTarget(
                url="https://example.com/hook", hmac_sha256_signing_secret=OTHER_SECRET
            ),
            object_name_prefix="logs/",
        )
        await client.set_bucket_notification_rules(bucket.bucket_id, [rule])

    client_call(emulator, apply)


def test_setup_show_and_remove_keep_every_other_rule(
    b2: B2View,
    emulator: Emulator,
    mounter: Mounter,
    tmp_path: Path,
    secret_registry: Callable[[str], None],
) -> None:
    secret_registry(OTHER_SECRET)
    add_other_rule(emulator)
    env = mounter.env()
    secret_file = tmp_path / "conf" / "mounts.secret"
    setup = [BUCKET, "--prefix", "photos", "--secret-file", str(secret_file)]
    done = run_b2fs(["notify", "setup", *setup, "--url", "http://127.0.0.1:9/hook"], env)
    secret = secret_file.read_text().strip()
    secret_registry(secret)
    assert re.fullmatch(r"[A-Za-z0-9]{32}", secret)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert f"signing secret (new) in {secret_file} (mode 600)" in done.stderr
    assert "added rule 'b2fs-mounts'" in done.stderr and secret not in done.stdout + done.stderr

    on_b2 = {rule.name: rule for rule in rules(emulator)}
    assert on_b2["other-tool"].target.hmac_sha256_signing_secret == OTHER_SECRET
    assert on_b2["other-tool"].object_name_prefix == "logs/"
    mine = on_b2["b2fs-mounts"]
    assert mine.object_name_prefix == "photos/" and mine.is_enabled
    assert set(mine.event_types) == {
        "b2:ObjectCreated:*",
        "b2:HideMarkerCreated:*",
        "b2:ObjectDeleted:*",
    }
    assert mine.target.hmac_sha256_signing_secret == secret

    shown = run_b2fs(["notify", "show", BUCKET], env).stdout
    assert "b2fs-mounts  prefix 'photos/'" in shown and "http://127.0.0.1:9/hook" in shown
    assert "other-tool  prefix 'logs/'" in shown
    as_json = run_b2fs(["notify", "show", BUCKET, "--json"], env).stdout
    assert {row["name"]: row["signed"] for row in json.loads(as_json)} == {
        "b2fs-mounts": True,
        "other-tool": True,
    }
    for text in (shown, as_json):
        assert secret not in text and OTHER_SECRET not in text

    # The receiver is dead: B2 suspends the rule, and show says why.
    b2.upload("photos/cat.jpg", b"meow")
    wait_until(lambda: rules(emulator)[0].is_suspended, what="the rule suspended")
    shown = run_b2fs(["notify", "show", BUCKET], env).stdout
    assert "enabled, SUSPENDED: webhook delivery failed 5 times" in shown

    # Setting it up again with another URL keeps the secret (running mounts keep working)
    # and resumes the rule.
    again = run_b2fs(["notify", "setup", *setup, "--url", "http://127.0.0.1:10/hook"], env)
    assert "updated rule 'b2fs-mounts'" in again.stderr and "secret (kept)" in again.stderr
    assert secret_file.read_text().strip() == secret
    mine = {rule.name: rule for rule in rules(emulator)}["b2fs-mounts"]
    assert mine.target.url == "http://127.0.0.1:10/hook" and not mine.is_suspended
    # --new-secret replaces it.
    run_b2fs(["notify", "setup", *setup, "--url", "http://127.0.0.1:10/", "--new-secret"], env)
    renewed = secret_file.read_text().strip()
    secret_registry(renewed)
    assert renewed != secret and stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert {r.name: r for r in rules(emulator)}[
        "b2fs-mounts"
    ].target.hmac_sha256_signing_secret == (renewed)

    # B2 allows one rule per event type and prefix: a second rule for the same names is
    # refused, with the way out.
    second = ["--name", "b2fs-second", "--secret-file", str(tmp_path / "second.secret")]
    clash = run_b2fs(
        ["notify", "setup", BUCKET, "--url", "http://127.0.0.1:11/", *second], env, check=False
    )
    assert clash.returncode == 1 and "overlapping prefixes" in clash.stderr
    assert "notify_forward" in clash.stderr
    assert (tmp_path / "second.secret").read_text().strip() not in clash.stderr
    secret_registry((tmp_path / "second.secret").read_text().strip())

    removed = run_b2fs(["notify", "remove", BUCKET, "b2fs-mounts"], env)
    assert "removed rule 'b2fs-mounts'" in removed.stderr
    (left,) = rules(emulator)
    assert left.name == "other-tool" and left.target.hmac_sha256_signing_secret == OTHER_SECRET
    missing = run_b2fs(["notify", "remove", BUCKET, "b2fs-mounts"], env, check=False)
    assert missing.returncode == 1 and "has no rule named 'b2fs-mounts'" in missing.stderr


def test_the_key_needs_the_notification_capabilities(
    b2: B2View,
    emulator: Emulator,
    mounter: Mounter,
    tmp_path: Path,
    secret_registry: Callable[[str], None],
) -> None:
    def key(*capabilities: str) -> dict[str, str]:
        async def create(client: B2Client) -> tuple[str, str]:
            made = await client.create_key("notify-test", list(capabilities))
            return made.application_key_id, made.application_key

        key_id, secret = client_call(emulator, create)  # type: ignore[misc]
        secret_registry(secret)
        return mounter.env(key_id, secret)

    basic = ("listBuckets", "listFiles", "readFiles", "writeFiles")
    setup = ["notify", "setup", BUCKET, "--url", "http://127.0.0.1:9/"]
    setup += ["--secret-file", str(tmp_path / "s.secret")]
    without = key(*basic)
    for command in (setup, ["notify", "show", BUCKET]):
        refused = run_b2fs(command, without, check=False)
        assert refused.returncode == 1
        assert "readBucketNotifications" in refused.stderr, refused.stderr
    reader = key(*basic, "readBucketNotifications")
    assert "has no event notification rule" in run_b2fs(["notify", "show", BUCKET], reader).stdout
    refused = run_b2fs(setup, reader, check=False)
    assert refused.returncode == 1 and "writeBucketNotifications" in refused.stderr
    secret_registry((tmp_path / "s.secret").read_text().strip())
    writer = key(*basic, "readBucketNotifications", "writeBucketNotifications")
    run_b2fs(setup, writer)
    assert [rule.name for rule in rules(emulator)] == ["b2fs-mounts"]
