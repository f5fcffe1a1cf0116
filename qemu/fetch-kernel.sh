#!/bin/sh
# Fetch the kernel of Debian's linux-image-amd64 package (the one this host's apt sources
# offer) into a cache outside the repository, unpack it, and index its modules with depmod.
# Prints the directory; `current` links to it. Usage: qemu/fetch-kernel.sh [CACHE_DIR]
set -eu
# The cache is the one the harness reads (anemos_qemu::cache_dir): $XDG_CACHE_HOME/anemos or
# ~/.cache/anemos.
cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/anemos/kernel}
kernel_pkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
pkg=$(kernel_pkg)
if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then apt-get update -q >&2; pkg=$(kernel_pkg); fi
[ -n "$pkg" ] || { echo "fetch-kernel: apt knows no linux-image-amd64 (run apt-get update)" >&2; exit 1; }
dir=$cache/$pkg
if [ ! -f "$dir/.complete" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get download -q "$pkg" >&2)
    rm -rf "$dir" && mkdir -p "$dir"
    dpkg-deb -x "$tmp"/"$pkg"_*.deb "$dir"
    release=${pkg#linux-image-}
    # Debian's kernel package keeps modules under /lib or /usr/lib; depmod wants <base>/lib/modules.
    if [ ! -d "$dir/lib/modules/$release" ] && [ -d "$dir/usr/lib/modules/$release" ]; then
        mkdir -p "$dir/lib" && ln -s ../usr/lib/modules "$dir/lib/modules"
    fi
    depmod -b "$dir" "$release"
    touch "$dir/.complete"
fi
ln -sfn "$pkg" "$cache/current"
echo "$dir"
