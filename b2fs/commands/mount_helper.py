"""``mount.fuse.b2fs``: the helper mount(8) runs for ``fuse.b2fs`` entries of /etc/fstab.

mount(8) (and systemd's .mount units, which run mount(8)) call ``/sbin/mount.fuse.b2fs SPEC
DIR [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]`` for an entry such as::

    my-bucket/photos  /mnt/photos  fuse.b2fs  _netdev,key_file=/etc/b2fs/photos.key  0 0

The helper turns that into ``b2fs mount SPEC DIR ...`` and returns once the mount is ready
(or fails in one line), exactly like ``b2fs mount``:

- SPEC is the source, ``BUCKET`` or ``BUCKET/PREFIX``; ``b2fs:`` in front is allowed, and
  ``b2fs:`` alone mounts every bucket the key lists;
- the settings of ``b2fs.config.SETTINGS`` that are not positional (``key_file=``,
  ``cache_dir=``, ``endpoint=``, ``debug``) and ``config=FILE`` become the command-line
  flags of the same names; every other option goes to ``-o`` and means what it means there
  (``b2fs.options``: mount options, and the generic fstab words such as ``_netdev``,
  ``noauto``, ``nofail``, ``x-systemd.*`` and ``rw``, which are accepted and ignored: they
  are for mount(8) and systemd, not for b2fs);
- ``-f`` (fake) does nothing; ``-s``, ``-n``, ``-v``, ``-N`` and ``-t`` are accepted and
  ignored (b2fs refuses an unknown option even with ``-s``: a typo must not mount with
  defaults silently).

pip installs the helper next to ``b2fs``; mount(8) only looks in /sbin, so it is linked there
(docs/SERVICE.md says how).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from b2fs.options import split_option_string

# -o names that become flags of `b2fs mount` (their values are paths or URLs).
FLAG_OPTIONS = {
    "config": "--config",
    "key_file": "--key-file",
    "cache_dir": "--cache-dir",
    "endpoint": "--endpoint",
}
SOURCE_PREFIX = "b2fs:"


def translate(argv: Sequence[str]) -> list[str] | None:
    """The ``b2fs`` arguments for a helper command line (None: fake mount, do nothing)."""
    parser = argparse.ArgumentParser(prog="mount.fuse.b2fs", add_help=False)
    parser.add_argument("spec")
    parser.add_argument("directory")
    parser.add_argument("-o", dest="options", action="append", default=[])
    parser.add_argument("-t", dest="type")
    parser.add_argument("-N", dest="namespace")
    for flag in ("-s", "-f", "-n", "-v"):
        parser.add_argument(flag, action="store_true")
    args = parser.parse_args(argv)
    if args.f:
        return None
    source = args.spec
    if source.startswith(SOURCE_PREFIX):
        source = source[len(SOURCE_PREFIX) :]
    command = ["mount", source.strip("/"), args.directory]
    rest = []
    for text in args.options:
        for item in split_option_string(text):
            key, has_value, value = item.partition("=")
            if key in FLAG_OPTIONS and has_value:
                command += [FLAG_OPTIONS[key], value]
            elif key == "debug" and not has_value:
                command.append("--debug")
            else:
                rest.append(item)
    if rest:
        command += ["-o", ",".join(rest)]
    return command


def main(argv: Sequence[str] | None = None) -> int:
    from b2fs.commands import mount as mount_commands

    command = translate(sys.argv[1:] if argv is None else argv)
    if command is None:
        return 0
    parser = argparse.ArgumentParser(prog="b2fs")
    mount_commands.register(parser.add_subparsers())
    args = parser.parse_args(command)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
