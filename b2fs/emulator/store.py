"""Metadata in SQLite, content in :mod:`blobs`.

One connection, guarded by one re-entrant lock; every public method is a short transaction,
and :meth:`Store.atomic` lets a handler group several into one (check-then-write rules such as
"hide only if the latest version is not already hidden"). No lock is ever held while a body is
streamed: uploads write their blob first and only then take the lock to insert the row.

With a data directory the database is ``meta.sqlite`` in WAL mode (``synchronous=NORMAL``:
a commit survives the process being killed; power loss is out of scope) and blobs live beside
it. An exclusive ``flock`` on ``DIR/lock`` keeps a second emulator off the same directory
(the kernel drops it when the process dies, so a killed emulator never leaves it stale).
Without one, the database is in memory and the blobs in a private temp directory that
:meth:`Store.close` removes.

Ordering: names compare as TEXT with SQLite's BINARY collation, i.e. by UTF-8 bytes. Versions
of one name order newest first by (upload timestamp, sequence number), the sequence number
being a counter that only grows, which makes the order total and deterministic.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

from .blobs import BlobStore
from .models import Bucket, FileVersion, Key, Part, Token

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY, secret TEXT NOT NULL, name TEXT NOT NULL,
    capabilities TEXT NOT NULL, bucket_ids TEXT, name_prefix TEXT, expires_ms INTEGER,
    seq INTEGER NOT NULL, is_master INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY, kind TEXT NOT NULL, key_id TEXT NOT NULL,
    expires_ms INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS buckets (
    bucket_id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, seq INTEGER NOT NULL,
    doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    file_id TEXT PRIMARY KEY, bucket_id TEXT NOT NULL, name TEXT NOT NULL,
    action TEXT NOT NULL, ts INTEGER NOT NULL, seq INTEGER NOT NULL,
    length INTEGER NOT NULL, sha1 TEXT, md5 TEXT, content_type TEXT, info TEXT NOT NULL,
    large INTEGER NOT NULL, blob TEXT, extra TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS files_by_name ON files (bucket_id, name, ts DESC, seq DESC);
CREATE INDEX IF NOT EXISTS files_by_action ON files (bucket_id, action, seq);
CREATE TABLE IF NOT EXISTS parts (
    file_id TEXT NOT NULL, number INTEGER NOT NULL, length INTEGER NOT NULL,
    sha1 TEXT NOT NULL, md5 TEXT NOT NULL, ts INTEGER NOT NULL, blob TEXT NOT NULL,
    PRIMARY KEY (file_id, number));
"""

_FILE_COLS = (
    "file_id, bucket_id, name, action, ts, seq, length, sha1, md5, content_type, info, large, "
    "blob, extra"
)


def _row_to_file(row: sqlite3.Row) -> FileVersion:
    extra = json.loads(row["extra"])
    return FileVersion(
        file_id=row["file_id"],
        bucket_id=row["bucket_id"],
        name=row["name"],
        action=row["action"],
        ts=row["ts"],
        seq=row["seq"],
        length=row["length"],
        sha1=row["sha1"],
        md5=row["md5"],
        content_type=row["content_type"],
        info=json.loads(row["info"]),
        large=bool(row["large"]),
        blob=row["blob"],
        sse=extra.get("sse"),
        retention=extra.get("retention"),
        legal_hold=extra.get("legalHold"),
    )


def _file_params(f: FileVersion) -> tuple[Any, ...]:
    extra = {"sse": f.sse, "retention": f.retention, "legalHold": f.legal_hold}
    return (
        f.file_id,
        f.bucket_id,
        f.name,
        f.action,
        f.ts,
        f.seq,
        f.length,
        f.sha1,
        f.md5,
        f.content_type,
        json.dumps(f.info),
        int(f.large),
        f.blob,
        json.dumps(extra),
    )


def _row_to_bucket(row: sqlite3.Row) -> Bucket:
    doc = json.loads(row["doc"])
    return Bucket(bucket_id=row["bucket_id"], name=row["name"], seq=row["seq"], **doc)


def _bucket_doc(b: Bucket) -> str:
    return json.dumps(
        {
            "type": b.type,
            "info": b.info,
            "cors": b.cors,
            "lifecycle": b.lifecycle,
            "revision": b.revision,
            "file_lock": b.file_lock,
            "default_retention": b.default_retention,
            "default_sse": b.default_sse,
            "replication": b.replication,
            "rules": b.rules,
            "options": b.options,
        }
    )


def _row_to_key(row: sqlite3.Row) -> Key:
    return Key(
        key_id=row["key_id"],
        secret=row["secret"],
        name=row["name"],
        capabilities=json.loads(row["capabilities"]),
        bucket_ids=json.loads(row["bucket_ids"]) if row["bucket_ids"] is not None else None,
        name_prefix=row["name_prefix"],
        expires_ms=row["expires_ms"],
        seq=row["seq"],
        is_master=bool(row["is_master"]),
    )


def prefix_successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None: none)."""
    chars = list(prefix)
    while chars:
        cp = ord(chars[-1]) + 1
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0xE000
        if cp <= 0x10FFFF:
            chars[-1] = chr(cp)
            return "".join(chars)
        chars.pop()
    return None


class Store:
    def __init__(self, data_dir: str | None) -> None:
        self.persistent = data_dir is not None
        self._lock_fd: int | None = None
        if data_dir is not None:
            os.makedirs(data_dir, exist_ok=True)
            self._lock_fd = os.open(os.path.join(data_dir, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lock_fd)
                raise OSError(errno.EBUSY, f"{data_dir} is in use by another emulator") from None
            self._blob_root = data_dir
            db_path = os.path.join(data_dir, "meta.sqlite")
        else:
            self._blob_root = tempfile.mkdtemp(prefix="b2fs-emulator-")
            db_path = ":memory:"
        self.blobs = BlobStore(self._blob_root)
        self._lock = threading.RLock()
        self._depth = 0
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        if self.persistent:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute(
            "SELECT MAX(m) FROM (SELECT MAX(seq) AS m FROM files UNION ALL "
            "SELECT MAX(seq) FROM keys UNION ALL SELECT MAX(seq) FROM buckets)"
        ).fetchone()
        self._seq = int(row[0] or 0)
        self._last_ts = 0

    # -- housekeeping ------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()
        if not self.persistent:
            shutil.rmtree(self._blob_root, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def recover(self) -> int:
        """Remove content no row references (left by a crash); returns how many files."""
        with self._lock:
            referenced = {
                r[0]
                for r in self._db.execute(
                    "SELECT blob FROM files WHERE blob IS NOT NULL UNION SELECT blob FROM parts"
                )
            }
        return self.blobs.cleanup(referenced)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction (re-entrant: nested uses join the outer one)."""
        with self._lock:
            if self._depth == 0:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("COMMIT")

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def next_ts(self, now_ms: int) -> int:
        """A millisecond timestamp that never goes backwards."""
        with self._lock:
            self._last_ts = max(self._last_ts, now_ms)
            return self._last_ts

    def _q(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _x(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self.atomic():
            return self._db.execute(sql, params).rowcount

    # -- meta --------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._q("SELECT v FROM meta WHERE k = ?", (key,))
        return rows[0]["v"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._x("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))

    # -- keys and tokens ---------------------------------------------------------------------

    def put_key(self, k: Key) -> None:
        self._x(
            "INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                k.key_id,
                k.secret,
                k.name,
                json.dumps(k.capabilities),
                json.dumps(k.bucket_ids) if k.bucket_ids is not None else None,
                k.name_prefix,
                k.expires_ms,
                k.seq,
                int(k.is_master),
            ),
        )

    def get_key(self, key_id: str) -> Key | None:
        rows = self._q("SELECT * FROM keys WHERE key_id = ?", (key_id,))
        return _row_to_key(rows[0]) if rows else None

    def master_key(self) -> Key | None:
        rows = self._q("SELECT * FROM keys WHERE is_master = 1")
        return _row_to_key(rows[0]) if rows else None

    def delete_key(self, key_id: str) -> None:
        with self.atomic():
            self._db.execute("DELETE FROM keys WHERE key_id = ?", (key_id,))
            self._db.execute("DELETE FROM tokens WHERE key_id = ?", (key_id,))

    def list_keys(self, start: str | None, limit: int) -> list[Key]:
        rows = self._q(
            "SELECT * FROM keys WHERE is_master = 0 AND key_id >= ? ORDER BY key_id LIMIT ?",
            (start or "", limit),
        )
        return [_row_to_key(r) for r in rows]

    def all_secrets(self) -> set[str]:
        rows = self._q("SELECT secret FROM keys UNION ALL SELECT token FROM tokens")
        return {r[0] for r in rows}

    def put_token(self, t: Token) -> None:
        self._x(
            "INSERT OR REPLACE INTO tokens VALUES (?, ?, ?, ?, ?)",
            (t.token, t.kind, t.key_id, t.expires_ms, json.dumps(t.data)),
        )

    def get_token(self, token: str) -> Token | None:
        rows = self._q("SELECT * FROM tokens WHERE token = ?", (token,))
        if not rows:
            return None
        r = rows[0]
        return Token(r["token"], r["kind"], r["key_id"], r["expires_ms"], json.loads(r["data"]))

    def expire_tokens(self, kind: str, now_ms: int) -> None:
        self._x(
            "UPDATE tokens SET expires_ms = ? WHERE kind = ? AND expires_ms > ?",
            (now_ms, kind, now_ms),
        )

    def purge_tokens(self, before_ms: int) -> None:
        self._x("DELETE FROM tokens WHERE expires_ms < ?", (before_ms,))

    # -- buckets -----------------------------------------------------------------------------

    def put_bucket(self, b: Bucket) -> None:
        self._x(
            "INSERT OR REPLACE INTO buckets VALUES (?, ?, ?, ?)",
            (b.bucket_id, b.name, b.seq, _bucket_doc(b)),
        )

    def get_bucket(self, bucket_id: str) -> Bucket | None:
        rows = self._q("SELECT * FROM buckets WHERE bucket_id = ?", (bucket_id,))
        return _row_to_bucket(rows[0]) if rows else None

    def get_bucket_by_name(self, name: str) -> Bucket | None:
        rows = self._q("SELECT * FROM buckets WHERE name = ? COLLATE NOCASE", (name,))
        return _row_to_bucket(rows[0]) if rows else None

    def list_buckets(self) -> list[Bucket]:
        return [_row_to_bucket(r) for r in self._q("SELECT * FROM buckets ORDER BY name")]

    def delete_bucket(self, bucket_id: str) -> None:
        self._x("DELETE FROM buckets WHERE bucket_id = ?", (bucket_id,))

    def bucket_is_empty(self, bucket_id: str) -> bool:
        return not self._q("SELECT 1 FROM files WHERE bucket_id = ? LIMIT 1", (bucket_id,))

    # -- files -------------------------------------------------------------------------------

    def put_file(self, f: FileVersion) -> None:
        self._x(
            f"INSERT OR REPLACE INTO files ({_FILE_COLS}) VALUES ({','.join('?' * 14)})",
            _file_params(f),
        )

    def get_file(self, file_id: str) -> FileVersion | None:
        rows = self._q(f"SELECT {_FILE_COLS} FROM files WHERE file_id = ?", (file_id,))
        return _row_to_file(rows[0]) if rows else None

    def delete_file(self, file_id: str) -> list[str]:
        """Delete a version and its parts; returns the blobs to remove once committed."""
        with self.atomic():
            blobs = [
                r[0]
                for r in self._db.execute(
                    "SELECT blob FROM files WHERE file_id = ? AND blob IS NOT NULL "
                    "UNION ALL SELECT blob FROM parts WHERE file_id = ?",
                    (file_id, file_id),
                )
            ]
            self._db.execute("DELETE FROM files WHERE file_id = ?", (file_id,))
            self._db.execute("DELETE FROM parts WHERE file_id = ?", (file_id,))
        return blobs

    def latest_version(self, bucket_id: str, name: str) -> FileVersion | None:
        """The newest finished version (upload or hide) of a name."""
        rows = self._q(
            f"SELECT {_FILE_COLS} FROM files WHERE bucket_id = ? AND name = ? "
            "AND action != 'start' ORDER BY ts DESC, seq DESC LIMIT 1",
            (bucket_id, name),
        )
        return _row_to_file(rows[0]) if rows else None

    def scan_names(
        self, bucket_id: str, start: str, end: str | None, limit: int
    ) -> list[FileVersion]:
        """Visible files (latest version is an upload), names in [start, end), by name."""
        sql = (
            f"SELECT {_FILE_COLS} FROM files f WHERE f.bucket_id = ? AND f.name >= ? "
            + ("AND f.name < ? " if end is not None else "")
            + "AND f.action = 'upload' AND NOT EXISTS (SELECT 1 FROM files g "
            "WHERE g.bucket_id = f.bucket_id AND g.name = f.name AND g.action != 'start' "
            "AND (g.ts > f.ts OR (g.ts = f.ts AND g.seq > f.seq))) ORDER BY f.name LIMIT ?"
        )
        params: tuple[Any, ...] = (bucket_id, start, *((end,) if end is not None else ()), limit)
        return [_row_to_file(r) for r in self._q(sql, params)]

    def scan_versions(
        self,
        bucket_id: str,
        start: str,
        start_key: tuple[int, int] | None,
        end: str | None,
        limit: int,
    ) -> list[FileVersion]:
        """All versions from (start, start_key) on, by name then newest first."""
        where = "bucket_id = ? AND "
        params: list[Any] = [bucket_id]
        if start_key is None:
            where += "name >= ? "
            params.append(start)
        else:
            ts, seq = start_key
            where += "(name > ? OR (name = ? AND (ts < ? OR (ts = ? AND seq <= ?)))) "
            params += [start, start, ts, ts, seq]
        if end is not None:
            where += "AND name < ? "
            params.append(end)
        params.append(limit)
        rows = self._q(
            f"SELECT {_FILE_COLS} FROM files WHERE {where}ORDER BY name, ts DESC, seq DESC LIMIT ?",
            tuple(params),
        )
        return [_row_to_file(r) for r in rows]

    def scan_unfinished(
        self, bucket_id: str, prefix: str, start_seq: int, limit: int
    ) -> list[FileVersion]:
        end = prefix_successor(prefix)
        sql = (
            f"SELECT {_FILE_COLS} FROM files WHERE bucket_id = ? AND action = 'start' "
            "AND seq >= ? AND name >= ? "
            + ("AND name < ? " if end is not None else "")
            + "ORDER BY seq LIMIT ?"
        )
        params: tuple[Any, ...] = (
            bucket_id,
            start_seq,
            prefix,
            *((end,) if end is not None else ()),
            limit,
        )
        return [_row_to_file(r) for r in self._q(sql, params)]

    # -- parts -------------------------------------------------------------------------------

    def put_part(self, p: Part) -> str | None:
        """Insert or replace a part; returns the replaced part's blob (to remove)."""
        with self.atomic():
            old = self._db.execute(
                "SELECT blob FROM parts WHERE file_id = ? AND number = ?", (p.file_id, p.number)
            ).fetchone()
            self._db.execute(
                "INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?, ?, ?)",
                (p.file_id, p.number, p.length, p.sha1, p.md5, p.ts, p.blob),
            )
        return old[0] if old else None

    def list_parts(self, file_id: str, start: int = 1, limit: int = 10001) -> list[Part]:
        rows = self._q(
            "SELECT * FROM parts WHERE file_id = ? AND number >= ? ORDER BY number LIMIT ?",
            (file_id, start, limit),
        )
        return [
            Part(r["file_id"], r["number"], r["length"], r["sha1"], r["md5"], r["ts"], r["blob"])
            for r in rows
        ]
