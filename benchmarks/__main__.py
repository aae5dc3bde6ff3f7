"""``python -m benchmarks`` (``make bench``): b2fs, rclone mount and the limit, side by side.

    python -m benchmarks [--quick | --scale full|quick|tiny] [--only 1,3] [--systems b2fs,limit]
                         [--profiles wan,unshaped] [--latency-ms 40] [--bandwidth-mbps 80]
                         [-o B2FS_OPTION ...] [--doc PATH | --no-doc] [--results-dir DIR]

Starts the B2 emulator as a subprocess, makes the data sets, then for each network profile
(the WAN profile first, then unshaped) runs each workload on each system: b2fs, rclone mount
(``--vfs-cache-mode full``, and ``writes`` for the writing workloads) and the limit (b2fs's
client straight on the emulator, no FUSE). Prints one table per profile and the issue's
targets, writes ``benchmarks/results/<timestamp>.json`` and, for a complete full-scale run,
regenerates the results section of docs/PERFORMANCE.md (``--doc`` writes it for any run).

Everything it starts is stopped and everything it mounts is unmounted, also on failure,
Ctrl-C or SIGTERM. The exit status is 0 when every measurement ran (missed targets included:
they are reported, not errors), 1 when some failed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from benchmarks import procs, report, targets
from benchmarks.emulator import Profile
from benchmarks.runner import Run, log
from benchmarks.settings import PROFILES, SCALES, SKIPS, WORKLOADS, Settings
from benchmarks.systems import SYSTEMS

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DOC = Path(__file__).resolve().parent.parent / "docs" / "PERFORMANCE.md"


def _int_list(text: str) -> list[int]:
    numbers = sorted({int(x) for x in text.split(",") if x.strip()})
    unknown = [n for n in numbers if n not in WORKLOADS]
    if unknown:
        raise argparse.ArgumentTypeError(f"no workload {unknown[0]} (1-{max(WORKLOADS)})")
    return numbers


def _name_list(choices: tuple[str, ...]) -> argparse._ActionType:
    def parse(text: str) -> list[str]:
        names = [x.strip() for x in text.split(",") if x.strip()]
        for name in names:
            if name not in choices:
                raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(choices)}")
        return [c for c in choices if c in names]

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the quick scale (about 3 minutes)")
    p.add_argument("--scale", choices=sorted(SCALES), help="sizes (default full)")
    p.add_argument(
        "--only", type=_int_list, help="workloads to run, e.g. 1,3 (default: all applicable)"
    )
    p.add_argument(
        "--systems",
        type=_name_list(SYSTEMS),
        default=list(SYSTEMS),
        help=f"systems to run (default {','.join(SYSTEMS)})",
    )
    p.add_argument(
        "--profiles",
        type=_name_list(tuple(PROFILES)),
        help="network profiles (default wan,unshaped; quick: wan; tiny: unshaped)",
    )
    p.add_argument("--latency-ms", type=float, default=40.0, help="WAN profile latency")
    p.add_argument("--bandwidth-mbps", type=float, default=80.0, help="WAN profile per-connection")
    p.add_argument(
        "-o",
        dest="b2fs_options",
        action="append",
        default=[],
        metavar="OPT[,OPT]",
        help="b2fs mount option(s) for every b2fs mount (and the limit's concurrency)",
    )
    p.add_argument(
        "--rclone-args",
        default="",
        metavar="'ARGS'",
        help="extra rclone mount arguments after the default ones (the last value wins)",
    )
    p.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    doc = p.add_mutually_exclusive_group()
    doc.add_argument("--doc", type=Path, help="write the results section into this file")
    doc.add_argument("--no-doc", action="store_true", help="never write docs/PERFORMANCE.md")
    p.add_argument("--work-dir", type=Path, help="where temporary files go (default: /tmp)")
    return p.parse_args(argv)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scale_name = args.scale or ("quick" if args.quick else "full")
    scale = SCALES[scale_name]
    workloads = args.only or sorted(WORKLOADS)
    if not scale.huge_size:
        workloads = [w for w in workloads if w != 8]
    profile_names = args.profiles or list(scale.profiles)
    profiles: list[Profile] = [PROFILES[name] for name in profile_names]
    profiles = [
        Profile("wan", args.latency_ms, args.bandwidth_mbps) if p.name == "wan" else p
        for p in profiles
    ]
    settings = Settings(
        scale, profiles, workloads, args.systems, args.b2fs_options, shlex.split(args.rclone_args)
    )
    try:
        settings.mount_options  # noqa: B018  (checks the -o values)
    except ValueError as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    complete = (
        args.only is None
        and not args.rclone_args
        and not args.b2fs_options
        and args.systems == list(SYSTEMS)
        and scale_name == "full"
    )
    complete = complete and profile_names == list(PROFILES)
    doc_path = args.doc or (DEFAULT_DOC if complete and not args.no_doc else None)

    procs.become_subreaper()
    # Explicitly: a background job of a non-interactive shell starts with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    janitor = procs.Janitor()
    work = Path(tempfile.mkdtemp(prefix="b2fs-bench-", dir=args.work_dir))
    janitor.push(f"work directory {work}", lambda: shutil.rmtree(work, ignore_errors=True))
    janitor.push("left-overs", lambda: procs.sweep([str(work)]))
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.perf_counter()
    meta: dict[str, object] = {
        "started": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": report.machine(),
        "code": report.code_version(),
    }
    for note in SKIPS[scale_name]:
        log(f"note: {note}")
    if meta["machine"]["other_benchmark_runs_at_start"]:  # type: ignore[index]
        log("warning: another benchmark run is going on; both will be skewed")
    run = Run(settings, work, janitor)
    interrupted = False
    try:
        local, remote = run.prepare()
        for profile in profiles:
            run.run_profile(profile, local, remote)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: cleaning up")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
        t_clean = time.perf_counter()
        problems = janitor.clean()
        for problem in problems:
            log(problem)
        log(f"cleaned up in {time.perf_counter() - t_clean:.1f} s")
    if interrupted:
        return 130

    elapsed = time.perf_counter() - t0
    target_profile = "wan" if any(p.name == "wan" for p in profiles) else profiles[0].name
    checked = targets.check(run.results, settings, local, remote, target_profile)
    meta.update(
        {
            "finished": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "elapsed_s": elapsed,
            "prepare_s": run.prepare_seconds,
            "targets_profile": target_profile,
            "stdlib_files": len(local.tar_files),
            "stdlib_dirs": local.tar_dirs,
            "stdlib_bytes": sum(local.tar_files.values()),
            "load_average_at_end": os.getloadavg(),
            "other_benchmark_runs_at_end": report.other_benchmark_runs(),
            "budget_s": scale.budget,
            "skipped_for_budget": run.skipped,
            "b2fs_code_hashes": sorted(
                {str(r.extra["b2fs_code"]) for r in run.results if "b2fs_code" in r.extra}
            ),
        }
    )
    data = report.build_json(run.results, checked, settings, meta)
    print(report.print_report(run.results, settings, checked, target_profile))
    stamp = started.strftime("%Y%m%d-%H%M%S")
    json_path = report.write_json(data, args.results_dir, stamp)
    print(f"\nresults: {json_path}")
    if doc_path is not None:
        report.update_doc(doc_path, report.markdown_section(data, run.results, settings))
        print(f"updated: {doc_path}")
    else:
        print("docs/PERFORMANCE.md not updated (not a complete full run; --doc PATH writes it)")
    for skipped in run.skipped:
        print(f"not run: {skipped}")
    over = (
        f" (over the {scale.budget:.0f} s budget)"
        if scale.budget and elapsed > scale.budget
        else ""
    )
    print(f"run took {elapsed:.0f} s{over}")
    return 0 if all(r.ok for r in run.results) else 1


if __name__ == "__main__":
    sys.exit(main())
