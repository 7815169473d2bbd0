#!/usr/bin/env bash
# make patches-check: the series of `make patches`, built after each patch
# (issue 20: bisectable), and before the first (the baseline: the stock
# tree must be clean for the check to mean anything). For patch k, the
# kernel source is overlaid at its own path (a private mount namespace, as
# in-tree.sh does) with the files as they are after patch k, and a copy of
# the cached test kernel's build builds the kernel and its modules with
# CLIPPY=1; the test kernel has CONFIG_WERROR, which makes every C and Rust
# warning an error. Then the series' C helpers again with W=1. C objects
# the patch does not touch do not rebuild; Rust ones all do (their command
# lines hold the build directory's path). Logs in OUT (default
# build/patches-check).
#
#   patches-check.sh [OUT]
set -euo pipefail
. "$(dirname "$0")/common.sh"

if [ "${1:-}" = --build-in-namespace ]; then
	src=$2 dir=$3 files=$4
	mkdir -p "$dir/upper" "$dir/work"
	mount -t overlay overlay -o "lowerdir=$src,upperdir=$dir/upper,workdir=$dir/work" "$src"
	cp -a "$files/." "$src/"
	make_flags=(-C "$src" O="$dir/obj")
	grep -q '^CONFIG_CC_IS_CLANG=y' "$dir/obj/.config" && make_flags+=("LLVM=$RB_LLVM")
	# The driver, once a patch adds it (a module: the test kernel's
	# VIRTIO=y lets the kernel crate's virtio module exist).
	"$src/scripts/config" --file "$dir/obj/.config" --module VIRTIO_BALLOON_RUST
	make "${make_flags[@]}" olddefconfig
	grep -q '^CONFIG_WERROR=y' "$dir/obj/.config" || { echo "no CONFIG_WERROR: warnings would pass"; exit 1; }
	driver=
	if grep -q '^config VIRTIO_BALLOON_RUST$' "$src/drivers/virtio/Kconfig"; then
		grep -q '^CONFIG_VIRTIO_BALLOON_RUST=m' "$dir/obj/.config" ||
			{ echo "CONFIG_VIRTIO_BALLOON_RUST=m did not stick (its dependencies)"; exit 1; }
		driver=$dir/obj/drivers/virtio/rust_balloon/rust_balloon.ko
	fi
	make "${make_flags[@]}" -j"$(nproc)" CLIPPY=1 bzImage modules
	if [ -n "$driver" ]; then
		[ -f "$driver" ] || { echo "no $driver after the build"; exit 1; }
		echo "built $driver"
	fi
	make "${make_flags[@]}" W=1 rust/helpers/helpers.o
	exit
fi

out=$(realpath -m "${1:-$RB_ROOT/build/patches-check}")
[ "$(id -u)" -eq 0 ] || die "the build mounts an overlay: run it as root"
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ] && [ ! -d "$out/patches" ]; then
	die "$out is not empty and not an earlier output: not removing it"
fi
kdir=$("$RB_ROOT/scripts/kernel.sh" test)
src=$(readlink -f "$kdir/source")
need_space "$(dirname "$out")" 4
rm -rf "$out"
mkdir -p "$out"
"$RB_ROOT/scripts/patches.sh" "$out/patches"
tree=$out/patches/linux
base=v$RB_KVER
status=0
n=0
for commit in $(git -C "$tree" rev-parse "$base^{commit}") $(git -C "$tree" rev-list --reverse "$base..HEAD"); do
	dir=$out/$n
	n=$((n + 1))
	mkdir -p "$dir/files"
	subject=$(git -C "$tree" log -1 --format=%s "$commit")
	# The files as they are after this patch (the series only adds and
	# changes files).
	git -C "$tree" diff --name-only "$base" "$commit" | while read -r path; do
		mkdir -p "$dir/files/$(dirname "$path")"
		git -C "$tree" show "$commit:$path" > "$dir/files/$path"
	done
	say "patch $((n - 1)) ($subject): copying $kdir"
	cp -a "$kdir" "$dir/obj"
	start=$SECONDS
	if unshare --mount --propagation private "$0" --build-in-namespace "$src" "$dir" "$dir/files" \
		> "$dir/build.log" 2>&1; then
		say "patch $((n - 1)) builds without a warning ($((SECONDS - start)) s); log in $dir/build.log"
	else
		{ grep -E 'error|warning' "$dir/build.log" || true; } | tail -n 20 >&2
		say "patch $((n - 1)) does not build; see $dir/build.log"
		status=1
	fi
	# The kernel's build tree is large: keep the log, not the tree.
	rm -rf "$dir/obj" "$dir/upper" "$dir/work"
done
exit $status
