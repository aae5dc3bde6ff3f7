"""The run: data sets, then for each profile the emulator, and each workload on each system.

Around every measurement the runner

- resets the emulator's call counts *before mounting* (a fresh mount's own calls, such as
  authorizing and finding the bucket, count towards its workload) and reads them when the
  clock stops, minus the runner's own listing calls;
- measures the daemon (b2fs's from the pid in ``<cache-dir>/lock``, rclone's, or the limit
  process) from just before the workload to its end: CPU seconds and peak RSS;
- measures the emulator's CPU seconds and, for reads, the file bytes it sent;
- unmounts and ends the daemon, and removes the cache, whatever happened.

A workload that fails on a system is recorded as failed with its error and the tail of the
daemon's log; the run goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from benchmarks import dataset, procs, workloads
from benchmarks.emulator import Api, EmulatorProcess, Profile
from benchmarks.results import Result
from benchmarks.settings import APPLIES, PROFILES, WORKLOADS, Settings
from benchmarks.systems import Mounted, Mounter
from benchmarks.workloads import Context, fsync_path

_T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


class Run:
    def __init__(self, settings: Settings, work: Path, janitor: procs.Janitor) -> None:
        self.settings = settings
        self.work = work
        self.janitor = janitor
        self.results: list[Result] = []
        self.data_dir = work / "b2-data"
        self.prepare_seconds = 0.0
        self.t_start = time.monotonic()
        self.skipped: list[str] = []
        # Harness seconds (mounts and clean-up included) per (profile, workload), all systems.
        self.durations: dict[tuple[str, int], float] = {}
        self._first_profile = ""

    # -- preparation -------------------------------------------------------------------------

    def prepare(self) -> tuple[dataset.LocalData, dataset.RemoteData]:
        scale = self.settings.scale
        t0 = time.perf_counter()
        log(f"preparing data sets ({scale.name} scale) ...")
        local = dataset.make_local(
            self.work,
            scale.file_size,
            scale.small_files,
            scale.small_size,
            scale.stdlib_files,
        )
        self.data_dir.mkdir()
        emulator = EmulatorProcess(
            str(self.data_dir), PROFILES["unshaped"], str(self.work / "emulator.log")
        )
        stop = self.janitor.push("emulator (preparation)", emulator.stop)
        emulator.start()
        try:
            remote = dataset.make_remote(
                emulator.url,
                emulator.key_id,
                emulator.key,
                local,
                scale.tree_folders,
                scale.tree_per_folder,
            )
        finally:
            stop()
        self.prepare_seconds = time.perf_counter() - t0
        log(f"  done in {self.prepare_seconds:.1f} s")
        return local, remote

    # -- one profile -------------------------------------------------------------------------

    def run_profile(
        self, profile: Profile, local: dataset.LocalData, remote: dataset.RemoteData
    ) -> None:
        log(f"profile {profile.name}: {profile.describe()}")
        emulator = EmulatorProcess(str(self.data_dir), profile, str(self.work / "emulator.log"))
        stop = self.janitor.push(f"emulator ({profile.name})", emulator.stop)
        emulator.start()
        api = Api(emulator.url, emulator.key_id, emulator.key)
        try:
            mounter = Mounter(
                emulator,
                dataset.BUCKET,
                self.work,
                self.janitor,
                self.settings.b2fs_options,
                self.settings.rclone_args,
            )
            ctx = Context(self.settings, profile, emulator, api, mounter, local, remote, self.work)
            self._first_profile = self._first_profile or profile.name
            order = sorted(self.settings.workloads, key=lambda n: (n != 8, n))
            for number in order:
                if number == 2 and 1 in self.settings.workloads:
                    continue  # measured right after workload 1, on the same mounts
                if number == 8 and profile.name not in self.settings.huge_profiles:
                    continue
                if not self._within_budget(profile.name, number):
                    continue
                t0 = time.monotonic()
                for system in self.settings.systems:
                    if (
                        system == "rclone-writes"
                        and profile.name not in self.settings.writes_mode_profiles
                    ):
                        continue
                    if number in APPLIES[system]:
                        self.measure(ctx, number, system)
                self.durations[(profile.name, number)] = time.monotonic() - t0
        finally:
            api.close()
            stop()

    def _within_budget(self, profile: str, number: int) -> bool:
        """The first profile always runs in full; later, a workload whose duration estimated
        from the first profile would take the run past the budget is skipped (and listed)."""
        budget = self.settings.scale.budget
        if not budget or profile == self._first_profile:
            return True
        estimate = self._estimate(number)
        elapsed = time.monotonic() - self.t_start
        # The wrap-up (stopping everything, deleting gigabytes, the report) takes about as
        # long as making the data sets did (34 s in a full run of 2026-11-26).
        reserve = 30.0 + self.prepare_seconds
        if elapsed + estimate + reserve <= budget:
            return True
        why = (
            f"{profile} profile, workload {number}: skipped, its estimated {estimate:.0f} s "
            f"after {elapsed:.0f} s, plus {reserve:.0f} s to wrap up, would pass the "
            f"{budget:.0f} s budget (run it with --profiles {profile} --only {number})"
        )
        self.skipped.append(why)
        log(why)
        return False

    def _estimate(self, number: int) -> float:
        first = self._first_profile
        if number != 8:
            return self.durations.get((first, 1 if number == 2 else number), 0.0)
        # The 4 GiB write and read, at the rates b2fs had in the first profile.
        size = self.settings.scale.huge_size
        rates = []
        for w in (4, 1):
            found = [
                r
                for r in self.results
                if (r.profile, r.workload, r.system, r.ok) == (first, w, "b2fs", True)
            ]
            rate = found[0].mb_per_s if found else None
            rates.append(rate * 1e6 if rate else 0.0)
        if not all(rates):
            return 0.0
        return size / rates[0] + size / rates[1] + 20.0

    def measure(self, ctx: Context, number: int, system: str) -> None:
        try:
            self._measure(ctx, number, system)
        finally:
            if number in (4, 8):
                self._delete_written(ctx, ctx.name(number, system))

    def _delete_written(self, ctx: Context, prefix: str) -> None:
        """Delete a big written file from the emulator once measured (disk space); its calls
        come after the measurement's count."""
        try:
            for name, item in ctx.api.list_names(ctx.remote.bucket_id, prefix).items():
                ctx.api.call("b2_delete_file_version", fileName=name, fileId=item["fileId"])
        except Exception as exc:
            log(f"  could not delete {prefix}* from the emulator: {exc}")

    def _measure(self, ctx: Context, number: int, system: str) -> None:
        workloads.warm_inputs(ctx, number)
        if system == "limit":
            self._record(self._measure_limit(ctx, number))
        elif number == 8:
            self._record(self._measure_huge(ctx, system))
        elif number in (1, 2):
            for result in self._measure_reads(ctx, number, system):
                self._record(result)
        else:
            self._record(self._measure_fuse(ctx, number, system)[0])

    def _record(self, result: Result) -> None:
        if result.system == "b2fs":
            result.extra["b2fs_code"] = code_hash()
        self.results.append(result)
        value = result.value
        shown = "FAILED: " + (result.error or "") if not result.ok else f"{value:.2f}"
        metric = WORKLOADS[result.workload].metric
        log(
            f"  [{result.profile}] {result.workload} {result.system}: {shown} "
            f"{metric if result.ok else ''} ({result.seconds or 0:.2f} s, "
            f"{result.calls_total} calls)"
        )

    # -- measuring ---------------------------------------------------------------------------

    def _measure_fuse(
        self,
        ctx: Context,
        number: int,
        system: str,
        body: Callable[[Context, Mounted, Result], None] | None = None,
        after: Callable[[Mounted], list[Result]] | None = None,
    ) -> tuple[Result, list[Result]]:
        """Mount fresh and run ``body`` measured; then ``after`` makes more measurements on
        the same mount. Returns the first result and ``after``'s."""
        result = Result(ctx.profile.name, number, system)
        more: list[Result] = []
        ctx.emulator.reset_calls()
        polls0 = Counter(ctx.api.counts)
        try:
            mounted = ctx.mounter.mount(system)
        except Exception as exc:
            result.ok, result.error = False, str(exc).splitlines()[0]
            result.log_tail = str(exc)
            return result, more
        result.mount_seconds = mounted.mount_seconds
        try:
            meter = procs.Meter(mounted.pid)
            meter.start(fresh_process=True)
            emu_cpu, emu_sent = ctx.emulator.cpu_seconds(), ctx.emulator.bytes_sent()
            try:
                (body or workloads.FUSE[number])(ctx, mounted, result)
            finally:
                usage = meter.stop()
                result.cpu_seconds, result.peak_rss_bytes = usage.cpu_seconds, usage.peak_rss_bytes
                result.emulator_cpu_seconds = ctx.emulator.cpu_seconds() - emu_cpu
                result.file_bytes_sent = ctx.emulator.bytes_sent() - emu_sent
                result.calls = _minus(ctx.emulator.calls(), Counter(ctx.api.counts) - polls0)
            if after is not None:
                more = after(mounted)
        except Exception as exc:
            result.ok = False
            result.error = _describe(exc)
            result.log_tail = mounted.log_tail()
        finally:
            mounted.close()
        return result, more

    def _measure_reads(self, ctx: Context, number: int, system: str) -> list[Result]:
        """Workload 1 (cold) and, if selected, 2 (warm: the same read again, same mount).
        Workload 2 alone does an unmeasured cold read first."""
        want_warm = 2 in self.settings.workloads

        def warm(mounted: Mounted) -> list[Result]:
            if not want_warm:
                return []
            result = Result(ctx.profile.name, 2, system)
            ctx.emulator.reset_calls()
            meter = procs.Meter(mounted.pid)
            meter.start(fresh_process=False)
            emu_cpu, emu_sent = ctx.emulator.cpu_seconds(), ctx.emulator.bytes_sent()
            try:
                workloads.seq_read_warm(ctx, mounted, result)
            except Exception as exc:
                result.ok, result.error = False, _describe(exc)
                result.log_tail = mounted.log_tail()
            usage = meter.stop()
            result.cpu_seconds, result.peak_rss_bytes = usage.cpu_seconds, usage.peak_rss_bytes
            result.emulator_cpu_seconds = ctx.emulator.cpu_seconds() - emu_cpu
            result.file_bytes_sent = ctx.emulator.bytes_sent() - emu_sent
            result.calls = ctx.emulator.calls()
            return [result]

        if number == 1:
            cold, extra = self._measure_fuse(ctx, 1, system, after=warm)
            if not cold.ok and want_warm:
                skipped = Result(ctx.profile.name, 2, system, ok=False)
                skipped.error = "not measured: the cold read failed"
                extra = [skipped]
            return [cold, *extra]
        # Workload 2 alone: prime with an unmeasured cold read.
        primed, extra = self._measure_fuse(ctx, 1, system, after=warm)
        if not primed.ok:
            primed.workload = 2
            primed.error = f"priming read failed: {primed.error}"
            return [primed]
        return extra

    def _measure_limit(self, ctx: Context, number: int) -> Result:
        result = Result(ctx.profile.name, number, "limit")
        ctx.emulator.reset_calls()
        emu_cpu, emu_sent = ctx.emulator.cpu_seconds(), ctx.emulator.bytes_sent()
        try:
            workloads.run_limit(ctx, number, result)
        except Exception as exc:
            result.ok, result.error = False, _describe(exc)
        result.emulator_cpu_seconds = ctx.emulator.cpu_seconds() - emu_cpu
        result.file_bytes_sent = ctx.emulator.bytes_sent() - emu_sent
        result.calls = ctx.emulator.calls()
        return result

    def _measure_huge(self, ctx: Context, system: str) -> Result:
        """Workload 8: write a file of ``huge_size`` bytes (the source file repeated) until
        on B2, then read it back on a fresh mount. Peak RSS is the larger of both daemons'."""
        scale = ctx.settings.scale
        repeats = max(1, scale.huge_size // ctx.local.source_size)
        size = repeats * ctx.local.source_size
        name = ctx.name(8, system) + ".bin"
        phases: dict[str, float] = {}

        def write(ctx: Context, mounted: Mounted, result: Result) -> None:
            target = mounted.path / name
            sources = " ".join([f"'{ctx.local.source}'"] * repeats)
            t0 = time.perf_counter()
            procs.run(["sh", "-c", f"cat {sources} > '{target}'"], timeout=ctx.timeout)
            t1 = time.perf_counter()
            fsync_path(target)
            t2 = time.perf_counter()
            result.phases.update({"cat (write, close)": t1 - t0, "fsync": t2 - t1})
            result.bytes, result.files = size, 1
            workloads.until_on_b2(ctx, mounted, result, "", {name: size}, t0, t2)

        def read(ctx: Context, mounted: Mounted, result: Result) -> None:
            t0 = time.perf_counter()
            got = workloads.dd_read(mounted.path / name, ctx)
            result.seconds = time.perf_counter() - t0
            result.bytes, result.files = got, 1
            if got != size:
                raise RuntimeError(f"read {got} bytes of {size}")

        written, _ = self._measure_fuse(ctx, 8, system, body=write)
        if not written.ok:
            return written
        phases.update({f"write: {k}": v for k, v in written.phases.items()})
        back, _ = self._measure_fuse(ctx, 8, system, body=read)
        result = written
        result.extra["write_seconds"] = written.seconds
        result.extra["write_mb_per_s"] = written.mb_per_s
        result.extra["write_peak_rss_bytes"] = written.peak_rss_bytes
        result.extra["write_calls"] = written.calls
        result.extra["read_ok"] = back.ok
        result.extra["read_error"] = back.error
        result.extra["read_seconds"] = back.seconds
        result.extra["read_mb_per_s"] = back.mb_per_s
        result.extra["read_peak_rss_bytes"] = back.peak_rss_bytes
        result.extra["read_calls"] = back.calls
        phases["read: dd"] = back.seconds or 0.0
        result.phases = phases
        if back.ok and written.seconds and back.seconds:
            result.seconds = written.seconds + back.seconds
            result.bytes = 2 * size
        else:
            result.ok, result.error = False, f"read back failed: {back.error}"
            result.log_tail = back.log_tail
        peaks = [p for p in (written.peak_rss_bytes, back.peak_rss_bytes) if p is not None]
        result.peak_rss_bytes = max(peaks) if peaks else None
        result.cpu_seconds = (written.cpu_seconds or 0) + (back.cpu_seconds or 0)
        result.calls = dict(Counter(written.calls) + Counter(back.calls))
        return result


def code_hash() -> str:
    """A short hash of b2fs's Python sources as they are now (they may change during a run
    when someone is working on them; each b2fs result records the hash it was measured on)."""
    root = Path(__file__).resolve().parent.parent / "b2fs"
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def _minus(calls: dict[str, int], ours: Counter[str]) -> dict[str, int]:
    left = Counter(calls)
    left.subtract(ours)
    return {op: n for op, n in left.items() if n > 0}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, AssertionError | KeyError | TypeError | AttributeError):
        text += "\n" + "".join(traceback.format_exception(exc))[-1500:]
    return text
