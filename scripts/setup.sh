#!/usr/bin/env bash
# Installs what rust-balloon needs, and only what is missing. Idempotent:
# both `make check` and `make demo` run it, so nobody has to by hand.
#   setup.sh [--arm64]
#     --arm64 - also what `make check-arm64` needs: the aarch64 cross
#               compiler, qemu-system-aarch64 and an aarch64 busybox for the
#               guest (Debian's busybox-static:arm64, which needs arm64 as a
#               foreign dpkg architecture: added, with a message, if absent)
set -euo pipefail
. "$(dirname "$0")/common.sh"

DEB_PACKAGES=(
	build-essential bc bison flex cpio kmod xz-utils zstd rsync
	libelf-dev libssl-dev dwarves python3-venv
	libclang-19-dev clang-19 llvm-19 lld-19
	qemu-system-x86 qemu-utils busybox-static e2fsprogs
	udev libvirt-daemon-system libvirt-clients
)
# udev: virtme-ng's guest runs the host's udevd to name its virtio-serial
# ports, without which a non-verbose vng run has no channel for the
# command's output. libvirt: the libvirt test and demo (scripts/
# libvirt-demo.sh), which start its daemons by hand where there is no
# systemd.
ARM64_DEB_PACKAGES=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-system-arm)
# Pinned: a new machine gets what was tested. pytest 9 ignores the group
# pytest-xdist 3.8 writes into a test's node id (it reads `_id`, xdist sets
# `_nodeid`), so --dist loadgroup spread a group's tests over both workers:
# the two hugetlbfs tests then ran side by side.
PY_PACKAGES=(pytest==8.4.2 pytest-xdist==3.8.0 pytest-timeout==2.4.0 qemu.qmp==0.0.6
	virtme-ng==1.42 matplotlib==3.11.2)
BINDGEN_MIN=0.71.1

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"
	elif command -v sudo >/dev/null; then sudo "$@"
	else die "need root (or sudo) to run: $*"
	fi
}

# version_ge A B: A >= B for dotted versions.
version_ge() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | sed -n 1p)" = "$2" ]; }

install_debs() {
	local missing=() p
	for p in "${DEB_PACKAGES[@]}"; do
		[[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == *'ok installed' ]] ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing Debian packages: ${missing[*]}"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null
}

install_rust() {
	command -v rustc >/dev/null ||
		die "no rustc: install Rust with rustup first (https://rustup.rs)"
	# Captured, not piped into grep -q: under pipefail a grep that exits
	# early fails the pipeline (SIGPIPE in the writer).
	if ! grep -q '^rust-src' <<<"$(rustup component list --installed 2>/dev/null)"; then
		say "adding rustup component rust-src"
		rustup component add rust-src >/dev/null ||
			die "no rust-src: 'rustup component add rust-src' failed"
	fi
	local have=""
	if command -v bindgen >/dev/null; then
		have=$(bindgen --version | awk '{ print $2 }')
	fi
	if [ -z "$have" ] || ! version_ge "$have" "$BINDGEN_MIN"; then
		say "installing bindgen-cli (have '${have:-none}', need >= $BINDGEN_MIN)"
		cargo install bindgen-cli --locked --quiet ||
			die "cargo install bindgen-cli failed"
	fi
	local clang_ver
	clang_ver=$(ls "$LIBCLANG_PATH"/libclang*.so* 2>/dev/null | sed -n 1p |
		sed -n 's/.*libclang-\([0-9]*\).*/\1/p')
	[ -n "$clang_ver" ] || die "no libclang in LIBCLANG_PATH=$LIBCLANG_PATH"
	[ "$clang_ver" -ge 17 ] ||
		die "libclang too old: $clang_ver in $LIBCLANG_PATH (bindgen needs >= 17)"
}

install_python() {
	local want stamp=$RB_VENV/.rust-balloon-packages
	want="${PY_PACKAGES[*]}"
	if [ -x "$RB_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
		return 0
	fi
	say "creating Python environment in $RB_VENV"
	python3 -m venv "$RB_VENV"
	"$RB_VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
	echo "$want" > "$stamp"
}

# The guest's busybox for arm64, extracted to $RB_CACHE/arm64/busybox.
install_arm64_busybox() {
	local dir=$RB_CACHE/arm64
	[ -x "$dir/busybox" ] && return 0
	if ! grep -qx arm64 <<<"$(dpkg --print-foreign-architectures)"; then
		say "adding arm64 as a foreign dpkg architecture (for busybox-static:arm64)"
		as_root dpkg --add-architecture arm64
		as_root apt-get update -qq
	fi
	mkdir -p "$dir/deb"
	(cd "$dir/deb" && apt-get download -qq busybox-static:arm64 2>/dev/null &&
		dpkg-deb -x busybox-static_*_arm64.deb x) ||
		die "could not get Debian's busybox-static:arm64"
	install -m 755 "$dir/deb/x/bin/busybox" "$dir/busybox"
	rm -rf "$dir/deb"
}

need_space "$RB_CACHE" 10
[ "${1:-}" = --arm64 ] && DEB_PACKAGES+=("${ARM64_DEB_PACKAGES[@]}")
install_debs
[ "${1:-}" = --arm64 ] && install_arm64_busybox
install_rust
install_python
say "toolchain ready (rustc $(rustc --version | awk '{print $2}'), bindgen $(bindgen --version | awk '{print $2}'), libclang from $LIBCLANG_PATH)"
