"""One measurement: a workload on a system under a network profile, and its headline value."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.settings import WORKLOADS

MB = 1_000_000
MiB = 1 << 20


@dataclass
class Result:
    profile: str
    workload: int
    system: str
    ok: bool = True
    error: str | None = None
    seconds: float | None = None  # wall time of the workload (mount excluded)
    phases: dict[str, float] = field(default_factory=dict)
    bytes: int = 0  # payload read or written
    files: int = 0
    mount_seconds: float | None = None
    calls: dict[str, int] = field(default_factory=dict)  # B2 calls, mount included
    cpu_seconds: float | None = None  # the daemon's (or the limit process's)
    peak_rss_bytes: int | None = None
    emulator_cpu_seconds: float | None = None
    file_bytes_sent: int | None = None  # by the emulator (sendfile), read workloads
    extra: dict[str, Any] = field(default_factory=dict)
    log_tail: str | None = None

    @property
    def calls_total(self) -> int:
        return sum(self.calls.values())

    @property
    def mb_per_s(self) -> float | None:
        if not self.seconds or not self.bytes:
            return None
        return self.bytes / self.seconds / MB

    @property
    def files_per_s(self) -> float | None:
        if not self.seconds or not self.files:
            return None
        return self.files / self.seconds

    @property
    def median_ms(self) -> float | None:
        latencies = self.extra.get("latencies_ms")
        return statistics.median(latencies) if latencies else None

    @property
    def value(self) -> float | None:
        """The headline figure, in the workload's metric."""
        if not self.ok:
            return None
        metric = WORKLOADS[self.workload].metric
        if metric == "MB/s":
            return self.mb_per_s
        if metric == "files/s":
            return self.files_per_s
        if metric == "ms":
            return self.median_ms
        return self.seconds

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["calls_total"] = self.calls_total
        data["value"] = self.value
        data["metric"] = WORKLOADS[self.workload].metric
        data["mb_per_s"] = self.mb_per_s
        data["files_per_s"] = self.files_per_s
        data["peak_rss_mib"] = None if self.peak_rss_bytes is None else self.peak_rss_bytes / MiB
        if "latencies_ms" in self.extra:
            latencies = sorted(self.extra["latencies_ms"])
            data["extra"] = {k: v for k, v in self.extra.items() if k != "latencies_ms"}
            data["extra"]["reads"] = len(latencies)
            if latencies:
                data["extra"]["median_ms"] = statistics.median(latencies)
                data["extra"]["p90_ms"] = latencies[int(len(latencies) * 0.9)]
                data["extra"]["max_ms"] = latencies[-1]
        return data


def speedup(workload: int, b2fs: Result | None, other: Result | None) -> float | None:
    """How many times better b2fs did than ``other`` (above 1: b2fs is better)."""
    if b2fs is None or other is None:
        return None
    a, b = b2fs.value, other.value
    if not a or not b:
        return None
    return a / b if WORKLOADS[workload].higher_is_better else b / a
