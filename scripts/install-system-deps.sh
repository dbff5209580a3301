#!/bin/sh
# Debian packages needed by the test suite and the lab:
#  - QEMU 10.0 from bookworm-backports (7.2 loses guest writes under TCG, see README "Lab")
#  - the guest: Debian cloud kernel, static busybox, gcc + static libc for the dirtying program
#  - headless Chromium for the report's browser test
# Idempotent: does nothing when everything is already there.
set -eu
need=""
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in qemu-system-x86 qemu-utils busybox-static linux-image-cloud-amd64 gcc libc6-dev cpio gzip chromium chromium-driver; do
    have "$p" || need="$need $p"
done
qemu_ok=0
if command -v qemu-system-x86_64 >/dev/null 2>&1; then
    major=$(qemu-system-x86_64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -n1)
    [ "${major:-0}" -ge 9 ] && qemu_ok=1
fi
if [ -z "$need" ] && [ "$qemu_ok" -eq 1 ]; then
    exit 0
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
if [ "$codename" = "bookworm" ]; then
    src=/etc/apt/sources.list.d/debian.sources
    if [ -f "$src" ] && ! grep -q "bookworm-backports" "$src"; then
        $SUDO sed -i 's/^Suites: bookworm bookworm-updates$/Suites: bookworm bookworm-updates bookworm-backports/' "$src"
    fi
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/backports.list >/dev/null
    fi
fi
$SUDO apt-get update -q
if [ "$codename" = "bookworm" ]; then
    $SUDO apt-get install -y -q -t bookworm-backports qemu-system-x86 qemu-utils
fi
$SUDO apt-get install -y -q qemu-system-x86 qemu-utils busybox-static linux-image-cloud-amd64 \
    gcc libc6-dev cpio gzip chromium chromium-driver
