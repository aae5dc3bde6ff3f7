#!/bin/sh
# Install the system packages b2fs needs to build, test and benchmark, on Debian/Ubuntu.
# Fast when everything is already there: it only calls apt-get for what is missing.
set -eu

# fuse3: fusermount3; libfuse3-dev + pkg-config: building pyfuse3.
# The rest are the ordinary programs the tests and benchmarks run on a mount.
PACKAGES="fuse3 libfuse3-dev pkg-config gcc python3-venv"
PACKAGES="$PACKAGES git rsync sqlite3 tar rclone systemd e2fsprogs procps"
# The service tests: systemd-analyze and systemd-fstab-generator (package systemd, above),
# mount(8), setpriv and unshare (mount, util-linux), and strace to compare the daemon's
# system calls with the unit's SystemCallFilter=.
PACKAGES="$PACKAGES mount util-linux strace"
# The notification tests make a self-signed certificate for the receiver's TLS.
PACKAGES="$PACKAGES openssl"

missing=""
if command -v dpkg-query >/dev/null 2>&1; then
    for p in $PACKAGES; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        case "$status" in
            *"install ok installed"*) ;;
            *) missing="$missing $p" ;;
        esac
    done
else
    echo "b2fs set-up: this is not a Debian/Ubuntu system (no dpkg)." >&2
    echo "Install by hand: fuse3 (fusermount3), libfuse3 development headers, pkg-config," >&2
    echo "a C compiler, Python 3.11+ with venv; for the tests also git, rsync, sqlite3, rclone." >&2
    command -v fusermount3 >/dev/null 2>&1 && pkg-config --exists fuse3 2>/dev/null && exit 0
    exit 1
fi

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "b2fs set-up: missing packages:$missing; run as root or install sudo." >&2
    exit 1
fi

echo "b2fs set-up: installing$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
