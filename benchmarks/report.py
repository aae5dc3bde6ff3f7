"""The report: the table on the terminal, the JSON file, and docs/PERFORMANCE.md's section.

The document keeps its hand-written parts; the runner replaces only what lies between
:data:`BEGIN` and :data:`END` (added at the end if missing). Figures are written as measured,
with two decimals at most; ratios come from the same run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.results import MB, MiB, Result, speedup
from benchmarks.settings import APPLIES, PROFILES, SKIPS, WORKLOADS, Settings
from benchmarks.systems import RCLONE, RCLONE_FLAGS
from benchmarks.targets import Results, Target

BEGIN = "<!-- BEGIN GENERATED BENCHMARK RESULTS (python -m benchmarks; edits here are lost) -->"
END = "<!-- END GENERATED BENCHMARK RESULTS -->"
ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gib": round(mem / (1 << 30), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "rclone": _first_line([RCLONE, "version"]),
        "load_average_at_start": os.getloadavg(),
        "other_benchmark_runs_at_start": other_benchmark_runs(),
    }


def other_benchmark_runs() -> list[int]:
    """Pids of other ``python -m benchmarks`` runs on this machine (they skew the figures)."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if b"-m" in args and b"benchmarks" in args and any(b"python" in a for a in args[:1]):
            found.append(int(entry))
    return found


def code_version() -> dict[str, Any]:
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(ROOT), "status", "--porcelain", "--", "b2fs"])
    return {"commit": commit, "b2fs_has_uncommitted_changes": bool(dirty)}


def _first_line(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return ""
    return out.strip().splitlines()[0] if out.strip() else ""


# -- formatting -------------------------------------------------------------------------------


def _num(x: float) -> str:
    if x >= 100:
        return f"{x:.1f}"
    return f"{x:.2f}"


def cell(result: Result | None, applies: bool = True) -> str:
    if not applies:
        return "—"
    if result is None:
        return "not run"
    if not result.ok:
        return "FAILED"
    value = result.value
    if value is None:
        return "n/a"
    text = f"{_num(value)} {WORKLOADS[result.workload].metric}"
    if result.extra.get("capped"):
        text += f" ({len(result.extra['latencies_ms'])} reads)"
    return text


def _ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}x"


def table_rows(results: list[Result], profile: str, settings: Settings) -> list[list[str]]:
    res = Results(results, profile)
    rows = []
    for number in sorted(set(settings.workloads)):
        if not any(r.workload == number for r in res.results):
            continue
        wl = WORKLOADS[number]
        b2fs = res.get(number, "b2fs")
        limit = res.get(number, "limit")
        rclone = res.rclone(number)
        rclone_cell = cell(rclone) if rclone else _run_state(res, number, "rclone")
        if rclone is not None and rclone.system == "rclone-writes":
            rclone_cell += " (writes)"
        rows.append(
            [
                f"{number}. {wl.title}",
                cell(b2fs) if b2fs else _run_state(res, number, "b2fs"),
                rclone_cell,
                cell(limit) if limit else _run_state(res, number, "limit"),
                _ratio(speedup(number, b2fs, limit)),
                _ratio(speedup(number, b2fs, rclone)),
            ]
        )
    return rows


def _run_state(res: Results, number: int, system: str) -> str:
    systems = ("rclone", "rclone-writes") if system == "rclone" else (system,)
    ran = [res.ran(number, s) for s in systems]
    if any(r is not None and not r.ok for r in ran):
        return "FAILED"
    if not any(number in APPLIES[s] for s in systems):
        return "—"
    return "not run"


HEADER = ["workload", "b2fs", "rclone", "limit", "b2fs/limit", "b2fs/rclone"]


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _calls_text(calls: dict[str, int]) -> str:
    parts = sorted(calls.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{op.removeprefix('b2_')} {n}" for op, n in parts)


def detail_rows(results: list[Result], profile: str) -> list[list[str]]:
    rows = []
    for r in sorted(
        (r for r in results if r.profile == profile),
        key=lambda r: (r.workload, list(APPLIES).index(r.system)),
    ):
        notes = []
        if not r.ok:
            notes.append(f"FAILED: {(r.error or '').splitlines()[0][:160]}")
        if r.phases and len(r.phases) > 1:
            notes.append(", ".join(f"{k} {v:.2f} s" for k, v in r.phases.items()))
        if r.workload == 3 and r.ok:
            reads = len(r.extra.get("latencies_ms", []))
            lat = r.to_json()["extra"]
            if reads:
                notes.append(
                    f"{reads} of {r.extra.get('reads_asked')} reads; p90 {lat['p90_ms']:.1f} ms"
                )
                if r.file_bytes_sent is not None:
                    notes.append(f"{r.file_bytes_sent / reads / 1024:.1f} KiB downloaded per read")
        if r.workload == 8 and r.ok:
            notes.append(
                f"write {_num(r.extra['write_mb_per_s'] or 0)} MB/s, peak "
                f"{(r.extra['write_peak_rss_bytes'] or 0) / MiB:.1f} MiB; read "
                f"{_num(r.extra['read_mb_per_s'] or 0)} MB/s, peak "
                f"{(r.extra['read_peak_rss_bytes'] or 0) / MiB:.1f} MiB"
            )
        if r.extra.get("on_b2_when_system_returned") is False:
            notes.append("data reached B2 after the system returned")
        rows.append(
            [
                str(r.workload),
                r.system,
                "—" if r.seconds is None else f"{r.seconds:.2f}",
                cell(r),
                f"{r.calls_total}" + (f" ({_calls_text(r.calls)})" if r.calls else ""),
                "—" if r.cpu_seconds is None else f"{r.cpu_seconds:.2f}",
                "—" if r.peak_rss_bytes is None else f"{r.peak_rss_bytes / MiB:.1f}",
                "—" if r.emulator_cpu_seconds is None else f"{r.emulator_cpu_seconds:.2f}",
                "—" if not r.file_bytes_sent else f"{r.file_bytes_sent / MB:.1f}",
                "—" if r.mount_seconds is None else f"{r.mount_seconds:.2f}",
                "; ".join(notes),
            ]
        )
    return rows


DETAIL_HEADER = [
    "wl",
    "system",
    "wall s",
    "result",
    "B2 calls",
    "daemon CPU s",
    "daemon peak RSS MiB",
    "emulator CPU s",
    "B2 MB sent / stored",
    "mount s",
    "notes",
]


# -- outputs ----------------------------------------------------------------------------------


def build_json(
    results: list[Result],
    targets: list[Target],
    settings: Settings,
    meta: dict[str, Any],
) -> dict[str, Any]:
    return {
        **meta,
        "settings": settings_json(settings),
        "results": [r.to_json() for r in results],
        "tables": {
            p.name: [
                dict(zip(HEADER, row, strict=True)) for row in table_rows(results, p.name, settings)
            ]
            for p in settings.profiles
        },
        "targets": [t.to_json() for t in targets],
        "skipped": SKIPS[settings.scale.name],
    }


def settings_json(settings: Settings) -> dict[str, Any]:
    options = settings.mount_options
    return {
        "scale": settings.scale.__dict__,
        "profiles": {p.name: p.describe() for p in settings.profiles},
        "workloads": settings.workloads,
        "systems": settings.systems,
        "b2fs_options": settings.b2fs_options,
        "b2fs_effective": {
            "block_size": options.block_size,
            "download_concurrency": options.download_concurrency,
            "upload_concurrency": options.upload_concurrency,
            "part_size": options.part_size,
            "large_file_threshold": options.large_file_threshold,
            "readahead": options.readahead,
            "writeback_delay": options.writeback_delay,
        },
        "rclone_flags": RCLONE_FLAGS + settings.rclone_args,
    }


def write_json(data: dict[str, Any], directory: Path, stamp: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return path


def markdown_section(data: dict[str, Any], results: list[Result], settings: Settings) -> str:
    m = data["machine"]
    s = data["settings"]
    eff = s["b2fs_effective"]
    scale = settings.scale
    out = [BEGIN, ""]
    out.append(f"### Run of {data['started']} ({scale.name} scale)")
    out.append("")
    out.append(
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Linux "
        f"{m['kernel']}, Python {m['python']}, {m['rclone']}. Load average at start "
        f"{m['load_average_at_start'][0]:.2f} (1 min); the machine is shared and noisy."
    )
    out.append(
        f"- Code: b2fs at commit {data['code']['commit']}"
        + (
            " with uncommitted changes in b2fs/"
            if data["code"]["b2fs_has_uncommitted_changes"]
            else ""
        )
        + f". Run took {data['elapsed_s']:.0f} s (data sets {data['prepare_s']:.0f} s)."
    )
    given = ", ".join(s["b2fs_options"])
    out.append(
        f"- b2fs: default options{' plus ' + given if given else ''}"
        f" (block_size {eff['block_size'] // 1024} KiB, download_concurrency "
        f"{eff['download_concurrency']}, upload_concurrency {eff['upload_concurrency']}, "
        f"part_size {eff['part_size'] // MiB} MiB, large_file_threshold "
        f"{eff['large_file_threshold'] // MiB} MiB, readahead {eff['readahead'] // MiB} MiB)."
    )
    out.append(
        "- rclone: `--vfs-cache-mode full` (column rclone) or `writes` (marked (writes)), "
        "with `" + " ".join(s["rclone_flags"]) + "`."
    )
    out.append(
        f"- Sizes: files of {scale.file_size // MiB} MiB; {scale.random_reads} random reads; "
        f"{scale.small_files} files of {scale.small_size // 1024} KiB; "
        f"{scale.tree_folders * scale.tree_per_folder} files in {scale.tree_folders} folders; "
        f"{data['stdlib_files']} stdlib files in {data['stdlib_dirs']} directories "
        f"({data['stdlib_bytes'] / MB:.1f} MB)"
        + (f"; workload 8: {scale.huge_size // (1 << 30)} GiB" if scale.huge_size else "")
        + "."
    )
    for note in SKIPS[scale.name]:
        out.append(f"- Scope: {note}.")
    for note in data["skipped_for_budget"]:
        out.append(f"- Not run in this run: {note}.")
    others = data["machine"]["other_benchmark_runs_at_start"]
    if others or data.get("other_benchmark_runs_at_end"):
        out.append(
            "- Another benchmark run was going on at the same time (pids "
            f"{others} at the start, {data.get('other_benchmark_runs_at_end')} at the end): "
            "the figures are skewed by it."
        )
    hashes = data["b2fs_code_hashes"]
    if len(hashes) > 1:
        out.append(
            f"- b2fs's sources changed during this run (hashes {', '.join(hashes)}, recorded "
            "with each b2fs result in the JSON): figures measured on different code."
        )
    for profile in settings.profiles:
        out += ["", f"#### Profile {profile.name}: {profile.describe()}", ""]
        rows = table_rows(results, profile.name, settings)
        out.append(markdown_table(HEADER, rows))
        out += ["", "Details (B2 calls counted by the emulator, mount included):", ""]
        out.append(markdown_table(DETAIL_HEADER, detail_rows(results, profile.name)))
    out += ["", f"#### Targets (profile {data['targets_profile']})", ""]
    out.append(
        markdown_table(
            ["target", "verdict", "as measured"],
            [[t["text"], _verdict(t["met"]), t["detail"]] for t in data["targets"]],
        )
    )
    failures = [r for r in results if not r.ok]
    if failures:
        out += ["", "#### Failures", ""]
        for r in failures:
            out.append(
                f"- {r.profile}, workload {r.workload}, {r.system}: {(r.error or '').strip()}"
            )
            if r.log_tail:
                out += [
                    "",
                    "  ```",
                    *("  " + line for line in r.log_tail.splitlines()[-12:]),
                    "  ```",
                ]
    out += ["", END]
    return "\n".join(out) + "\n"


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**MISSED**", None: "not measured"}[met]


def update_doc(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Performance\n\n"
    if BEGIN in text and END in text:
        before = text.split(BEGIN, 1)[0]
        after = text.split(END, 1)[1]
        text = before + section.rstrip("\n") + after
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def print_report(
    results: list[Result], settings: Settings, targets: list[Target], profile: str
) -> str:
    lines = []
    for p in settings.profiles:
        lines.append(f"\n== {p.name}: {p.describe()}")
        lines.append(text_table(table_rows(results, p.name, settings)))
    lines.append(f"\n== targets (profile {profile})")
    for t in targets:
        lines.append(f"{t.verdict.upper() if t.met is False else t.verdict:>12}  {t.text}")
        lines.append(f"{'':>12}  {t.detail}")
    missed = [t for t in targets if t.met is False]
    if missed:
        lines.append(f"\n{len(missed)} target(s) MISSED: " + ", ".join(t.id for t in missed))
    failed = [r for r in results if not r.ok]
    for r in failed:
        lines.append(f"FAILED: {r.profile} workload {r.workload} on {r.system}: {r.error}")
    return "\n".join(lines)


__all__ = ["PROFILES", "machine"]
