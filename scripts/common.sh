# shellcheck shell=bash
# Shared settings for the rust-balloon scripts. Sourced, never run.

RB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RB_CACHE=${RB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rust-balloon}
RB_KVER=7.2.13
RB_KSERIES=7.2
RB_VENV=$RB_CACHE/venv
RB_SHARED_TARBALL=${RB_SHARED_TARBALL:-$RB_ROOT/../shared/kernel/linux-source-$RB_KSERIES.tar.xz}

# bindgen needs libclang >= 17; Debian 12 ships 19 beside its default 14.
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-19/lib}
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '[rust-balloon] %s\n' "$*" >&2; }
die() { printf '[rust-balloon] error: %s\n' "$*" >&2; exit 1; }

# Fails with a clear message when the file system holding $1 has less than
# $2 GiB free.
need_space() {
	local dir=$1 gib=$2 avail
	mkdir -p "$dir"
	avail=$(df -Pk "$dir" | awk 'NR==2 { print int($4 / 1048576) }')
	[ "$avail" -ge "$gib" ] ||
		die "no space: $dir has ${avail} GiB free, ${gib} GiB needed"
}

# The LLVM toolchain that builds the debug kernel (KASAN with Rust needs
# clang); setup.sh installs it.
RB_LLVM=-19

# make in kernel tree $1, with the LLVM toolchain if that kernel was built
# with clang (modules must be built by the kernel's compiler), and with the
# aarch64 cross compiler for an arm64 kernel.
kmake() {
	local kdir=$1
	shift
	make -C "$kdir" $(sed -n -e 's/^CONFIG_CLANG_VERSION=\([0-9]*\)[0-9]\{4\}$/LLVM=-\1/p' \
		-e 's/^CONFIG_ARM64=y$/ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-/p' \
		"$kdir/.config" 2>/dev/null) "$@"
}
