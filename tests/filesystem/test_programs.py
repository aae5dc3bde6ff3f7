"""Tier 4: ordinary, unmodified programs on a real mount (cp, diff, rsync, tar, git, sqlite3, an
editor's save, dd, and 16 processes at once), each checked against what a local disk gives.

File mtimes on b2fs have millisecond precision (``src_last_modified_millis``), so the trees
here use whole-millisecond mtimes; directory modes and mtimes are kept in memory only
(docs/SEMANTICS.md), so after a remount only files are compared on those.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

from filesystem.conftest import BUCKET, B2View
from filesystem.mounting import Mount, Mounter

MiB = 1 << 20


def run(
    *args: str | Path,
    cwd: Path | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> str:
    """Run a program; fail the test with its output if it fails."""
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **env} if env else None,
    )
    stdout = result.stdout.decode(errors="surrogateescape")
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} failed ({result.returncode}):\n"
        f"{stdout[-2000:]}\n{result.stderr.decode(errors='replace')[-2000:]}"
    )
    return stdout


def pattern(seed: int, size: int) -> bytes:
    """Recognisable bytes: different for every seed, cheap to make."""
    rng = random.Random(seed)
    unit = rng.randbytes(4093)  # a prime length, so blocks never line up with the unit
    return (unit * (size // len(unit) + 1))[:size]


def make_tree(root: Path, seed: int = 1) -> None:
    """A small source tree: nested folders, an empty one, sizes around block edges, odd names,
    several modes, a relative symlink, and whole-millisecond mtimes."""
    files = {
        "README": 1200,
        "empty.txt": 0,
        "src/main.c": 4096,
        "src/util/helpers.h": 4095,
        "src/util/deep/er/leaf.txt": 17,
        "data/blob.bin": MiB + 12345,  # crosses a 1 MiB block edge
        "data/with space and ünïcode.txt": 333,
        "bin/run.sh": 90,
        "secret/key.pem": 700,
    }
    modes = {"bin/run.sh": 0o755, "secret/key.pem": 0o600, "src/main.c": 0o640}
    for i, (name, size) in enumerate(sorted(files.items())):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pattern(seed * 1000 + i, size))
        path.chmod(modes.get(name, 0o644))
    (root / "empty-dir").mkdir()
    (root / "src" / "link-to-main").symlink_to("main.c")
    base = 1_600_000_000_123_000_000
    for i, path in enumerate(sorted(root.rglob("*"))):
        if path.is_file() and not path.is_symlink():
            mtime = base + i * 1_001_000_000
            os.utime(path, ns=(mtime, mtime))


def snapshot(root: Path, *, modes: bool = True, mtimes: bool = True) -> dict[str, object]:
    """What a tree looks like: per path its type and content (and file modes and mtimes)."""
    found: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            found[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            found[rel] = ("dir",)
        else:
            found[rel] = (
                "file",
                hashlib.sha1(path.read_bytes()).hexdigest(),
                stat.S_IMODE(st.st_mode) if modes else None,
                st.st_mtime_ns if mtimes else None,
            )
    return found


def unmount_and_remount(mounter: Mounter, mount: Mount, *, empty_cache: bool = False) -> Mount:
    """`b2fs unmount` (waits for every upload), then mount the same bucket again; with
    ``empty_cache`` from a fresh cache directory, so every byte read comes from B2."""
    mount.unmount()
    if empty_cache:
        fresh = mount.cache_dir.parent / (mount.cache_dir.name + "-fresh")
        shutil.rmtree(fresh, ignore_errors=True)
        return mounter.mount(mount.source, mountpoint=mount.path, cache_dir=fresh)
    return mounter.remount(mount)


def test_cp_r_and_diff_r(b2: B2View, mounter: Mounter, tmp_path: Path) -> None:
    """`cp -r` onto the mount gives a tree that `diff -r` finds identical, before and after a
    remount from an empty cache; and `cp -r` back off the mount gives the same tree again."""
    source = tmp_path / "src"
    make_tree(source)
    mount = mounter.mount(BUCKET)
    run("cp", "-r", source, mount.path / "copy")
    run("diff", "-r", "--no-dereference", source, mount.path / "copy")
    mount = unmount_and_remount(mounter, mount, empty_cache=True)
    run("diff", "-r", "--no-dereference", source, mount.path / "copy")
    run("cp", "-r", mount.path / "copy", tmp_path / "back")
    assert snapshot(tmp_path / "back", mtimes=False) == snapshot(source, mtimes=False)
    assert "copy/empty-dir/.bzEmpty" in b2.names("copy/")  # the empty folder is kept on B2


def test_rsync_a_keeps_modes_and_mtimes_across_a_remount(
    b2: B2View, mounter: Mounter, tmp_path: Path
) -> None:
    """`rsync -a` (temporary files renamed into place, then chmod and utime) keeps contents,
    file modes and mtimes; after a remount a second `rsync -a` finds nothing to do."""
    source = tmp_path / "src"
    make_tree(source)
    mount = mounter.mount(BUCKET)
    target = mount.path / "mirror"
    run("rsync", "-a", f"{source}/", f"{target}/")
    assert snapshot(target) == snapshot(source)
    mount = unmount_and_remount(mounter, mount)
    target = mount.path / "mirror"
    assert snapshot(target) == snapshot(source)
    # Nothing to transfer: same sizes and mtimes (directory times are not kept: -O).
    changes = run("rsync", "-ai", "-O", "--dry-run", f"{source}/", f"{target}/")
    assert changes == ""
    # No leftover rsync temporary files on B2: exactly the source's files (and the marker).
    on_b2 = set(b2.names("mirror/"))
    expected = {
        f"mirror/{p.relative_to(source)}"
        for p in source.rglob("*")
        if p.is_symlink() or p.is_file()
    }
    assert on_b2 == expected | {"mirror/empty-dir/.bzEmpty"}


def test_tar_extract_into_and_create_from_the_mount(
    b2: B2View, mounter: Mounter, tmp_path: Path
) -> None:
    """tar extracts a tree into the mount (contents, modes, mtimes) and, after a remount from
    an empty cache, archives it back into a tree equal to the source."""
    source = tmp_path / "src"
    make_tree(source)
    run("tar", "--format=posix", "-cf", tmp_path / "in.tar", "-C", source, ".")
    mount = mounter.mount(BUCKET)
    (mount.path / "x").mkdir()
    run("tar", "-xf", tmp_path / "in.tar", "-C", mount.path / "x")
    assert snapshot(mount.path / "x") == snapshot(source)
    mount = unmount_and_remount(mounter, mount, empty_cache=True)
    run("tar", "--format=posix", "-cf", tmp_path / "out.tar", "-C", mount.path / "x", ".")
    (tmp_path / "out").mkdir()
    run("tar", "-xf", tmp_path / "out.tar", "-C", tmp_path / "out")
    assert snapshot(tmp_path / "out") == snapshot(source)


def test_git_repository_on_the_mount(b2: B2View, mounter: Mounter, tmp_path: Path) -> None:
    """git init/add/commit/log/status work (lock files renamed into place, objects made
    read-only, hard links refused so git renames); after a remount `git fsck` is clean."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "T",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "T",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    mount = mounter.mount(BUCKET)
    repo = mount.path / "repo"
    run("git", "init", "-q", "-b", "main", repo, env=env)
    make_tree(repo / "tree")
    run("git", "add", "-A", cwd=repo, env=env)
    run("git", "commit", "-q", "-m", "first", cwd=repo, env=env)
    (repo / "tree" / "README").write_text("changed\n")
    (repo / "tree" / "empty.txt").unlink()
    (repo / "new.txt").write_text("new file\n")
    run("git", "add", "-A", cwd=repo, env=env)
    run("git", "commit", "-q", "-m", "second", cwd=repo, env=env)
    log = run("git", "log", "--format=%H %s", cwd=repo, env=env).splitlines()
    assert [line.split(" ", 1)[1] for line in log] == ["second", "first"]
    assert run("git", "status", "--porcelain", cwd=repo, env=env) == ""
    assert run("git", "show", "HEAD~1:tree/README", cwd=repo, env=env).encode(
        errors="surrogateescape"
    ) == pattern(1000, 1200)

    mount = unmount_and_remount(mounter, mount)
    repo = mount.path / "repo"
    run("git", "fsck", "--full", "--strict", cwd=repo, env=env)
    assert run("git", "log", "--format=%H %s", cwd=repo, env=env).splitlines() == log
    assert run("git", "status", "--porcelain", cwd=repo, env=env) == ""
    run("git", "checkout", "-q", "HEAD~1", "--", "tree", cwd=repo, env=env)
    assert (repo / "tree" / "README").read_bytes() == pattern(1000, 1200)
    assert run("git", "status", "--porcelain", cwd=repo, env=env).splitlines() == [
        "M  tree/README",
        "A  tree/empty.txt",
    ]


def _sqlite_script(seed: int, phase: str) -> str:
    rng = random.Random(seed)
    lines: list[str] = []
    if phase == "create":
        lines.append("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER);")
        lines.append("CREATE INDEX t_n ON t(n);")
        lines.append("BEGIN;")
        for i in range(3000):
            lines.append(
                f"INSERT INTO t VALUES({i}, '{rng.randbytes(60).hex()}', {rng.randrange(10**6)});"
            )
        lines.append("COMMIT;")
    else:
        for _ in range(20):  # many small transactions: many random page writes and fsyncs
            lines.append("BEGIN;")
            for _ in range(20):
                i = rng.randrange(3000)
                choice = rng.random()
                if choice < 0.7:
                    lines.append(
                        f"UPDATE t SET v = '{rng.randbytes(rng.randrange(10, 200)).hex()}', "
                        f"n = {rng.randrange(10**6)} WHERE id = {i};"
                    )
                elif choice < 0.85:
                    lines.append(f"DELETE FROM t WHERE id = {i};")
                else:
                    lines.append(f"INSERT OR REPLACE INTO t VALUES({3000 + i}, 'x{i}', {i});")
            lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


QUERY = "SELECT count(*), sum(n), sum(length(v)) FROM t; SELECT id, v, n FROM t ORDER BY n, id;"


def test_sqlite_random_updates_and_integrity_after_a_remount(
    b2: B2View, mounter: Mounter, tmp_path: Path
) -> None:
    """sqlite3 creates a database, then (after a remount from an empty cache, so its pages come
    from B2) applies random updates in many small transactions; queries equal the same work on
    a local disk, and after another remount from an empty cache `PRAGMA integrity_check` is ok."""
    local = tmp_path / "local.db"
    mount = mounter.mount(BUCKET)
    db = mount.path / "db" / "test.db"
    db.parent.mkdir()
    for phase, seed in (("create", 1), ("update", 2)):
        script = _sqlite_script(seed, phase)
        for database in (local, db):
            result = subprocess.run(
                ["sqlite3", str(database)],
                input=script,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 0, result.stderr
        if phase == "create":
            mount = unmount_and_remount(mounter, mount, empty_cache=True)
            db = mount.path / "db" / "test.db"
    expected = run("sqlite3", local, QUERY)
    assert run("sqlite3", db, QUERY) == expected
    mount = unmount_and_remount(mounter, mount, empty_cache=True)
    db = mount.path / "db" / "test.db"
    assert run("sqlite3", db, "PRAGMA integrity_check;").strip() == "ok"
    assert run("sqlite3", db, QUERY) == expected
    assert os.listdir(db.parent) == ["test.db"]  # the rollback journal is gone


def test_editor_save_by_rename_leaves_one_name_with_the_new_content(
    b2: B2View, mounter: Mounter
) -> None:
    """An editor's save: write a temporary file, fsync it, rename it over the original, fsync
    the directory. Right after, B2 holds exactly one visible name with the new content."""
    b2.upload("notes/doc.txt", b"version 0\n")
    mount = mounter.mount(BUCKET)
    folder = mount.path / "notes"
    original = folder / "doc.txt"
    assert original.read_bytes() == b"version 0\n"
    for version in (1, 2, 3):
        content = f"version {version}\n".encode() * (version * 1000)
        temp = folder / f".doc.txt.swp{version}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, original)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        assert os.listdir(folder) == ["doc.txt"]
        assert original.read_bytes() == content
        assert set(b2.names("notes/")) == {"notes/doc.txt"}
        assert b2.read("notes/doc.txt") == content


def test_dd_300_mb_file_has_the_same_sha1_after_a_remount_with_an_empty_cache(
    b2: B2View, mounter: Mounter
) -> None:
    """dd writes 300 MB (a large upload, parts sent while it writes); after unmount and a mount
    from an empty cache, sha1sum of the file equals the SHA1 of the bytes given to dd."""
    mount = mounter.mount(BUCKET)
    digest = hashlib.sha1()
    dd = subprocess.Popen(
        ["dd", f"of={mount.path / 'big.bin'}", "bs=1M", "iflag=fullblock", "status=none"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert dd.stdin is not None
        rng = random.Random(300)
        for _ in range(300):
            chunk = rng.randbytes(MiB)
            digest.update(chunk)
            dd.stdin.write(chunk)
        dd.stdin.close()
        assert dd.wait(timeout=120) == 0, dd.stderr.read() if dd.stderr else ""
    finally:
        if dd.poll() is None:
            dd.kill()
            dd.wait()
    mount = unmount_and_remount(mounter, mount, empty_cache=True)
    big = mount.path / "big.bin"
    assert big.stat().st_size == 300 * MiB
    assert run("sha1sum", big).split()[0] == digest.hexdigest()
    assert b2.unfinished() == []


# -- many processes at once ------------------------------------------------------------------

WORKERS = 16
ROUNDS = 5
LOG_RECORD = 64  # bytes per appended log line (well under a page: one write() each)

_WORKER = r"""
import hashlib, os, random, sys

root, worker, rounds, record = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def body(tag, size):
    unit = hashlib.sha256(tag.encode()).digest() * 128  # 4 KiB, different for every tag
    header = f"<{tag}|{size}>".encode()
    return header + (unit * (size // len(unit) + 1))[: size - len(header)]

def check(data, what):
    # Every file is body(tag, size) for the tag and size in its header: never a mix of two.
    assert data.startswith(b"<") and b">" in data[:80], f"{what}: {len(data)} bytes {data[:80]!r}"
    end = data.index(b">")
    tag, size = data[1:end].decode().split("|")
    assert data == body(tag, int(size)), f"{what}: mixed or damaged content (header {tag})"
    return tag

rng = random.Random(worker)
for i in range(rounds):
    own = f"{root}/out/w{worker:02d}/r{i}.o"
    data = body(f"w{worker}-r{i}", rng.randrange(20_000, 300_000))
    with open(own, "wb") as f:
        f.write(data)
    with open(own, "rb") as f:
        assert f.read() == data, own
    # Rewrite a range of an earlier own file in place (a random write), same length.
    if i:
        earlier = f"{root}/out/w{worker:02d}/r{i - 1}.o"
        with open(earlier, "rb") as f:
            old = f.read()
        new = body(f"w{worker}-r{i - 1}-again", len(old))
        with open(earlier, "r+b") as f:
            f.seek(len(old) // 2)
            f.write(new[len(old) // 2 :])
            f.seek(0)
            f.write(new[: len(old) // 2])
        with open(earlier, "rb") as f:
            assert f.read() == new, earlier
    # Read the shared inputs everyone reads.
    for j in rng.sample(range(8), 3):
        with open(f"{root}/in/h{j}", "rb") as f:
            assert check(f.read(), f"in/h{j}") == f"input-{j}"
    # Append one record to the shared log (O_APPEND: records never interleave).
    line = f"w{worker:02d} r{i} ".encode()
    line += b"." * (record - len(line) - 1) + b"\n"
    fd = os.open(f"{root}/shared/log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        assert os.write(fd, line) == len(line)
    finally:
        os.close(fd)
    # Replace the shared result atomically (write a temporary file, rename over).
    temp = f"{root}/shared/.latest.w{worker}.{i}"
    with open(temp, "wb") as f:
        f.write(body(f"latest-w{worker}-r{i}", rng.randrange(5_000, 150_000)))
    os.rename(temp, f"{root}/shared/latest")
    with open(f"{root}/shared/latest", "rb") as f:
        check(f.read(), "shared/latest")
print("ok")
"""


def _body(tag: str, size: int) -> bytes:
    """The content the workers write (the same function as in the worker script)."""
    unit = hashlib.sha256(tag.encode()).digest() * 128
    header = f"<{tag}|{size}>".encode()
    return header + (unit * (size // len(unit) + 1))[: size - len(header)]


def _check_many_processes_result(root: Path) -> None:
    for worker in range(WORKERS):
        folder = root / "out" / f"w{worker:02d}"
        names = sorted(os.listdir(folder))
        assert names == [f"r{i}.o" for i in range(ROUNDS)]
        for i in range(ROUNDS):
            data = (folder / f"r{i}.o").read_bytes()
            tag = f"w{worker}-r{i}" + ("-again" if i < ROUNDS - 1 else "")
            assert data == _body(tag, len(data)), f"{folder}/r{i}.o"
    log = (root / "shared" / "log").read_bytes()
    assert len(log) == WORKERS * ROUNDS * LOG_RECORD
    records = [log[i : i + LOG_RECORD] for i in range(0, len(log), LOG_RECORD)]
    seen = sorted(r.split(b" ")[0] + b" " + r.split(b" ")[1] for r in records)
    assert seen == sorted(
        f"w{w:02d} r{i}".encode() for w in range(WORKERS) for i in range(ROUNDS)
    ), "log records lost, doubled or interleaved"
    assert all(r.endswith(b".\n") for r in records)
    assert sorted(os.listdir(root / "shared")) == ["latest", "log"]  # no temporary left
    latest = (root / "shared" / "latest").read_bytes()
    tag = latest[1 : latest.index(b"|")].decode()
    assert tag.startswith("latest-w") and latest == _body(tag, len(latest))


def test_sixteen_processes_read_and_write_at_once(
    b2: B2View, mounter: Mounter, tmp_path: Path
) -> None:
    """A `make -j16`-like load: 16 processes each write their own files (and rewrite ranges of
    them in place), read shared inputs, append records to one shared log, and replace one
    shared result by rename, all at once. No deadlock; every file holds exactly one writer's
    recognisable content, the log every record once, before and after a remount."""
    for j in range(8):
        b2.upload(f"work/in/h{j}", _body(f"input-{j}", 50_000 + j * 40_000))
    mount = mounter.mount(BUCKET)
    root = mount.path / "work"
    for worker in range(WORKERS):
        (root / "out" / f"w{worker:02d}").mkdir(parents=True)
    (root / "shared").mkdir()
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), str(root), str(w), str(ROUNDS), str(LOG_RECORD)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WORKERS)
    ]
    try:
        deadline = time.monotonic() + 120
        for w, process in enumerate(processes):
            out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert process.returncode == 0 and out.strip() == "ok", f"worker {w}: {err[-2000:]}"
    finally:
        for process in processes:  # a deadlock: the timeout above fails, these are killed
            if process.poll() is None:
                process.kill()
                process.wait()
    _check_many_processes_result(root)
    mount = unmount_and_remount(mounter, mount, empty_cache=True)
    _check_many_processes_result(mount.path / "work")
    assert not [n for n in b2.names("work/shared/") if ".latest" in n]
