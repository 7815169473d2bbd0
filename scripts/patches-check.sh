#!/usr/bin/env bash
# make patches-check: the series of `make patches`, built after each patch
# (issue 20: bisectable), and before the first (the baseline: the stock
# tree must be clean for the check to mean anything). For patch k, the
# kernel source is overlaid at its own path (a private mount namespace, as
# in-tree.sh does) with the files as they are after patch k, and the cached
# test kernel's build directory, overlaid at its own path too (writes go to
# OUT/k/obj-upper), builds the kernel and its modules with CLIPPY=1; the
# test kernel has CONFIG_WERROR, which makes every C and Rust warning an
# error. Then the series' C helpers again with W=1. C objects the patch
# does not touch do not rebuild; Rust ones all do (CLIPPY=1 changes their
# command lines). At the test kernel's own path Rust command lines, which
# hold the build directory's path (OBJTREE=), stay the same. Logs in OUT
# (default build/patches-check).
#
# Then, in the last patch's build: its kernel and rust_balloon.ko are kept
# (OUT/final/module); the driver is built in and CONFIG_RUST_KERNEL_DOCTESTS
# enabled, and the kernel built again (OUT/final/builtin), with `make
# rustdoc` and `make rustfmtcheck`; and selftests/host/test_series.py boots
# both kernels: the kselftest, the core tests, the KUnit doctests and the
# driver's KUnit suite.
#
#   patches-check.sh [OUT]
#   patches-check.sh --last OUT    only the tree after the last patch, with
#                                  the driver as a module, without CLIPPY=1
#                                  and W=1, so that only the crates the
#                                  series changes rebuild, once
#                                  (build-module.sh runs clippy on the same
#                                  files, before the series moves the layer
#                                  into the kernel crate; the helpers get
#                                  W=1 only in the full run): no final stage, no
#                                  guests, nothing in docs/ (make check,
#                                  when the test kernel was cached)
set -euo pipefail
. "$(dirname "$0")/common.sh"
# Set below, for the tests; never one inherited (the exit trap removes it).
unset RB_RUN_DIR

# In the private mount namespace: the kernel source SRC overlaid at its
# own path with FILES (the tree after a patch), and the test kernel's build
# directory KDIR overlaid at its own (common.sh), writes going to DIR; sets
# make_flags for the build there.
overlay_tree() {
	local src=$1 dir=$2 files=$3 kdir=$4
	overlay_kernel_tree "$src" "$dir" "$kdir"
	cp -a "$files/." "$src/"
}

if [ "${1:-}" = --build-in-namespace ]; then
	src=$2 dir=$3 files=$4 kdir=$5 full=$6
	overlay_tree "$src" "$dir" "$files" "$kdir"
	# The driver, once a patch adds it (a module: the test kernel's
	# VIRTIO=y lets the kernel crate's virtio module exist).
	"$src/scripts/config" --file "$kdir/.config" --module VIRTIO_BALLOON_RUST
	make "${make_flags[@]}" olddefconfig
	grep -q '^CONFIG_WERROR=y' "$kdir/.config" || { echo "no CONFIG_WERROR: warnings would pass"; exit 1; }
	driver=
	if grep -q '^config VIRTIO_BALLOON_RUST$' "$src/drivers/virtio/Kconfig"; then
		grep -q '^CONFIG_VIRTIO_BALLOON_RUST=m' "$kdir/.config" ||
			{ echo "CONFIG_VIRTIO_BALLOON_RUST=m did not stick (its dependencies)"; exit 1; }
		driver=$kdir/drivers/virtio/rust_balloon/rust_balloon.ko
	fi
	make "${make_flags[@]}" -j"$(nproc)" CLIPPY="$full" bzImage modules
	if [ -n "$driver" ]; then
		[ -f "$driver" ] || { echo "no $driver after the build"; exit 1; }
		echo "built $driver"
	fi
	# W=1 changes Rust's flags too: the kernel crate builds again.
	[ "$full" = 0 ] || make "${make_flags[@]}" W=1 rust/helpers/helpers.o
	exit
fi

if [ "${1:-}" = --final-in-namespace ]; then
	src=$2 dir=$3 files=$4 kdir=$5 final=$6
	overlay_tree "$src" "$dir" "$files" "$kdir"
	image=$(make -s "${make_flags[@]}" image_name)
	mkdir -p "$final/module" "$final/builtin"
	cp "$kdir/$image" "$kdir/drivers/virtio/rust_balloon/rust_balloon.ko" "$final/module/"
	cp "$kdir/.config" "$final/module/config"
	"$src/scripts/config" --file "$kdir/.config" --enable VIRTIO_BALLOON_RUST \
		--enable RUST_KERNEL_DOCTESTS
	make "${make_flags[@]}" olddefconfig
	for option in VIRTIO_BALLOON_RUST RUST_KERNEL_DOCTESTS KUNIT KUNIT_DEBUGFS; do
		grep -q "^CONFIG_$option=y" "$kdir/.config" ||
			{ echo "CONFIG_$option=y did not stick"; exit 1; }
	done
	make "${make_flags[@]}" -j"$(nproc)" CLIPPY=1 "$(basename "$image")" modules
	grep -q 'rust_balloon/rust_balloon.ko' "$kdir/modules.builtin" ||
		{ echo "the driver is not in modules.builtin"; exit 1; }
	cp "$kdir/$image" "$final/builtin/"
	cp "$kdir/.config" "$final/builtin/config"
	make "${make_flags[@]}" rustfmtcheck
	# rustdoc: no warning (broken intra-doc links included) in what it
	# prints for the kernel crate.
	if ! make "${make_flags[@]}" -j"$(nproc)" rustdoc > "$dir/rustdoc.log" 2>&1; then
		cat "$dir/rustdoc.log"
		echo "make rustdoc failed"
		exit 1
	fi
	cat "$dir/rustdoc.log"
	if grep -E '^(warning|error)' "$dir/rustdoc.log"; then
		echo "make rustdoc warned"
		exit 1
	fi
	exit
fi

only_last= full=1
if [ "${1:-}" = --last ]; then
	only_last=1 full=0
	[ -n "${2:-}" ] || die "usage: patches-check.sh --last OUT"
	shift
fi
out=$(realpath -m "${1:-$RB_ROOT/build/patches-check}")
[ "$(id -u)" -eq 0 ] || die "the build mounts an overlay: run it as root"
if [ -z "$only_last" ]; then
	# What it printed, in docs/ (RB_PATCHES_CHECK_OUT elsewhere); which
	# sources ran is taken before tee truncates the (tracked) file.
	doc=${RB_PATCHES_CHECK_OUT:-$RB_ROOT/docs/patches-check-output.txt}
	rev=$(git -C "$RB_ROOT" describe --always --dirty)
	exec > >(tee "$doc") 2>&1
	tee_pid=$!
	echo "# make patches-check, $(date -u '+%Y-%m-%d %H:%M UTC'), $rev"
fi
run_start=$SECONDS
closing() {
	local rc=$?
	rm -rf "${RB_RUN_DIR:-}"
	# The kernel build trees (GBs each), if a build stopped half way.
	rm -rf "$out"/[0-9]*/obj-upper "$out"/[0-9]*/obj-work "$out"/[0-9]*/upper "$out"/[0-9]*/work
	echo "# make patches-check took $((SECONDS - run_start)) s, exit status $rc"
	if [ -n "${tee_pid:-}" ]; then
		# All of it in the file before the script returns.
		exec >&- 2>&-
		wait "$tee_pid" || true
	fi
}
trap closing EXIT
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ] && [ ! -d "$out/patches" ]; then
	die "$out is not empty and not an earlier output: not removing it"
fi
kdir=$("$RB_ROOT/scripts/kernel.sh" test)
src=$(readlink -f "$kdir/source")
need_space "$(dirname "$out")" 4
rm -rf "$out"
mkdir -p "$out"
# --last: make check's checkpatch test has checked this series already.
"$RB_ROOT/scripts/patches.sh" ${only_last:+--no-checkpatch} "$out/patches"
tree=$out/patches/linux
base=v$RB_KVER
status=0
n=0
commits=$(git -C "$tree" rev-parse "$base^{commit}"; git -C "$tree" rev-list --reverse "$base..HEAD")
[ -z "$only_last" ] || commits=$(git -C "$tree" rev-parse HEAD)
for commit in $commits; do
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
	label="patch $((n - 1))"
	[ -z "$only_last" ] || label="the full series"
	say "$label ($subject): building in $kdir, overlaid"
	start=$SECONDS
	if unshare --mount --propagation private "$0" --build-in-namespace "$src" "$dir" "$dir/files" "$kdir" \
		"$full" \
		> "$dir/build.log" 2>&1; then
		say "$label builds without a warning ($((SECONDS - start)) s); log in $dir/build.log"
	else
		{ grep -E 'error|warning' "$dir/build.log" || true; } | tail -n 20 >&2
		say "$label does not build; see $dir/build.log"
		status=1
	fi
	last=$dir
	# The kernel's build tree is large: keep the log, not the tree (but the
	# last one's, for the final stage).
	[ "$commit" = "$(git -C "$tree" rev-parse HEAD)" ] && [ $status -eq 0 ] && [ -z "$only_last" ] ||
		rm -rf "$dir/obj-upper" "$dir/obj-work" "$dir/upper" "$dir/work"
done
[ $status -eq 0 ] || exit $status
[ -z "$only_last" ] || exit 0

final=$out/final
say "the full series: the driver built in, doctests, rustdoc, rustfmtcheck"
start=$SECONDS
if unshare --mount --propagation private "$0" --final-in-namespace "$src" "$last" "$last/files" "$kdir" \
	"$final" > "$out/final.log" 2>&1; then
	say "built, rustfmtcheck clean, rustdoc without a warning ($((SECONDS - start)) s); log in $out/final.log"
else
	{ grep -E 'error|warning' "$out/final.log" || true; } | tail -n 20 >&2
	rm -rf "$last/obj-upper" "$last/obj-work" "$last/upper" "$last/work"
	die "the final stage failed; see $out/final.log"
fi
rm -rf "$last/obj-upper" "$last/obj-work" "$last/upper" "$last/work"

say "booting the series' kernels (selftests/host/test_series.py)"
"$RB_ROOT/scripts/build-module.sh" "$kdir" > "$out/build-module.log" 2>&1 ||
	die "the module (for the test's initramfs) does not build; see $out/build-module.log"
RB_RUN_DIR=$(mktemp -d)
export RB_KDIR=$kdir RB_VENV RB_RUN_DIR RB_SERIES=$final
cd "$RB_ROOT/selftests/host"
rc=0
"$RB_VENV/bin/python" -m pytest -v -ra -p no:cacheprovider --timeout=1800 -n 2 \
	--junitxml="$out/series.xml" test_series.py 2>&1 | tee "$out/series.log" || rc=$?
cat "$final"/doctests.txt "$final"/kunit.txt 2>/dev/null || true
exit $rc
