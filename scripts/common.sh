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

# In a private mount namespace (unshare --mount --propagation private; root):
# kernel source $1 overlaid at its own path, writes going to $2/upper; and,
# if $3 (a kernel's build directory) is given, $3 overlaid at its own path
# too, writes going to $2/obj-upper. Nothing is copied and neither is ever
# written, and at the same paths every compiler command line stays the same
# (Rust's hold the build directory's path, OBJTREE=), so that Kbuild
# rebuilds only what the change touches. What a build there makes is gone
# with the namespace but for the files in $2/obj-upper: copy the results out
# before leaving. Sets make_flags for a build in $3 (without $3: in $2/obj,
# where the caller put a .config).
overlay_kernel_tree() {
	local src=$1 dir=$2 kdir=${3:-} obj=$2/obj
	mkdir -p "$dir/upper" "$dir/work"
	mount -t overlay overlay -o "lowerdir=$src,upperdir=$dir/upper,workdir=$dir/work" "$src"
	if [ -n "$kdir" ]; then
		mkdir -p "$dir/obj-upper" "$dir/obj-work"
		mount -t overlay overlay \
			-o "lowerdir=$kdir,upperdir=$dir/obj-upper,workdir=$dir/obj-work" "$kdir"
		obj=$kdir
	fi
	make_flags=(-C "$src" O="$obj")
	if grep -q '^CONFIG_CC_IS_CLANG=y' "$obj/.config"; then
		make_flags+=("LLVM=$RB_LLVM")
	fi
}
