#!/bin/sh
# Fetches Debian's armhf multiplatform kernel (linux-image-*-armmp, the
# package linux-image-armmp:armhf depends on) and extracts what the QEMU
# bench board boots: vmlinuz, the kernel's config, and the virtio modules
# the armmp kernel builds as modules (virtio_mmio, virtio_blk, and
# virtio_net with failover and net_failover). Everything else the virt
# machine needs (PL011 console, devtmpfs, GPT, initramfs) is built in.
#
# Usage: scripts/qemu-kernel.sh [cache-dir]
# The cache dir defaults to $(go env GOCACHE)/flashstation-qemu. The
# assets land in <cache-dir>/kernel/<package>_<version>/ and the symlink
# <cache-dir>/kernel/current points at them; the script prints that
# directory. A second run with the assets present does no download.
#
# Needs apt (the armhf architecture is added and the lists updated when the
# package is unknown, which needs root) and dpkg-deb.
set -eu

cache="${1:-}"
if [ -z "$cache" ]; then
	cache="$(go env GOCACHE)/flashstation-qemu"
fi
kdir="$cache/kernel"
mkdir -p "$kdir"

# The modules, in load order (each after what it depends on).
modules="kernel/drivers/virtio/virtio_mmio.ko kernel/drivers/block/virtio_blk.ko kernel/net/core/failover.ko kernel/drivers/net/net_failover.ko kernel/drivers/net/virtio_net.ko"

resolve() {
	apt-cache depends linux-image-armmp:armhf 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9.]*-[0-9]*-armmp\):armhf$/\1/p' | head -n 1
}

pkg="$(resolve)"
if [ -z "$pkg" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "qemu-kernel: apt knows no linux-image-armmp:armhf; run as root: dpkg --add-architecture armhf && apt-get update" >&2
		exit 1
	fi
	echo "qemu-kernel: adding the armhf architecture to apt" >&2
	dpkg --add-architecture armhf
	apt-get update -q >/dev/null
	pkg="$(resolve)"
	if [ -z "$pkg" ]; then
		echo "qemu-kernel: apt-get update did not bring linux-image-armmp:armhf" >&2
		exit 1
	fi
fi
version="$(apt-cache policy "$pkg:armhf" | sed -n 's/^ *Candidate: //p')"
dest="$kdir/${pkg}_$version"

if [ -f "$dest/.complete" ]; then
	ln -sfn "${pkg}_$version" "$kdir/current"
	echo "$dest"
	exit 0
fi

work="$(mktemp -d "$kdir/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "qemu-kernel: downloading $pkg:armhf $version" >&2
(cd "$work" && apt-get download -q "$pkg:armhf=$version" >/dev/null 2>"$work/apt.err") || {
	cat "$work/apt.err" >&2
	exit 1
}
deb="$(ls "$work"/*.deb)"
dpkg-deb -x "$deb" "$work/root"
kver="${pkg#linux-image-}"
mkdir -p "$work/out/modules"
cp "$work/root/boot/vmlinuz-$kver" "$work/out/vmlinuz"
cp "$work/root/boot/config-$kver" "$work/out/config"
order=""
for m in $modules; do
	cp "$work/root/lib/modules/$kver/$m" "$work/out/modules/"
	order="$order$(basename "$m")
"
done
printf '%s' "$order" >"$work/out/modules/order"
printf '%s %s\n' "$pkg" "$version" >"$work/out/VERSION"
touch "$work/out/.complete"
rm -rf "$dest"
mv "$work/out" "$dest"
ln -sfn "${pkg}_$version" "$kdir/current"
echo "$dest"
