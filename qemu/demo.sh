#!/bin/sh
# The demo (`make demo`): install examples/debian-minimal into a disk image with `anemos
# test`, from the host's own apt mirror through the caching proxy on loopback, boot the
# image in QEMU (UEFI, systemd-boot) with its console on this terminal, and hand the console
# over at the login prompt. Ctrl-a x switches the VM off; the proxy stops with the script.
#
# The demo user logs in with ssh only (key from files/, password locked); the script makes
# a key for it and forwards 127.0.0.1:$ANEMOS_DEMO_SSH_PORT (default 2222) to the guest's 22.
# Work files (image, logs, key) go to $ANEMOS_DEMO_DIR (default ${TMPDIR:-/tmp}/anemos-demo).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/target/x86_64-unknown-linux-musl/release
work=${ANEMOS_DEMO_DIR:-${TMPDIR:-/tmp}/anemos-demo}
ssh_port=${ANEMOS_DEMO_SSH_PORT:-2222}
for b in anemos anemos-mirror; do
    [ -x "$bin/$b" ] || { echo "demo: $bin/$b is missing: run \`make build mirror\` first" >&2; exit 1; }
done
mkdir -p "$work"

# A copy of the example with a key of our own for the demo user.
rm -rf "$work/project"
cp -a "$here/examples/debian-minimal" "$work/project"
[ -f "$work/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C anemos-demo -f "$work/id_ed25519"
cp "$work/id_ed25519.pub" "$work/project/files/home/demo/.ssh/authorized_keys"

# The caching proxy of this host's apt sources, on a free loopback port.
"$bin/anemos-mirror" >"$work/mirror.log" 2>&1 &
mirror_pid=$!
trap 'kill $mirror_pid 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
i=0
until grep -q '^serving on' "$work/mirror.log" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $mirror_pid 2>/dev/null; then
        echo "demo: the mirror proxy did not start; its log ($work/mirror.log):" >&2
        cat "$work/mirror.log" >&2
        exit 1
    fi
    sleep 0.1
done
# Lines: "  http://127.0.0.1:PORT/NAME SUITE COMPONENTS   <- UPSTREAM"
mirror=$(awk '$1 ~ /^http:\/\/127\.0\.0\.1/ && $2 !~ /-(security|updates)$/ { print $1; exit }' "$work/mirror.log")
security=$(awk '$1 ~ /^http:\/\/127\.0\.0\.1/ && $2 ~ /-security$/ { print $1; exit }' "$work/mirror.log")
if [ -z "$mirror" ]; then
    echo "demo: the host's apt sources name no Debian mirror; the proxy said:" >&2
    cat "$work/mirror.log" >&2
    exit 1
fi
echo "demo: packages come from this host's apt mirror through the caching proxy at $mirror"
echo "demo: once it is up, log in from another terminal with"
echo "        ssh -i $work/id_ed25519 -p $ssh_port -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null demo@127.0.0.1"

set -- test "$work/project" -o "$work" --mirror "$mirror" --log "$work/install.log" \
    --console --forward "$ssh_port:22"
[ -n "$security" ] && set -- "$@" --security-mirror "$security"
"$bin/anemos" "$@"
