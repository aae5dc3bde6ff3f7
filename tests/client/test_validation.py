"""Refusals before any request, with messages that name the problem."""

from __future__ import annotations

import pytest

from b2fs.b2 import B2InvalidInput
from b2fs.b2 import validation as v


def refused(func, *args, **kwargs) -> str:
    with pytest.raises(B2InvalidInput) as caught:
        func(*args, **kwargs)
    assert caught.value.status == 0
    assert caught.value.code == "invalid_input"
    return str(caught.value)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("short", "6 to 63 characters"),
        ("x" * 64, "6 to 63 characters"),
        ("has space", "letters, digits and '-'"),
        ("under_score", "letters, digits and '-'"),
        ("dotted.name", "letters, digits and '-'"),
        ("b2-reserved", "must not start with 'b2-'"),
        ("B2-Reserved", "must not start with 'b2-'"),
    ],
)
def test_bad_bucket_names_for_create(name: str, fragment: str) -> None:
    message = refused(v.check_bucket_name_for_create, name, "b2_create_bucket")
    assert fragment in message
    assert message.startswith("b2_create_bucket: ")


@pytest.mark.parametrize("name", ["my-bucket", "A1b2C3", "x" * 63, "b2fs-test-01"])
def test_good_bucket_names(name: str) -> None:
    assert v.check_bucket_name_for_create(name) == name


def test_existing_bucket_names_are_checked_leniently() -> None:
    assert v.check_bucket_name("legacy.bucket_name") == "legacy.bucket_name"
    assert "not a valid bucket name" in refused(v.check_bucket_name, "a/b")
    assert "must not be empty" in refused(v.check_bucket_name, "")


def test_file_name_empty() -> None:
    assert "file name must not be empty" in refused(v.check_file_name, "")


def test_file_name_too_long_counts_utf8_bytes() -> None:
    assert v.check_file_name("a" * 1024)
    assert v.check_file_name("\u00e9" * 512)  # 1024 bytes
    message = refused(v.check_file_name, "\u00e9" * 513)
    assert "1026 bytes in UTF-8" in message and "limit is 1024" in message


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("a\nb", "a control character (U+000A) at position 1"),
        ("\x00", "a control character (U+0000) at position 0"),
        ("tab\there", "U+0009"),
        ("del\x7f", "DEL (U+007F) at position 3"),
        ("surrogate\udc80", "lone surrogate"),
    ],
)
def test_file_name_bad_characters(name: str, fragment: str) -> None:
    assert fragment in refused(v.check_file_name, name)


def test_file_names_b2_accepts_are_accepted() -> None:
    for name in ("/leading", "trailing/", "a//b", "back\\slash", " ", "\u81ea\u7531", "+%#?"):
        assert v.check_file_name(name) == name


def test_file_info_limits() -> None:
    eleven = {f"k{i}": "v" for i in range(11)}
    assert "11 entries; B2 allows at most 10" in refused(v.check_file_info, eleven)
    assert "longer than 50 bytes" in refused(v.check_file_info, {"k" * 51: "v"})
    assert "may only contain" in refused(v.check_file_info, {"bad key": "v"})
    assert "may only contain" in refused(v.check_file_info, {"sl/ash": "v"})
    assert "reserved 'b2-'" in refused(v.check_file_info, {"b2-unknown": "v"})
    assert "appears twice" in refused(v.check_file_info, {"Key": "1", "key": "2"})
    assert "must be a string" in refused(v.check_file_info, {"k": 1})


def test_file_info_is_lower_cased_and_reserved_names_pass() -> None:
    info = {
        "Src_Last_Modified_Millis": "1",
        "b2-cache-control": "max-age=3600",
        "x-!#$%^&*'|+`~.": "",
    }
    assert v.check_file_info(info) == {
        "src_last_modified_millis": "1",
        "b2-cache-control": "max-age=3600",
        "x-!#$%^&*'|+`~.": "",
    }


def test_header_budget() -> None:
    v.check_header_budget("name", {"k": "v" * 6000})
    message = refused(v.check_header_budget, "name", {"k": "\u00e9" * 2400})  # 6 bytes encoded each
    assert "B2 allows 7000" in message


@pytest.mark.parametrize("number", [0, -1, 10_001, True])
def test_part_numbers_out_of_range(number: int) -> None:
    message = refused(v.check_part_number, number, "b2_upload_part")
    assert "part number" in message


def test_part_number_bounds_accepted() -> None:
    assert v.check_part_number(1) == 1
    assert v.check_part_number(10_000) == 10_000


def test_other_checks() -> None:
    assert "40 hexadecimal digits" in refused(v.check_sha1, "abc")
    assert v.check_sha1("A" * 40) == "a" * 40
    assert "line breaks" in refused(v.check_content_type, "text/plain\r\nX-Evil: 1")
    assert "1 to 100 letters" in refused(v.check_key_name, "bad name")
    assert "at least one capability" in refused(v.check_capabilities, [])
    assert "not one string" in refused(v.check_capabilities, "listFiles")
    assert "not a valid identifier" in refused(v.check_id, "", "file id")
    assert "outside 1..100" in refused(v.check_int_range, 101, 1, 100, "max_file_count")
    assert "non-negative" in refused(v.check_range, -1, None)
    assert "must not be negative" in refused(v.check_range, 0, -5)
    assert "allPublic" in refused(v.check_bucket_type, "snapshot")
    assert "at most 10" in refused(v.check_bucket_info, {f"k{i}": "v" for i in range(11)})
