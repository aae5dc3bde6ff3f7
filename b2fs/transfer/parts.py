"""The part plan of a large upload: which byte range each part number covers.

Parts are ``part_size`` bytes, doubling every 1,000 parts (capped at B2's 5 GB part limit), so
a file whose final size is unknown while it is being written still fits B2's 10,000 parts:
with 8 MiB parts the plan covers about 8 TB. Because the plan depends only on ``part_size``,
a restart can recompute it from the journal and compare local ranges with the parts B2 has.
The last part is whatever remains (B2 accepts a short last part); every other part is at
least ``part_size`` and so above B2's 5 MB minimum.
"""

from __future__ import annotations

MAX_PARTS = 10_000
MAX_PART_SIZE = 5 * 10**9
_GROWTH_EVERY = 1_000


def part_length(part_size: int, number: int) -> int:
    """Planned length of part ``number`` (1-based) before clipping to the file's end."""
    return min(part_size << ((number - 1) // _GROWTH_EVERY), MAX_PART_SIZE)


def part_start(part_size: int, number: int) -> int:
    start = 0
    full_groups, rest = divmod(number - 1, _GROWTH_EVERY)
    for group in range(full_groups):
        start += _GROWTH_EVERY * min(part_size << group, MAX_PART_SIZE)
    return start + rest * part_length(part_size, number)


def part_range(part_size: int, number: int, file_size: int) -> tuple[int, int]:
    """[start, end) of part ``number`` in a file of ``file_size`` bytes."""
    start = part_start(part_size, number)
    return start, min(start + part_length(part_size, number), file_size)


def part_count(part_size: int, file_size: int) -> int:
    """How many parts a file of ``file_size`` bytes has (at least 1): the number of the part
    holding its last byte."""
    number = _part_at(part_size, file_size - 1) if file_size > 0 else 1
    if number > MAX_PARTS:
        raise ValueError(f"a file of {file_size} bytes does not fit {MAX_PARTS} parts")
    return number


def parts_touched(part_size: int, start: int, end: int) -> range:
    """Part numbers whose range intersects [start, end)."""
    if end <= start:
        return range(0)
    first = _part_at(part_size, start)
    last = _part_at(part_size, end - 1)
    return range(first, last + 1)


def _part_at(part_size: int, offset: int) -> int:
    group_start = 0
    group = 0
    while True:
        length = min(part_size << group, MAX_PART_SIZE)
        group_bytes = _GROWTH_EVERY * length
        if offset < group_start + group_bytes:
            return group * _GROWTH_EVERY + (offset - group_start) // length + 1
        group_start += group_bytes
        group += 1
