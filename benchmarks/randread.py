"""Random 4 KiB reads of one file, one at a time, each timed (workload 3's program).

    python -m benchmarks.randread PATH --size BYTES --count N [--seed S] [--deadline SECONDS]
                                  [--verify LOCAL_COPY]

Offsets are 4 KiB-aligned, drawn from ``random.Random(seed)`` (the limit draws the same ones).
The file is opened once with ``posix_fadvise(POSIX_FADV_RANDOM)``, as a program doing random
reads would, so that the kernel's readahead does not turn 4 KiB reads into larger ones. Prints
one JSON object: the latency of every read (ms), and how many reads differed from
``--verify`` (the same bytes, on local disk).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

READ_SIZE = 4096


def offsets(size: int, count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    slots = max(1, size // READ_SIZE)
    return [rng.randrange(slots) * READ_SIZE for _ in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--deadline", type=float, default=0.0, help="stop after this long")
    parser.add_argument("--verify", help="a local file with the same bytes")
    args = parser.parse_args(argv)
    fd = os.open(args.path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    check = os.open(args.verify, os.O_RDONLY) if args.verify else None
    latencies: list[float] = []
    mismatches = 0
    start = time.perf_counter()
    for offset in offsets(args.size, args.count, args.seed):
        if args.deadline and time.perf_counter() - start > args.deadline:
            break
        t0 = time.perf_counter()
        data = os.pread(fd, READ_SIZE, offset)
        latencies.append((time.perf_counter() - t0) * 1000)
        if check is not None and data != os.pread(check, READ_SIZE, offset):
            mismatches += 1
    elapsed = time.perf_counter() - start
    os.close(fd)
    json.dump({"latencies_ms": latencies, "mismatches": mismatches, "seconds": elapsed}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
