"""The systemd units: checked by systemd's own tools, and the service run as systemd runs it.

These machines have no systemd as PID 1, so the unit is checked offline
(`systemd-analyze verify`, with `b2fs` placed on systemd's executable search path inside a
private mount namespace) and then executed the way systemd would: its ExecStart= with the
specifiers expanded, the key loaded into a credentials directory, $CACHE_DIRECTORY,
NOTIFY_SOCKET and WATCHDOG_USEC set, stderr as the journal stream, the capability bounding
set and no_new_privs of the unit applied by setpriv, and every system call recorded by strace
and compared with the unit's SystemCallFilter=.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

from filesystem.mounting import is_mounted

from b2fs.emulator import Emulator
from service.conftest import BIN, BUCKET, REPO, B2View, Daemon, NotifySocket

SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "b2fs@.service"
# systemd's default PATH for services, and where it looks for a bare ExecStart= name.
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def unit_settings(path: Path) -> dict[str, list[str]]:
    """KEY -> every value it has in the unit file (sections merged; enough for these units)."""
    settings: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def with_b2fs_on_systemd_path(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run a shell script in a private mount namespace where /usr/local/bin holds `b2fs`
    (verify checks that ExecStart='s program exists, as systemd would find it)."""
    bindir = tmp_path / "usr-local-bin"
    bindir.mkdir(exist_ok=True)
    for name in ("b2fs", "mount.fuse.b2fs"):
        target = bindir / name
        if not target.exists():
            target.symlink_to(BIN / name)
    return subprocess.run(
        ["unshare", "--mount", "sh", "-ec", f"mount --bind {bindir} /usr/local/bin\n{script}"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    # A template is verified through an instance: copy it under the instance's name.
    (tmp_path / "b2fs@photos.service").write_text(UNIT.read_text())
    (runtime / "b2fs@photos.service").write_text((SYSTEMD / "user" / "b2fs@.service").read_text())
    result = with_b2fs_on_systemd_path(
        f"cd {tmp_path}\n"
        "systemd-analyze verify --man=no ./b2fs@photos.service\n"
        f"systemd-analyze verify --man=no {SYSTEMD}/mnt-b2.mount {SYSTEMD}/mnt-b2.automount\n"
        f"cd {runtime}\n"
        f"XDG_RUNTIME_DIR={runtime} systemd-analyze verify --man=no --user "
        "./b2fs@photos.service\n",
        tmp_path,
    )
    # verify reports unknown keys, bad values and missing programs on stderr (some only as
    # warnings with exit status 0): a clean unit prints nothing at all.
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout == ""
    # And the checks are real: a misspelt key in a copy is reported.
    (tmp_path / "b2fs@bad.service").write_text(
        UNIT.read_text().replace("WatchdogSec=", "WatchDogSec=")
    )
    broken = with_b2fs_on_systemd_path(
        f"cd {tmp_path}\nsystemd-analyze verify --man=no ./b2fs@bad.service", tmp_path
    )
    assert "Unknown key 'WatchDogSec'" in broken.stderr


def test_fstab_entry_becomes_an_automount_after_the_network(tmp_path: Path) -> None:
    """The documented fstab line, through systemd-fstab-generator: x-systemd.automount makes
    an automount, _netdev makes it a remote file system, noauto keeps the mount itself out of
    the boot; the generated units verify."""
    where = tmp_path / "b2"
    fstab = tmp_path / "fstab"
    fstab.write_text(
        f"my-bucket/photos {where} fuse.b2fs "
        "_netdev,noauto,x-systemd.automount,x-systemd.idle-timeout=10min,"
        "key_file=/etc/b2fs/photos.key,cache_size=20G 0 0\n"
    )
    out = tmp_path / "generated"
    dirs = [out / "normal", out / "early", out / "late"]
    for d in dirs:
        d.mkdir(parents=True)
    subprocess.run(
        ["/lib/systemd/system-generators/systemd-fstab-generator", *map(str, dirs)],
        env={**os.environ, "SYSTEMD_FSTAB": str(fstab), "SYSTEMD_LOG_LEVEL": "err"},
        check=True,
        capture_output=True,
        timeout=60,
    )
    name = subprocess.run(
        ["systemd-escape", "-p", str(where)], capture_output=True, text=True, check=True
    ).stdout.strip()
    mount = unit_settings(dirs[0] / f"{name}.mount")
    assert mount["Type"] == ["fuse.b2fs"] and mount["What"] == ["my-bucket/photos"]
    assert "remote-fs.target" in mount["Before"][0]
    assert (dirs[0] / "remote-fs.target.requires" / f"{name}.automount").exists()
    assert not (dirs[0] / "remote-fs.target.requires" / f"{name}.mount").exists()
    assert unit_settings(dirs[0] / f"{name}.automount")["TimeoutIdleSec"] == ["10min"]
    result = with_b2fs_on_systemd_path(
        "systemd-analyze verify --man=no "
        + shlex.quote(f"{dirs[0]}/{name}.mount")
        + " "
        + shlex.quote(f"{dirs[0]}/{name}.automount"),
        tmp_path,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def _syscall_sets(names: list[str]) -> set[str]:
    """The system calls systemd allows for SystemCallFilter= groups such as @system-service."""
    allowed: set[str] = set()
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if not name.startswith("@"):
            allowed.add(name)
            continue
        listing = subprocess.run(
            ["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True
        ).stdout
        for line in listing.splitlines()[1:]:
            entry = line.strip()
            if entry and not entry.startswith("#"):
                todo.append(entry)
    return allowed


def _syscalls_in(trace: Path) -> set[str]:
    calls = set()
    for line in trace.read_text(errors="replace").splitlines():
        match = re.match(r"\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", line)
        if match and not line.split(None, 1)[1].startswith(("+++", "---")):
            calls.add(match.group(1))
    return calls


def test_service_runs_as_systemd_runs_it(
    b2: B2View,
    emulator: Emulator,
    tmp_path: Path,
    notify_socket: NotifySocket,
    daemons: list[Daemon],
) -> None:
    """READY=1 once mounted, STATUS= with the pending upload, WATCHDOG=1 from the loop; a
    crash (kill -9) and the restart systemd would do: the dead mount is cleared and the
    pending upload resumes; SIGTERM drains it (STOPPING=1) and exits 0. The key only ever
    comes from the credentials directory; the log is journald's format; the daemon works with
    the unit's capabilities, and uses no system call outside its SystemCallFilter=."""
    unit = unit_settings(UNIT)
    assert unit["Type"] == ["notify"] and unit["Restart"] == ["on-failure"]
    assert unit["WatchdogSec"] and unit["TimeoutStopSec"] and unit["CacheDirectory"]
    instance = "photos"
    etc = tmp_path / "etc"  # %E of the system manager: /etc
    (etc / "b2fs").mkdir(parents=True)
    mountpoint = tmp_path / "srv-photos"
    mountpoint.mkdir()
    (etc / "b2fs" / f"{instance}.toml").write_text(
        f'source = "{BUCKET}"\nmountpoint = "{mountpoint}"\nendpoint = "{emulator.url}"\n'
        'writeback_delay = "1h"   # the upload waits until the stop (or fsync)\n'
    )
    # LoadCredential=b2-key-file:%E/b2fs/%i.key: systemd copies it into a private directory.
    (credential_name, credential_source) = unit["LoadCredential"][0].split(":", 1)
    key_file = Path(credential_source.replace("%E", str(etc)).replace("%i", instance))
    key_file.write_text(f"{emulator.master_key_id}:{emulator.master_key}\n")
    credentials = tmp_path / "credentials" / f"b2fs@{instance}.service"
    credentials.mkdir(parents=True, mode=0o700)
    (credentials / credential_name).write_bytes(key_file.read_bytes())
    cache = tmp_path / "var-cache" / unit["CacheDirectory"][0].replace("%i", instance)
    cache.mkdir(parents=True, mode=0o700)

    argv = unit["ExecStart"][0].replace("%E", str(etc)).replace("%i", instance).split()
    assert argv[0] == "b2fs"  # found on systemd's search path; here, the venv's
    argv[0] = str(BIN / "b2fs")
    assert not any(emulator.master_key in arg for arg in argv)
    caps = ",".join(
        "+" + c.lower().removeprefix("cap_") for c in unit["CapabilityBoundingSet"][0].split()
    )
    assert unit["NoNewPrivileges"] == ["yes"]
    trace = tmp_path / "syscalls"

    def start(attempt: int) -> Daemon:
        log = tmp_path / f"journal-{attempt}"
        log.touch()
        st = os.stat(log)
        env = {
            "PATH": SERVICE_PATH,
            "LANG": "C.UTF-8",
            "CREDENTIALS_DIRECTORY": str(credentials),
            "CACHE_DIRECTORY": str(cache),
            "NOTIFY_SOCKET": notify_socket.address,
            # The unit says WatchdogSec=60; a drop-in would shorten it the same way.
            "WATCHDOG_USEC": "200000",
            "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
            "INVOCATION_ID": os.urandom(16).hex(),
        }
        command = [
            "setpriv",
            "--no-new-privs",
            f"--bounding-set=-all,{caps}",
            "--inh-caps=-all",
            "--",
            "strace",
            "-f",
            "-qq",
            "-o",
            f"{trace}.{attempt}",
            "--",
            *argv,
        ]
        daemon = Daemon(command, env, mountpoint, log, cache, umask=0o077)
        daemons.append(daemon)
        return daemon

    first = start(1)
    notify_socket.wait_for(lambda f: ("READY", "1") in f, 120, "READY=1", first)
    assert is_mounted(mountpoint)
    (mountpoint / "report.txt").write_bytes(b"quarterly numbers\n" * 1000)
    notify_socket.wait_for(
        lambda f: any(k == "STATUS" and "1 upload(s) pending" in v for k, v in f),
        30,
        "a STATUS= line with the pending upload",
        first,
    )
    notify_socket.wait_for(lambda f: f.count(("WATCHDOG", "1")) >= 3, 30, "WATCHDOG=1 pings", first)
    status = subprocess.run(
        [str(BIN / "b2fs"), "status", "--json", str(mountpoint)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    snapshot = json.loads(status.stdout)
    assert snapshot["pending_files"] == 1 and snapshot["cache_dir"] == str(cache)
    assert emulator.master_key not in (Path(f"/proc/{snapshot['pid']}/cmdline").read_text())

    # A crash: systemd (Restart=on-failure) starts it again on the dead mount.
    os.kill(snapshot["pid"], signal.SIGKILL)
    first.wait_exit(60)
    assert "report.txt" not in b2.names()
    notify_socket.clear()
    second = start(2)
    notify_socket.wait_for(lambda f: ("READY", "1") in f, 120, "READY=1 after restart", second)
    assert "cleared the dead mount" in second.log_text
    assert (mountpoint / "report.txt").read_bytes() == b"quarterly numbers\n" * 1000

    # systemctl stop: SIGTERM (KillSignal=); the pending upload is finished first.
    assert unit["KillSignal"] == ["SIGTERM"]
    pid = second.pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)  # to the daemon itself (KillMode=mixed: the main process)
    assert second.wait_exit(120) == 0, second.log_text[-4000:]
    assert ("STOPPING", "1") in notify_socket.fields()
    assert not is_mounted(mountpoint)
    assert b2.read("report.txt") == b"quarterly numbers\n" * 1000

    for daemon in (first, second):
        log = daemon.log_text
        assert emulator.master_key not in log
        lines = log.splitlines()
        assert lines, "the daemon logged nothing"
        # journald's format: a priority prefix, no timestamp of our own.
        assert all(re.match(r"<[0-7]>", line) for line in lines), log
        assert not any(re.search(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d", line) for line in lines), log
    assert any(line.startswith("<4>") for line in second.log_text.splitlines())  # warning

    allowed = _syscall_sets(unit["SystemCallFilter"][0].split())
    used = _syscalls_in(Path(f"{trace}.1")) | _syscalls_in(Path(f"{trace}.2"))
    assert {"mount", "umount2"} <= used  # the trace did see the daemon at work
    assert used <= allowed, f"system calls outside SystemCallFilter=: {sorted(used - allowed)}"
