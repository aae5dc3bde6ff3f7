"""The targets of issue 7, checked against one run's results (on the WAN profile).

Each check gives met (True/False), or None when the run did not measure what it needs, and
the figures it compared. "rclone" is the better of rclone's two cache modes for the workload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from benchmarks.dataset import LocalData, RemoteData
from benchmarks.results import MiB, Result, speedup
from benchmarks.settings import Settings

RSS_BOUND = 200 * MiB
LIST_PAGE = 10_000


@dataclass
class Target:
    id: str
    text: str
    met: bool | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "met": self.met, "detail": self.detail}

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "not measured"}[self.met]


class Results:
    """Lookups in one profile's results."""

    def __init__(self, results: list[Result], profile: str) -> None:
        self.results = [r for r in results if r.profile == profile]

    def get(self, workload: int, system: str) -> Result | None:
        for r in self.results:
            if r.workload == workload and r.system == system and r.ok:
                return r
        return None

    def rclone(self, workload: int) -> Result | None:
        """The better of rclone (full) and rclone-writes for this workload."""
        candidates = [self.get(workload, s) for s in ("rclone", "rclone-writes")]
        found = [r for r in candidates if r is not None and r.value is not None]
        if not found:
            return None
        return max(found, key=lambda r: speedup(workload, r, found[0]) or 0.0)

    def ran(self, workload: int, system: str) -> Result | None:
        for r in self.results:
            if r.workload == workload and r.system == system:
                return r
        return None


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _ratio_check(
    res: Results, workload: int, against: str, at_least: float
) -> tuple[bool | None, str]:
    b2fs = res.get(workload, "b2fs")
    other = res.rclone(workload) if against == "rclone" else res.get(workload, against)
    ratio = speedup(workload, b2fs, other)
    if ratio is None:
        missing = "b2fs" if b2fs is None else against
        return None, f"no result for {missing}"
    name = other.system if other is not None else against
    text = f"b2fs/{name} = {ratio:.2f} (needs >= {at_least:g})"
    if against == "rclone":
        ceiling = speedup(workload, res.get(workload, "limit"), other)
        if ceiling is not None:
            text += f"; the limit itself is {ceiling:.2f}x {name}"
    return ratio >= at_least, text


def _both(*checks: tuple[bool | None, str]) -> tuple[bool | None, str]:
    verdicts = [c[0] for c in checks]
    met = False if False in verdicts else (None if None in verdicts else True)
    return met, "; ".join(c[1] for c in checks)


def _upload_calls(
    res: Results, workload: int, files: int, dirs: int, concurrency: int
) -> tuple[bool | None, str]:
    b2fs = res.get(workload, "b2fs")
    if b2fs is None:
        return None, "no b2fs result"
    uploads = b2fs.calls.get("b2_upload_file", 0) + b2fs.calls.get("b2_upload_part", 0)
    urls = b2fs.calls.get("b2_get_upload_url", 0) + b2fs.calls.get("b2_get_upload_part_url", 0)
    ok = uploads <= files + dirs and urls <= concurrency
    return ok, (
        f"{uploads} upload calls for {files} files and {dirs} directories "
        f"(needs <= {files + dirs}); {urls} upload-URL calls (needs <= {concurrency}, the "
        "upload concurrency)"
    )


def check(
    results: list[Result],
    settings: Settings,
    local: LocalData,
    remote: RemoteData,
    profile: str = "wan",
) -> list[Target]:
    res = Results(results, profile)
    options = settings.mount_options
    targets: list[Target] = []

    def add(id: str, text: str, outcome: tuple[bool | None, str]) -> None:
        targets.append(Target(id, text, outcome[0], outcome[1]))

    add(
        "1",
        "(1) sequential read, cold: at least 0.8x the limit",
        _ratio_check(res, 1, "limit", 0.8),
    )

    b2fs2, rclone2 = res.get(2, "b2fs"), res.rclone(2)
    if b2fs2 is None or b2fs2.mb_per_s is None:
        warm: tuple[bool | None, str] = (None, "no b2fs result")
    else:
        rate = b2fs2.mb_per_s
        other = rclone2.mb_per_s if rclone2 is not None else None
        met: bool | None = None
        if rate < 400:
            met = False
        elif other is not None:
            met = rate > other
        shown = "no rclone result" if other is None else f"rclone {other:.1f} MB/s"
        warm = (met, f"b2fs {rate:.1f} MB/s (needs >= 400), {shown}")
    add("2", "(2) sequential read, warm: at least 400 MB/s, and faster than rclone", warm)

    b2fs3, limit3 = res.get(3, "b2fs"), res.get(3, "limit")
    if b2fs3 is None:
        rnd: tuple[bool | None, str] = (None, "no b2fs result")
    else:
        reads = len(b2fs3.extra.get("latencies_ms", [])) or 1
        per_read = (b2fs3.file_bytes_sent or 0) / reads
        block_ok = per_read <= options.block_size
        detail = (
            f"{per_read / 1024:.1f} KiB downloaded per read (needs <= one block, "
            f"{options.block_size // 1024} KiB)"
        )
        if limit3 is None or limit3.median_ms is None or b2fs3.median_ms is None:
            rnd = (False if not block_ok else None, detail + "; no limit result for latency")
        else:
            factor = b2fs3.median_ms / limit3.median_ms
            p90 = b2fs3.to_json()["extra"].get("p90_ms")
            rnd = (
                block_ok and factor <= 1.5,
                detail + f"; median {b2fs3.median_ms:.1f} ms = {factor:.2f}x one request "
                f"({limit3.median_ms:.1f} ms, needs <= 1.5x); p90 {_fmt(p90, 1)} ms (most "
                "reads after the first few hundred hit blocks already fetched)",
            )
    add(
        "3",
        "(3) random 4 KiB reads: at most one block downloaded per read; median latency "
        "within 1.5x one request",
        rnd,
    )

    add(
        "4",
        "(4) sequential write until on B2: at least 0.8x the limit and 2x rclone",
        _both(_ratio_check(res, 4, "limit", 0.8), _ratio_check(res, 4, "rclone", 2.0)),
    )
    add(
        "5",
        "(5) small files until on B2: at least 4x rclone; at most one upload call per file "
        "plus amortised upload URLs",
        _both(
            _ratio_check(res, 5, "rclone", 4.0),
            _upload_calls(res, 5, len(local.small_files), 1, options.upload_concurrency),
        ),
    )

    b2fs6 = res.get(6, "b2fs")
    folders = remote.tree_folders + 2  # the mount root and tree/ are listed too
    pages = math.ceil(remote.tree_files / LIST_PAGE)
    bound = folders + pages + 2
    if b2fs6 is None:
        calls6: tuple[bool | None, str] = (None, "no b2fs result")
    else:
        calls6 = (
            b2fs6.calls_total <= bound,
            f"{b2fs6.calls_total} B2 calls, mount included (needs <= {folders} folders + "
            f"{pages} pages + 2 = {bound})",
        )
    add(
        "6",
        "(6) ls -lR: B2 calls at most folders + pages + 2; at least 4x rclone",
        _both(calls6, _ratio_check(res, 6, "rclone", 4.0)),
    )
    add(
        "7",
        "(7) tar x + du -s until on B2: at least 4x rclone; at most one upload call per "
        "file plus amortised upload URLs",
        _both(
            _ratio_check(res, 7, "rclone", 4.0),
            _upload_calls(
                res, 7, len(local.tar_files), local.tar_dirs + 1, options.upload_concurrency
            ),
        ),
    )

    measured = [r for r in results if r.system == "b2fs" and r.peak_rss_bytes is not None]
    over = [r for r in measured if (r.peak_rss_bytes or 0) > RSS_BOUND]
    huge = [r for r in results if r.system == "b2fs" and r.workload == 8]
    if not measured:
        rss: tuple[bool | None, str] = (None, "no b2fs measurement")
    else:
        worst = max(measured, key=lambda r: r.peak_rss_bytes or 0)
        text = (
            f"highest {(worst.peak_rss_bytes or 0) / MiB:.1f} MiB in workload {worst.workload} "
            f"({worst.profile})"
        )
        if over:
            text += "; over 200 MiB in: " + ", ".join(
                f"{r.workload} ({r.profile}, {(r.peak_rss_bytes or 0) / MiB:.1f} MiB)" for r in over
            )
        if not huge:
            text += "; the 4 GiB workload (8) was not run"
        met = False if over else (True if huge and all(h.ok for h in huge) else None)
        if huge and not all(h.ok for h in huge):
            text += "; the 4 GiB workload failed"
        rss = (met, text)
    add(
        "rss",
        "daemon peak RSS at most 200 MiB in every workload (all profiles), including a 4 GiB "
        "write and read",
        rss,
    )
    return targets
