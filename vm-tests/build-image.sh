#!/usr/bin/env bash
# Builds the guest root filesystem for the VM harness: Debian bookworm with real systemd, D-Bus,
# nftables, git, nix-bin and a Python venv holding nixdrift's dependencies. The result is cached in
# $NIXDRIFT_VM_CACHE/<key>/rootfs by harness.py, the key hashing this script and pyproject.toml's
# dependency list; the harness stages the current nixdrift source, units and flake at every run.
#   usage: build-image.sh OUTDIR        (run as root; needs debootstrap and network to the mirror)
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
rootfs=$out/rootfs.tmp
rm -rf "$rootfs"
mkdir -p "$out"

# the mirror this machine's apt already uses
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
[ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)

debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-venv,iproute2,nftables,udev,linux-image-cloud-amd64,initramfs-tools,procps,kmod,passwd,git,ca-certificates \
  bookworm "$rootfs" "$mirror" >"$out/debootstrap.log" 2>&1

cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
mount --bind /proc "$rootfs/proc"
trap 'umount "$rootfs/proc" 2>/dev/null || true' EXIT
chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nix-bin >"$out/apt.log" 2>&1
umount "$rootfs/proc"
trap - EXIT

# nix offline: no substituters, no sandbox (as on the host)
mkdir -p "$rootfs/etc/nix"
printf 'substituters =\nsandbox = false\nexperimental-features = nix-command flakes\n' >"$rootfs/etc/nix/nix.conf"

# nixdrift's dependencies as wheels built here, installed offline into the guest's venv
wheels=$out/wheels
rm -rf "$wheels"
python3 -m pip wheel -q --wheel-dir "$wheels" "$top" >"$out/pip.log" 2>&1
chroot "$rootfs" python3 -m venv /opt/nixdrift/venv
mkdir -p "$rootfs/opt/nixdrift/wheels"
cp "$wheels"/*.whl "$rootfs/opt/nixdrift/wheels/"
rm -f "$rootfs"/opt/nixdrift/wheels/nixdrift-*.whl
chroot "$rootfs" sh -c '/opt/nixdrift/venv/bin/pip install -q --no-index --find-links /opt/nixdrift/wheels /opt/nixdrift/wheels/*.whl' >>"$out/pip.log" 2>&1

# a console on ttyS0 is not needed: the harness talks to its agent over virtio-serial
chroot "$rootfs" systemctl mask serial-getty@ttyS0.service getty@tty1.service >/dev/null 2>&1 || true
rm -rf "$out/rootfs"
mv "$rootfs" "$out/rootfs"
echo "image ready: $out/rootfs"
