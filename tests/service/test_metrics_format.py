"""The metrics option's addresses and the exposition's escaping, without a mount."""

from __future__ import annotations

import pytest

from b2fs.options import OPTIONS, OptionError, parse_option_strings
from b2fs.service.metrics import exposition


@pytest.mark.parametrize(
    ("given", "listens"),
    [
        ("9101", "127.0.0.1:9101"),
        ("0.0.0.0:9101", "0.0.0.0:9101"),
        ("[::1]:9101", "[::1]:9101"),
        ("localhost:0", "localhost:0"),
        ("off", ""),
    ],
)
def test_metrics_addresses(given: str, listens: str) -> None:
    assert parse_option_strings([f"metrics={given}"]).metrics == listens
    assert OPTIONS["metrics"].default == ""  # off unless asked for


@pytest.mark.parametrize("bad", ["host", "::1:9101", "127.0.0.1:99999", "127.0.0.1:port"])
def test_bad_metrics_addresses_are_refused(bad: str) -> None:
    with pytest.raises(OptionError) as raised:
        parse_option_strings([f"metrics={bad}"])
    assert str(raised.value).startswith(f"-o: option metrics: {bad!r} is not an address")


def test_label_values_are_escaped() -> None:
    snapshot = {
        "version": "0.1.0",
        "source": 'odd"bucket\\name',
        "mountpoint": "/mnt/with\nnewline",
        "uptime_seconds": 1.5,
        "state": "serving",
        "pending_files": 0,
        "pending_bytes": 0,
        "pending_sent_bytes": 0,
        "failing_uploads": 0,
        "cache": {"used_bytes": 0, "capacity_bytes": 1, "hits": 0, "misses": 0},
        "b2": {
            "requests": {"b2_list_buckets": 1},
            "errors": {},
            "errors_by_code": {"0 connection_error": 2},
            "retries": {},
            "reauthorizations": 0,
            "bytes_uploaded": 0,
            "bytes_downloaded": 0,
        },
    }
    text = exposition(snapshot)
    labels = 'version="0.1.0",source="odd\\"bucket\\\\name",mountpoint="/mnt/with\\nnewline"'
    assert f"b2fs_info{{{labels}}} 1" in text.splitlines()
    assert 'b2fs_b2_errors_by_code_total{status="0",code="connection_error"} 2' in text
    assert "b2fs_uptime_seconds 1.5" in text
    assert text.endswith("\n") and all(
        line.startswith(("# HELP b2fs_", "# TYPE b2fs_", "b2fs_")) for line in text.splitlines()
    )
