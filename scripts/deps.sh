#!/bin/sh
# Installs, when missing, what flashstation's build and tests need from
# Debian: libusb headers for gousb, and the real peers the tests check our
# formats and simulators against (bmaptool, fastboot, zstd, xz), and tmux,
# the terminal emulator the bench TUI is checked in; and the armhf QEMU
# bench's boot chain and image tools (qemu-system-arm, u-boot-qemu for
# U-Boot's qemu_arm build, mtools and dosfstools for the vfat seed, gdisk for
# sgdisk's GPT; squashfs-tools, e2fsprogs and fdisk (sfdisk) for the seed test images); and PostgreSQL, whose throwaway clusters the factory
# ledger's tests start (ledger/pgtest). scripts/qemu-kernel.sh fetches the armhf kernel itself.
# As root it runs apt-get; otherwise it prints the command to run. Tests that
# need a missing peer skip with a message naming the package.
set -eu

packages="libusb-1.0-0-dev pkg-config bmap-tools fastboot zstd xz-utils tmux qemu-system-arm u-boot-qemu mtools dosfstools gdisk fdisk squashfs-tools e2fsprogs postgresql"

missing=""
for p in $packages; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: missing:$missing (no apt-get here: install them with your package manager)" >&2
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing:$missing" >&2
	echo "deps: run: sudo apt-get install -y$missing" >&2
	exit 0
fi
echo "deps: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends $missing >/dev/null 2>&1; then
	apt-get update -q >/dev/null 2>&1 || true
	if ! apt-get install -y --no-install-recommends $missing >/dev/null; then
		echo "deps: apt-get install failed for:$missing" >&2
		exit 1
	fi
fi
