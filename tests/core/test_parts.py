"""The part plan of large uploads (``transfer.parts``): every byte in exactly one part.

What a user relies on: a large file is cut into parts B2 accepts (at most 10,000, all but the
last at least ``part_size``), and a restart computes the same plan again.
"""

from __future__ import annotations

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from b2fs.transfer import parts
from b2fs.transfer.upload import LargeUpload

MB = 10**6


def _count_by_walking(part_size: int, file_size: int) -> int:
    """The plan's part count found by walking the parts one by one."""
    number = 1
    while parts.part_range(part_size, number, file_size)[1] < file_size:
        number += 1
    return number


@given(
    part_size=st.sampled_from([5 * MB, 8 << 20, 100 * MB]),
    file_size=st.one_of(
        st.integers(0, 50 << 20),
        st.integers(1_000 * (8 << 20) - 3, 1_000 * (8 << 20) + 3),  # at the first doubling
        st.integers(0, 10**12),
    ),
)
def test_the_parts_cover_every_byte_once(part_size: int, file_size: int) -> None:
    count = parts.part_count(part_size, file_size)
    assert count == _count_by_walking(part_size, file_size)
    assert count <= parts.MAX_PARTS
    assert parts.part_range(part_size, 1, file_size)[0] == 0
    assert parts.part_range(part_size, count, file_size)[1] == file_size
    # Each part starts where the one before ends (the first and last few, and around a
    # doubling of the part size), and only the last one is short.
    edges = {*range(1, 6), *range(count - 4, count + 1), 999, 1000, 1001, 1002}
    for number in sorted(n for n in edges if 1 <= n <= count):
        start, end = parts.part_range(part_size, number, file_size)
        if number > 1:
            assert start == parts.part_range(part_size, number - 1, file_size)[1]
        assert number == count or end - start >= part_size
        assert list(parts.parts_touched(part_size, start, max(end, start + 1))) == [number]


def test_a_file_too_big_for_ten_thousand_parts_is_refused() -> None:
    with pytest.raises(ValueError, match="10000 parts"):
        parts.part_count(5 * MB, 10**15)


def test_a_write_into_an_uploaded_part_makes_it_ready_again() -> None:
    """The parts of a large upload are uploaded again when a write touches them after their
    upload, however far the writer has gone since (``LargeUpload`` skips parts it found
    current on earlier calls, on every write of a streaming writer)."""
    size = 5 * MB
    large = LargeUpload(None, "large", MB, "/nonexistent", trio.CapacityLimiter(1))  # type: ignore[arg-type]
    assert large._ready(size, final=False) == [1, 2, 3, 4]  # part 5 ends at the frontier
    for number in (1, 2, 3, 4):  # uploaded, as _upload_part records it
        state = large.part(number)
        state.uploaded_at = state.changes
    assert large._ready(size, final=False) == []
    assert large._ready(size + MB, final=False) == [5]
    large.touch(MB + 10, MB + 20)  # a write into part 2, uploaded long ago
    assert large._ready(size + MB, final=False) == [2, 5]
    assert large._ready(size + MB, final=True) == [2, 5, 6]
