"""Tier 3: the write-back journal commits the changes asked for together in one transaction.

What a user relies on: when dozens of uploads finish at once, their journal rows go in one
commit rather than one each, so a close() that needs the journal does not wait behind them;
and every change still counts on its own: it is committed when its call returns, and a
change that fails fails alone.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from b2fs.transfer.journal import Journal, JournalRow


def _row(name: str) -> JournalRow:
    return JournalRow(
        id=0,
        state="pending",
        kind="file",
        bucket_id="b1",
        bucket_name="bucket",
        name=name,
        staging=f"/staging/{name}",
        size=1,
        base_file_id=None,
        base_limit=0,
        filled=b"",
        block_size=1 << 20,
        mtime_ns=0,
        mode=0o644,
        uid=0,
        gid=0,
        content_type="b2/x-auto",
        large_file_id=None,
        large_info=None,
        part_size=5_000_000,
        created_ms=0,
    )


async def _insert_at_once(
    journal: Journal, names: list[str], write_bytes_of: Callable[[str], None] | None = None
) -> dict[str, object]:
    """Insert a row per name, all asked for at once (one group commit): each name's row id,
    or the OSError its insert raised. ``write_bytes_of(name)``: the file write the row
    follows (``first``)."""
    outcomes: dict[str, object] = {}

    async def insert(row: JournalRow) -> None:
        first = None if write_bytes_of is None else lambda: write_bytes_of(row.name)
        try:
            outcomes[row.name] = await journal.insert(row, first)
        except OSError as exc:
            outcomes[row.name] = exc

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(insert, _row(name))
    return outcomes


async def _open(path: Path) -> tuple[Journal, list[str]]:
    journal = Journal(path)
    await journal.open()
    statements: list[str] = []
    journal.db.set_trace_callback(statements.append)  # called in the worker thread
    return journal, statements


async def test_changes_asked_for_while_one_commits_go_in_the_next_transaction(
    tmp_path: Path,
) -> None:
    journal, statements = await _open(tmp_path / "journal.sqlite")
    rows = [_row(f"f{i}") for i in range(50)]
    ids: dict[str, int] = {}

    async def insert(row: JournalRow) -> None:
        ids[row.name] = await journal.insert(row)

    async with trio.open_nursery() as nursery:
        for row in rows:
            nursery.start_soon(insert, row)
    # The first insert commits alone; the 49 asked for meanwhile share the next commit.
    assert statements.count("COMMIT") == 2
    stored = {row.name: row.id for row in await journal.rows()}
    assert stored == ids and len(set(ids.values())) == 50

    statements.clear()
    async with trio.open_nursery() as nursery:
        for row in rows:
            nursery.start_soon(journal.delete, row.id)
    assert statements.count("COMMIT") == 2
    assert await journal.rows() == []
    await journal.close()

    # Committed means durable: another connection sees exactly what the calls returned.
    with sqlite3.connect(tmp_path / "journal.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM staged").fetchone() == (0,)


async def test_a_change_that_fails_in_a_group_fails_alone(tmp_path: Path) -> None:
    journal, statements = await _open(tmp_path / "journal.sqlite")
    bad = _row("bad")
    bad.state = None  # type: ignore[assignment]  # NOT NULL: SQLite refuses the row
    outcomes: dict[str, object] = {}

    async def insert(row: JournalRow) -> None:
        try:
            outcomes[row.name] = await journal.insert(row)
        except sqlite3.IntegrityError as exc:
            outcomes[row.name] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(insert, _row("first"))  # commits alone
        for row in [_row("a"), _row("b"), bad, _row("c")]:
            nursery.start_soon(insert, row)  # one group, which fails as a whole
    assert isinstance(outcomes.pop("bad"), sqlite3.IntegrityError)
    assert sorted(row.name for row in await journal.rows()) == ["a", "b", "c", "first"]
    assert {row.name: row.id for row in await journal.rows()} == outcomes
    assert "ROLLBACK" in statements
    await journal.close()


async def test_a_change_asked_for_is_committed_even_if_its_caller_is_cancelled(
    tmp_path: Path,
) -> None:
    journal, _ = await _open(tmp_path / "journal.sqlite")
    with trio.CancelScope() as scope:
        scope.cancel()
        await journal.insert(_row("kept"))  # shielded: it completes, then the cancel lands
        await trio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert [row.name for row in await journal.rows()] == ["kept"]
    await journal.close()


async def test_a_full_disk_in_a_group_is_an_enospc_for_that_change_caused_by_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal, _ = await _open(tmp_path / "journal.sqlite")
    real = journal._insert

    def full_for_one(row: JournalRow) -> int:
        if row.name == "full":
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = sqlite3.SQLITE_FULL
            raise error
        return real(row)

    monkeypatch.setattr(journal, "_insert", full_for_one)
    outcomes = await _insert_at_once(journal, ["first", "a", "full", "b"])
    full = outcomes.pop("full")
    assert isinstance(full, OSError) and full.errno == errno.ENOSPC
    assert isinstance(full.__cause__, sqlite3.OperationalError)
    assert sorted(outcomes) == ["a", "b", "first"]
    assert sorted(row.name for row in await journal.rows()) == ["a", "b", "first"]
    await journal.close()


async def test_a_change_whose_file_write_fails_is_not_made_and_fails_alone(
    tmp_path: Path,
) -> None:
    """A row goes in with the write of the bytes it lists, run first in the same trip: if
    that write fails (a full cache disk), the row is not written and only its caller hears
    of it; the group's other changes are committed, after their own writes."""
    journal, _ = await _open(tmp_path / "journal.sqlite")
    written: list[str] = []

    def write_bytes_of(name: str) -> None:
        if name == "full":
            raise OSError(errno.ENOSPC, "no room for the bytes (test)")
        written.append(name)

    outcomes = await _insert_at_once(journal, ["first", "a", "full", "b"], write_bytes_of)
    full = outcomes.pop("full")
    assert isinstance(full, OSError) and full.errno == errno.ENOSPC
    assert sorted(outcomes) == ["a", "b", "first"]
    assert sorted(written) == ["a", "b", "first"]
    assert sorted(row.name for row in await journal.rows()) == ["a", "b", "first"]
    await journal.close()
