"""Tier 3: a journal written by an earlier b2fs (before ``finished_file_id``) still opens.

What a user relies on: upgrading b2fs with uploads still pending in the cache directory loses
none of them; the journal gains the new column and its rows come back as they were.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from b2fs.transfer.journal import Journal

# The journal's table as the first schema created it.
FIRST_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE staged (
    id INTEGER PRIMARY KEY AUTOINCREMENT, state TEXT NOT NULL, kind TEXT NOT NULL,
    bucket_id TEXT NOT NULL, bucket_name TEXT NOT NULL, name TEXT NOT NULL,
    staging TEXT NOT NULL, size INTEGER NOT NULL, base_file_id TEXT,
    base_limit INTEGER NOT NULL, filled BLOB NOT NULL, block_size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, mode INTEGER NOT NULL, uid INTEGER NOT NULL,
    gid INTEGER NOT NULL, content_type TEXT NOT NULL, large_file_id TEXT,
    large_info TEXT, part_size INTEGER NOT NULL, created_ms INTEGER NOT NULL
);
INSERT INTO staged VALUES (7, 'pending', 'file', 'b1', 'bucket', 'dir/f', '/s/7', 11, NULL,
    0, x'01', 1048576, 5, 420, 0, 0, 'b2/x-auto', 'large-1', '{}', 5000000, 9);
"""


async def test_a_journal_of_the_first_schema_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_SCHEMA)
    journal = Journal(path)
    await journal.open()
    [row] = await journal.rows()
    assert (row.id, row.state, row.name, row.size, row.large_file_id) == (
        7,
        "pending",
        "dir/f",
        11,
        "large-1",
    )
    assert row.finished_file_id is None
    row.finished_file_id = "finished-1"
    await journal.update(row)
    await journal.close()

    reopened = Journal(path)
    await reopened.open()
    [again] = await reopened.rows()
    assert again.finished_file_id == "finished-1"
    await reopened.close()
