"""HTTP-level behaviour: errors, Date, unknown paths/methods, and bad input that must never
kill the server (§1.3, §1.4, §2)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import BinaryIO

import httpx
from emu_helpers import B2, sha1

from b2fs.emulator import Emulator


def connect(emu: Emulator) -> socket.socket:
    _readers.clear()
    host, port = emu.url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


_readers: dict[socket.socket, BinaryIO] = {}


def read_response(sock: socket.socket, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Parse one response (status, lower-cased headers, body) from a raw socket."""
    f = _readers.setdefault(sock, sock.makefile("rb"))
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed without a response")
    status = int(line.split()[1])
    headers: dict[str, str] = {}
    while (h := f.readline()) not in (b"\r\n", b""):
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if method == "HEAD" else int(headers.get("content-length", "0"))
    return status, headers, f.read(length)


def assert_alive(b2: B2) -> None:
    b2.ok("b2_list_buckets", accountId=b2.account_id)


def test_every_response_has_date(b2: B2) -> None:
    for r in (
        b2.call("b2_list_buckets", accountId=b2.account_id),
        b2.call("b2_list_buckets"),
        b2.http.get(f"{b2.url}/nowhere"),
        b2.http.delete(f"{b2.url}/b2api/v3/b2_list_buckets"),
        b2.download("/file/x/y", method="HEAD"),
    ):
        assert "date" in r.headers and r.headers["date"].endswith("GMT")


def test_success_and_error_headers(b2: B2) -> None:
    r = b2.call("b2_list_buckets", accountId=b2.account_id)
    assert r.headers["content-type"] == "application/json;charset=UTF-8"
    assert r.headers["cache-control"] == "max-age=0, no-cache, no-store"
    r = b2.call("b2_list_buckets")
    assert r.headers["content-type"] == "application/json;charset=utf-8"
    assert r.json() == {"code": "bad_request", "message": r.json()["message"], "status": 400}


def test_unknown_paths_and_methods(b2: B2) -> None:
    for path in (
        "/",
        "/nowhere",
        "/b2api/v5/b2_list_buckets",
        "/b2api/v3/b2_no_such_call",
        "/b2api/v3/b2_list_buckets/extra",
        "/b2api/v3/b2_upload_file/x",
    ):
        r = b2.http.post(f"{b2.url}{path}", headers={"Authorization": b2.token}, json={})
        assert r.status_code == 404, path
        assert r.json()["code"] == "not_found" and r.json()["status"] == 404
    r = b2.http.delete(f"{b2.url}/b2api/v3/b2_list_buckets")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    r = b2.http.get(f"{b2.url}/b2api/v3/b2_upload_part/x/y")
    assert r.status_code == 405
    r = b2.http.request("BREW", f"{b2.url}/b2api/v3/b2_list_buckets")
    assert r.status_code == 405
    r = b2.http.request("HEAD", f"{b2.url}/b2api/v3/b2_list_buckets")
    assert r.status_code == 405 and r.content == b""


def test_bad_json_and_bad_fields(b2: B2) -> None:
    url = f"{b2.url}/b2api/v3/b2_list_buckets"
    h = {"Authorization": b2.token, "Content-Type": "application/json"}
    for body in (b"{not json", b"[1,2]", b"\xff\xfe", b'"string"'):
        r = b2.http.post(url, headers=h, content=body)
        assert r.status_code == 400 and r.json()["code"] == "bad_json", body
    b2.error("b2_list_buckets", 400, "bad_request", accountId=5)
    b2.error("b2_list_buckets", 400, "bad_request", accountId=b2.account_id, bucketTypes="all")
    bucket = b2.create_bucket()
    b2.error("b2_list_file_names", 400, "bad_request", bucketId=bucket, prefix=["x"])
    b2.error("b2_hide_file", 400, "bad_request", bucketId=bucket)
    b2.error(
        "b2_create_key",
        400,
        "bad_request",
        accountId=b2.account_id,
        keyName="k",
        capabilities="listFiles",
    )
    b2.error("b2_finish_large_file", 400, "bad_request", fileId="x", partSha1Array="nope")
    b2.error(
        "b2_update_bucket",
        400,
        "bad_request",
        accountId=b2.account_id,
        bucketId=bucket,
        ifRevisionIs="two",
    )
    b2.error("b2_get_upload_url", 400, "bad_bucket_id", bucketId="0" * 24)
    b2.error("b2_get_upload_url", 400, "bad_bucket_id", bucketId="nonsense")
    b2.error("b2_start_large_file", 400, "bad_request", bucketId=bucket, fileName="x")
    b2.error("b2_delete_file_version", 400, "bad_request", fileName="x")
    assert_alive(b2)


def test_oversized_headers(emulator: Emulator, b2: B2) -> None:
    with connect(emulator) as s:
        s.sendall(
            b"GET /b2api/v3/b2_list_buckets HTTP/1.1\r\nHost: x\r\nX-Big: "
            + b"a" * 70000
            + b"\r\n\r\n"
        )
        status, headers, body = read_response(s)
        assert status == 400 and json.loads(body)["code"] == "bad_request"
        assert "date" in headers
    with connect(emulator) as s:
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
        s.sendall(b"GET /b2api/v3/b2_list_buckets HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        status, _, body = read_response(s)
        assert status == 400 and json.loads(body)["status"] == 400
    with connect(emulator) as s:
        s.sendall(b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
        status, _, _ = read_response(s)
        assert status == 400
    with connect(emulator) as s:
        s.sendall(b"garbage\r\n\r\n")
        status, _, body = read_response(s)
        assert status == 400 and json.loads(body)["code"] == "bad_request"
    assert_alive(b2)


def test_body_shorter_than_content_length(
    emulator_factory: Callable[..., Emulator], client_factory: Callable[..., B2]
) -> None:
    emu = emulator_factory(request_timeout=0.3)
    b2 = client_factory(emu)
    bucket = b2.create_bucket()
    u = b2.ok("b2_get_upload_url", bucketId=bucket)
    path = u["uploadUrl"].removeprefix(emu.url)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {u['authorizationToken']}\r\n"
        f"X-Bz-File-Name: short\r\nContent-Type: text/plain\r\n"
        f"X-Bz-Content-Sha1: {sha1(b'x' * 100)}\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    with connect(emu) as s:  # the client waits: the server times out with 408
        s.sendall(head + b"x" * 10)
        status, _, body = read_response(s, "POST")
        assert status == 408 and json.loads(body)["code"] == "request_timeout"
    with connect(emu) as s:  # the client gives up: nothing is stored
        s.sendall(head + b"x" * 10)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100) == b""
    with connect(emu) as s:  # same for a JSON call
        s.sendall(
            b"POST /b2api/v3/b2_list_buckets HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{"
        )
        status, _, _ = read_response(s, "POST")
        assert status == 408
    assert b2.ok("b2_list_file_versions", bucketId=bucket)["files"] == []
    assert_alive(b2)


def test_body_longer_than_content_length(emulator: Emulator, b2: B2) -> None:
    body = json.dumps({"accountId": b2.account_id}).encode()
    with connect(emulator) as s:
        s.sendall(
            b"POST /b2api/v3/b2_list_buckets HTTP/1.1\r\nHost: x\r\nAuthorization: "
            + b2.token.encode()
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
            + b"EXTRA BYTES THAT ARE NOT HTTP\r\n\r\n"
        )
        status, _, _ = read_response(s, "POST")
        assert status == 200
        status, _, body2 = read_response(s)
        assert status == 400 and json.loads(body2)["code"] == "bad_request"
    assert_alive(b2)


def test_invalid_content_length(emulator: Emulator, b2: B2) -> None:
    for value in (b"-5", b"abc", b"1e3"):
        with connect(emulator) as s:
            s.sendall(
                b"POST /b2api/v3/b2_list_buckets HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: " + value + b"\r\n\r\n{}"
            )
            status, headers, _ = read_response(s, "POST")
            assert status == 400 and headers["connection"] == "close"
    assert_alive(b2)


def test_chunked_upload_refused_and_chunked_json_accepted(emulator: Emulator, b2: B2) -> None:
    bucket = b2.create_bucket()
    u = b2.ok("b2_get_upload_url", bucketId=bucket)

    def gen():  # type: ignore[no-untyped-def]
        yield b"abc"

    r = b2.http.post(
        u["uploadUrl"],
        content=gen(),
        headers={
            "Authorization": u["authorizationToken"],
            "X-Bz-File-Name": "chunked",
            "Content-Type": "text/plain",
            "X-Bz-Content-Sha1": sha1(b"abc"),
        },
    )
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 400 and r.json()["code"] == "bad_request"

    def json_gen():  # type: ignore[no-untyped-def]
        yield b'{"accountId": '
        yield json.dumps(b2.account_id).encode() + b"}"

    r = b2.http.post(
        f"{b2.url}/b2api/v3/b2_list_buckets",
        content=json_gen(),
        headers={"Authorization": b2.token},
    )
    assert r.status_code == 200
    assert_alive(b2)


def test_expect_100_continue_and_keep_alive(emulator: Emulator, b2: B2) -> None:
    bucket = b2.create_bucket()
    u = b2.ok("b2_get_upload_url", bucketId=bucket)
    path = u["uploadUrl"].removeprefix(emulator.url)
    with connect(emulator) as s:
        s.sendall(
            (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {u['authorizationToken']}\r\n"
                f"X-Bz-File-Name: expect\r\nContent-Type: text/plain\r\nExpect: 100-continue\r\n"
                f"X-Bz-Content-Sha1: {sha1(b'hello')}\r\nContent-Length: 5\r\n\r\n"
            ).encode()
        )
        assert s.recv(25).startswith(b"HTTP/1.1 100")
        s.sendall(b"hello")
        status, _, body = read_response(s, "POST")
        assert status == 200 and json.loads(body)["fileName"] == "expect"
        for _ in range(3):  # the same connection keeps serving
            s.sendall(
                b"GET /b2api/v3/b2_list_buckets?accountId="
                + b2.account_id.encode()
                + b" HTTP/1.1\r\nHost: x\r\nAuthorization: "
                + b2.token.encode()
                + b"\r\n\r\n"
            )
            status, _, _ = read_response(s)
            assert status == 200


def test_upload_error_before_body_keeps_connection_usable(b2: B2) -> None:
    bucket = b2.create_bucket()
    u = b2.ok("b2_get_upload_url", bucketId=bucket)
    with httpx.Client() as c:
        r = c.post(
            u["uploadUrl"],
            content=b"z" * 100_000,
            headers={
                "Authorization": u["authorizationToken"],
                "X-Bz-File-Name": "bad\x01name".replace("\x01", "%01"),
                "Content-Type": "text/plain",
                "X-Bz-Content-Sha1": sha1(b""),
            },
        )
        assert r.status_code == 400
        r = c.post(
            f"{b2.url}/b2api/v3/b2_list_buckets",
            json={"accountId": b2.account_id},
            headers={"Authorization": b2.token},
        )
        assert r.status_code == 200


def test_control_endpoints(emulator: Emulator, b2: B2) -> None:
    b2.call("b2_list_buckets", accountId=b2.account_id)
    doc = httpx.get(f"{emulator.url}/_emulator/stats").json()
    assert doc["calls"]["b2_authorize_account"] == 1
    assert doc["calls"]["b2_list_buckets"] == 1
    assert httpx.post(f"{emulator.url}/_emulator/stats/reset").status_code == 200
    assert emulator.stats.calls() == {}
    assert httpx.get(f"{emulator.url}/_emulator/nope").status_code == 404


def test_header_parser() -> None:
    import io

    import pytest

    from b2fs.emulator.httpparse import HeaderError, read_headers

    h = read_headers(
        io.BytesIO(
            b"Content-Type: a/b\r\nX-Twice: 1\r\nx-twice: 2\r\nX-Folded: one\r\n two\r\n\r\nbody"
        )
    )
    assert h["content-type"] == "a/b" and h.get("X-TWICE") == "1"
    assert h["X-Folded"] == "one two" and "x-folded" in h and "nope" not in h
    assert [k for k, _ in h.items()] == ["Content-Type", "X-Twice", "x-twice", "X-Folded"]
    for bad in (b"no colon\r\n\r\n", b" leading\r\n\r\n", b"Bad : space\r\n\r\n"):
        with pytest.raises(HeaderError):
            read_headers(io.BytesIO(bad))


def test_http_versions(emulator: Emulator) -> None:
    with connect(emulator) as s:
        s.sendall(b"GET /nowhere HTTP/1.0\r\n\r\n")
        status, headers, body = read_response(s)
        assert status == 404 and headers["connection"] == "close"
        assert json.loads(body)["code"] == "not_found"
    with connect(emulator) as s:
        s.sendall(b"GET /nowhere HTTP/2.0\r\n\r\n")
        status, _, body = read_response(s)
        assert status == 400 and json.loads(body)["status"] == 400
