# anemos — the front door. `make help` lists the targets.
#
#   make setup   install what a fresh Debian machine lacks (apt packages, the musl target)
#   make demo    set up, build, install examples/debian-minimal in QEMU and land at its console
#   make test    unit tests, integration tests on image files, QEMU boot tests
#   make test-long  what is over CI's budget: the mail-server example, the two-disk GRUB server, a second
#                deploy with DHCP in the installer, a single-disk encrypted root (~50 min under TCG)
#   make bench   sizes and timings beside the baseline tools, measured in the same run
#                (one section: make bench SECTION=deploy; sections: initramfs mkfs bootstrap install deploy storage codecs image)
#   make build   the static init, then the anemos binary that embeds it
#   make mirror  the caching mirror proxy (anemos-mirror) the demo and manual runs use
#   make fuzz-smoke  run each cargo-fuzz target briefly (FUZZ_SECONDS each, default 20)
#   make lint    cargo clippy (warnings are errors) and cargo fmt --check (rustfmt.toml); CI runs it

CARGO  ?= cargo
TARGET := x86_64-unknown-linux-musl
REL    := target/$(TARGET)/release
ANEMOS := $(REL)/anemos
KERNEL_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/anemos/kernel

APT_PACKAGES := qemu-system-x86 ovmf musl-tools e2fsprogs dosfstools fdisk gdisk mtools \
	dpkg-dev cpio kmod xz-utils zstd file mmdebstrap debootstrap age grub-common time gnupg openssl binutils openssh-client \
	pacman-package-manager makepkg libarchive-tools busybox-static cryptsetup-bin lvm2 mdadm btrfs-progs

.PHONY: help setup build init anemos mirror kernel test test-long unit-test demo bench clean fuzz-smoke lint

help:
	@sed -n 's/^#   //p' Makefile

setup:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi
	rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)
	for c in clippy rustfmt; do rustup component list --installed | grep -q "^$$c" || rustup component add $$c; done

# The init first, in its own cargo run: the anemos binary embeds it at build time.
init:
	$(CARGO) build --release -p anemos-init

anemos: init
	$(CARGO) build --release -p anemos

build: anemos

# The caching proxy of the host's apt sources on loopback (tests/src/mirror.rs).
mirror:
	$(CARGO) build --release -p anemos-tests --bin anemos-mirror

kernel:
	qemu/fetch-kernel.sh "$(KERNEL_CACHE)" >/dev/null

unit-test:
	$(CARGO) test --workspace --exclude anemos-tests

# The init first: the anemos binary embeds it (clippy builds the builder too).
lint: init
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all -- --check

test: build kernel
	$(CARGO) test --workspace

# The mail-server example (~16 min under TCG), the two-disk GRUB server with a typed
# passphrase (~9 min), a second full deploy (DHCP in the installer, ~15 min) and the
# single-disk encrypted root with a volume group (~8 min): the package path to the end in a
# guest, over CI's budget beside the rest; run by hand before touching the installer's
# network, GRUB, the encryption path or the examples.
test-long: build kernel
	$(CARGO) test -p anemos-tests --test install --test raid -- --ignored --nocapture

demo: setup build mirror kernel
	qemu/demo.sh

SECTION ?=
bench: build kernel
	$(CARGO) run --release -p anemos-bench -- $(SECTION)

# cargo-fuzz on stable Rust: RUSTC_BOOTSTRAP=1 lets stable rustc take the -Z sanitizer
# flags cargo-fuzz passes. The fuzz crate builds for the host's gnu target on its own.
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := template patch

fuzz-smoke:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked --target x86_64-unknown-linux-gnu
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

clean:
	$(CARGO) clean
