#!/usr/bin/env bash
# make patches-check: the series of `make patches`, built after each patch
# (issue 20: bisectable). For patch k, the kernel source is overlaid at its
# own path (a private mount namespace, as in-tree.sh does) with the files
# as they are after patch k, and a copy of the cached test kernel's build
# builds `rust/` with CLIPPY=1 W=1 (the kernel crate, its bindings and
# helpers, with the lints a submission must pass), then the whole kernel
# (at the same path every compiler command line stays the same, so only
# what the patch touches rebuilds). Logs in OUT (default
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
	make "${make_flags[@]}" olddefconfig
	make "${make_flags[@]}" -j"$(nproc)" CLIPPY=1 W=1 rust/ 2>&1 | tee "$dir/rust.log"
	[ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
	make "${make_flags[@]}" -j"$(nproc)" bzImage modules
	exit
fi

out=$(realpath -m "${1:-$RB_ROOT/build/patches-check}")
[ "$(id -u)" -eq 0 ] || die "the build mounts an overlay: run it as root"
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
for commit in $(git -C "$tree" rev-list --reverse "$base..HEAD"); do
	n=$((n + 1))
	dir=$out/$n
	mkdir -p "$dir/files"
	subject=$(git -C "$tree" log -1 --format=%s "$commit")
	# The files as they are after this patch (the series only adds and
	# changes files).
	git -C "$tree" diff --name-only "$base" "$commit" | while read -r path; do
		mkdir -p "$dir/files/$(dirname "$path")"
		git -C "$tree" show "$commit:$path" > "$dir/files/$path"
	done
	say "patch $n ($subject): copying $kdir"
	cp -a "$kdir" "$dir/obj"
	start=$SECONDS
	if unshare --mount --propagation private "$0" --build-in-namespace "$src" "$dir" "$dir/files" \
		> "$dir/build.log" 2>&1; then
		if grep -E '^(warning|error)' "$dir/rust.log" >&2; then
			say "patch $n builds, with the warnings above in rust/ (CLIPPY=1 W=1); log in $dir/build.log"
			status=1
		else
			say "patch $n builds ($((SECONDS - start)) s), rust/ without a warning; log in $dir/build.log"
		fi
	else
		grep -E 'error|warning:' "$dir/build.log" | tail -n 20 >&2
		say "patch $n does not build; see $dir/build.log"
		status=1
	fi
	# The kernel's build tree is large: keep the log, not the tree.
	rm -rf "$dir/obj" "$dir/upper" "$dir/work"
done
exit $status
