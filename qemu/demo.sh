#!/bin/sh
# The demo: build an initramfs for Debian's kernel and boot it in QEMU with the console on
# this terminal. The init brings up, loads its modules, finds the disk, prints its ready
# event, shows the hardware it found, and drops into the rescue console (type `help`;
# `poweroff` ends the VM).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
kernel=$(readlink -f "${ANEMOS_CACHE:-$HOME/.cache/anemos}/kernel/current")
release=$(ls "$kernel/lib/modules")
work=${TMPDIR:-/tmp}/anemos-demo
mkdir -p "$work"
"$here/target/x86_64-unknown-linux-musl/release/anemos" initramfs -o "$work/initramfs.img" \
    --modules-dir "$kernel/lib/modules/$release" --no-autodetect
[ -f "$work/disk.img" ] || truncate -s 2G "$work/disk.img"
exec "$here/target/x86_64-unknown-linux-musl/release/anemos" boot --kernel "$kernel/boot/vmlinuz-$release" \
    --initrd "$work/initramfs.img" --disk "$work/disk.img" --net \
    --append "anemos.mode=probe anemos.done=rescue anemos.wait=vda"
