"""Event-notification rules and download authorizations against the emulator."""

from __future__ import annotations

import httpx
import pytest

from b2fs.b2 import B2Client, B2InvalidInput, Bucket, NotificationRule, WebhookTarget

SIGNING_SECRET = "abcdefghijklmnopqrstuvwxyzABCDEF"


async def test_set_and_get_rules(client: B2Client, bucket: Bucket) -> None:
    assert await client.get_bucket_notification_rules(bucket.bucket_id) == []
    rules = [
        NotificationRule(
            name="uploads-rule",
            event_types=("b2:ObjectCreated:*",),
            target=WebhookTarget(
                "https://example.com/hook",
                custom_headers=(("X-Custom", "1"),),
                hmac_sha256_signing_secret=SIGNING_SECRET,
            ),
            object_name_prefix="images/",
        ),
        NotificationRule(
            name="deletes-rule",
            event_types=("b2:ObjectDeleted:*", "b2:HideMarkerCreated:*"),
            target=WebhookTarget("https://example.com/deleted"),
            is_enabled=False,
        ),
    ]
    stored = await client.set_bucket_notification_rules(bucket.bucket_id, rules)
    by_name = {r.name: r for r in stored}
    assert set(by_name) == {"uploads-rule", "deletes-rule"}
    uploads = by_name["uploads-rule"]
    assert uploads.event_types == ("b2:ObjectCreated:*",)
    assert uploads.object_name_prefix == "images/" and uploads.is_enabled
    assert uploads.target.url == "https://example.com/hook"
    assert uploads.target.custom_headers == (("X-Custom", "1"),)
    assert uploads.target.hmac_sha256_signing_secret == SIGNING_SECRET
    assert not uploads.is_suspended and uploads.suspension_reason == ""
    assert by_name["deletes-rule"].target.hmac_sha256_signing_secret is None
    assert not by_name["deletes-rule"].is_enabled
    fetched = await client.get_bucket_notification_rules(bucket.bucket_id)
    assert [r.name for r in fetched] == ["deletes-rule", "uploads-rule"]  # sorted by name
    assert await client.set_bucket_notification_rules(bucket.bucket_id, []) == []
    assert await client.get_bucket_notification_rules(bucket.bucket_id) == []


async def test_too_many_rules_are_refused(client: B2Client) -> None:
    rule = NotificationRule("r" * 6, ("b2:ObjectCreated:*",), WebhookTarget("https://x.test"))
    with pytest.raises(B2InvalidInput, match="at most 25"):
        await client.set_bucket_notification_rules("bkt", [rule] * 26)


async def test_download_authorization(client: B2Client, bucket: Bucket) -> None:
    await client.upload_file(bucket.bucket_id, "shared/doc.txt", b"shared text")
    await client.upload_file(bucket.bucket_id, "private/doc.txt", b"secret text")
    grant = await client.get_download_authorization(bucket.bucket_id, "shared/", 600)
    assert grant.bucket_id == bucket.bucket_id and grant.file_name_prefix == "shared/"
    assert grant.authorization_token not in repr(grant)
    base = f"{client.account.download_url}/file/{bucket.bucket_name}"
    async with httpx.AsyncClient() as http:
        ok = await http.get(
            f"{base}/shared/doc.txt", headers={"Authorization": grant.authorization_token}
        )
        assert ok.status_code == 200 and ok.content == b"shared text"
        denied = await http.get(
            f"{base}/private/doc.txt", headers={"Authorization": grant.authorization_token}
        )
        assert denied.status_code in (401, 403)
    with pytest.raises(B2InvalidInput):
        await client.get_download_authorization(bucket.bucket_id, "shared/", 604_801)
