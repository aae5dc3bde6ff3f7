"""Listing: prefix, delimiter folders, paging cursors, caps, byte ordering (§6.8, §6.9, §9)."""

from __future__ import annotations

from typing import Any

from emu_helpers import B2

PHOTOS = [
    "photos/alice.jpg",
    "photos/alfred.jpg",
    "photos/cats/fluffy.jpg",
    "photos/cats/mittens.jpg",
    "photos/dogs/spot.jpg",
    "photos/lilly.jpg",
]


def names(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["fileName"], f["action"]) for f in doc["files"]]


def test_prefix_and_delimiter_example(b2: B2) -> None:
    bucket = b2.create_bucket()
    for n in PHOTOS:
        b2.upload(bucket, n)
    all_files = b2.ok("b2_list_file_names", bucketId=bucket)
    assert [n for n, _ in names(all_files)] == sorted(PHOTOS)
    cats = b2.ok("b2_list_file_names", bucketId=bucket, prefix="photos/c")
    assert [n for n, _ in names(cats)] == ["photos/cats/fluffy.jpg", "photos/cats/mittens.jpg"]
    folders = b2.ok("b2_list_file_names", bucketId=bucket, prefix="photos/", delimiter="/")
    assert names(folders) == [
        ("photos/alfred.jpg", "upload"),
        ("photos/alice.jpg", "upload"),
        ("photos/cats/", "folder"),
        ("photos/dogs/", "folder"),
        ("photos/lilly.jpg", "upload"),
    ]
    folder = folders["files"][2]
    assert folder["fileId"] is None and folder["contentSha1"] is None
    assert folder["uploadTimestamp"] == 0 and folder["contentLength"] == 0
    top = b2.ok("b2_list_file_names", bucketId=bucket, delimiter="/")
    assert names(top) == [("photos/", "folder")]


def test_folder_only_if_something_visible(b2: B2) -> None:
    bucket = b2.create_bucket()
    b2.upload(bucket, "gone/a")
    b2.ok("b2_hide_file", bucketId=bucket, fileName="gone/a")
    b2.upload(bucket, "kept/b")
    assert names(b2.ok("b2_list_file_names", bucketId=bucket, delimiter="/")) == [
        ("kept/", "folder")
    ]
    versions = b2.ok("b2_list_file_versions", bucketId=bucket, delimiter="/")
    assert names(versions) == [("gone/", "folder"), ("kept/", "folder")]


def test_utf8_byte_order(b2: B2) -> None:
    bucket = b2.create_bucket()
    # U+FF5E sorts before U+1F600 in UTF-8/code points but after it in UTF-16.
    wanted = ["A", "a", "z", "é", "\uff5e", "\U0001f600"]
    for n in reversed(wanted):
        b2.upload(bucket, n)
    got = [n for n, _ in names(b2.ok("b2_list_file_names", bucketId=bucket))]
    assert got == wanted == sorted(wanted, key=lambda s: s.encode())


def test_list_file_names_paging(b2: B2) -> None:
    bucket = b2.create_bucket()
    all_names = [f"f{i:02d}" for i in range(7)]
    for n in all_names:
        b2.upload(bucket, n)
    b2.upload(bucket, "f03")  # a second version does not add a row
    seen: list[str] = []
    start = None
    while True:
        page = b2.ok("b2_list_file_names", bucketId=bucket, maxFileCount=3, startFileName=start)
        assert len(page["files"]) <= 3
        seen += [f["fileName"] for f in page["files"]]
        start = page["nextFileName"]
        if start is None:
            break
    assert seen == all_names
    # startFileName is inclusive and may name no file
    page = b2.ok("b2_list_file_names", bucketId=bucket, startFileName="f035")
    assert page["files"][0]["fileName"] == "f04"


def test_list_file_versions_paging(b2: B2) -> None:
    bucket = b2.create_bucket()
    ids = []
    for n in ("a", "b", "b", "b", "c"):
        ids.append((n, b2.upload(bucket, n, n.encode())["fileId"]))
    expected = [ids[0], ids[3], ids[2], ids[1], ids[4]]  # names asc, newest first
    seen: list[tuple[str, str]] = []
    start_name = start_id = None
    while True:
        page = b2.ok(
            "b2_list_file_versions",
            bucketId=bucket,
            maxFileCount=2,
            startFileName=start_name,
            startFileId=start_id,
        )
        seen += [(f["fileName"], f["fileId"]) for f in page["files"]]
        start_name, start_id = page["nextFileName"], page["nextFileId"]
        if start_name is None:
            assert start_id is None
            break
    assert seen == expected
    # a startFileId that no longer exists still positions the listing
    b2.ok("b2_delete_file_version", fileId=ids[2][1], fileName="b")
    page = b2.ok("b2_list_file_versions", bucketId=bucket, startFileName="b", startFileId=ids[2][1])
    assert [f["fileId"] for f in page["files"]] == [ids[1][1], ids[4][1]]
    b2.error(
        "b2_list_file_versions",
        400,
        "invalid_file_id",
        bucketId=bucket,
        startFileName="b",
        startFileId="junk",
    )


def test_versions_include_unfinished_and_hide(b2: B2) -> None:
    bucket = b2.create_bucket()
    b2.upload(bucket, "x")
    b2.ok("b2_hide_file", bucketId=bucket, fileName="x")
    b2.start_large(bucket, "y")
    actions = [a for _, a in names(b2.ok("b2_list_file_versions", bucketId=bucket))]
    assert actions == ["hide", "upload", "start"]
    assert b2.ok("b2_list_file_names", bucketId=bucket)["files"] == []


def test_delimiter_paging_over_folders(b2: B2) -> None:
    bucket = b2.create_bucket()
    for n in ["a/1", "a/2", "b", "c/1", "d"]:
        b2.upload(bucket, n)
    seen: list[tuple[str, str]] = []
    start = None
    while True:
        page = b2.ok(
            "b2_list_file_names",
            bucketId=bucket,
            delimiter="/",
            maxFileCount=1,
            startFileName=start,
        )
        seen += names(page)
        start = page["nextFileName"]
        if start is None:
            break
    assert seen == [("a/", "folder"), ("b", "upload"), ("c/", "folder"), ("d", "upload")]


def test_prefix_with_start_before_prefix(b2: B2) -> None:
    bucket = b2.create_bucket()
    for n in ["a", "m/1", "m/2", "z"]:
        b2.upload(bucket, n)
    page = b2.ok("b2_list_file_names", bucketId=bucket, prefix="m/", startFileName="a")
    assert [n for n, _ in names(page)] == ["m/1", "m/2"]


def test_max_file_count_limits(b2: B2) -> None:
    bucket = b2.create_bucket()
    for n in range(3):
        b2.upload(bucket, f"n{n}")
    assert len(b2.ok("b2_list_file_names", bucketId=bucket, maxFileCount=0)["files"]) == 3
    b2.ok("b2_list_file_names", bucketId=bucket, maxFileCount=10000)
    for op in ("b2_list_file_names", "b2_list_file_versions"):
        b2.error(op, 400, "out_of_range", bucketId=bucket, maxFileCount=10001)
        b2.error(op, 400, "out_of_range", bucketId=bucket, maxFileCount=-1)
        b2.error(op, 400, "bad_request", bucketId=bucket, maxFileCount="ten")
        b2.error(op, 400, "invalid_bucket_id", bucketId="0" * 24)
    b2.error(
        "b2_list_unfinished_large_files", 400, "out_of_range", bucketId=bucket, maxFileCount=101
    )


def test_many_files_default_page(b2: B2) -> None:
    bucket = b2.create_bucket()
    for n in range(120):
        b2.upload(bucket, f"k{n:03d}")
    page = b2.ok("b2_list_file_names", bucketId=bucket)
    assert len(page["files"]) == 100 and page["nextFileName"] == "k100"
    r = b2.call(
        "b2_list_file_names", method="GET", bucketId=bucket, maxFileCount="5", startFileName="k050"
    )
    assert [f["fileName"] for f in r.json()["files"]] == [f"k{n:03d}" for n in range(50, 55)]
