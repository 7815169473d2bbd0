#!/usr/bin/env bash
# Builds rust_balloon in tree: the sources placed in drivers/virtio/
# rust_balloon/ of a kernel tree, with their Kconfig entry
# (VIRTIO_BALLOON_RUST) and Makefile line, the option set to m, and the
# kernel's own build making the module.
#
#   in-tree.sh KDIR [OUT]     build in KDIR (an O= build of an unmodified
#                             tree), overlaid; the module and the .config
#                             end up in OUT (default build/in-tree), with
#                             the build log
#   in-tree.sh --builtin KDIR [OUT]
#                             the same with the option set to y: OUT gets
#                             the kernel image (bzImage) with the driver
#                             built in, and its modules.builtin
#   in-tree.sh --place SRC    place the sources into kernel tree SRC (edits
#                             drivers/virtio/Kconfig and Makefile once)
#   in-tree.sh --config KDIR OUT [OPTION...]
#                             no build: KDIR's .config with the sources
#                             placed, scripts/config's OPTIONs applied (say
#                             --module VIRTIO_BALLOON_RUST) and olddefconfig
#                             run, in OUT/.config; what Kconfig makes of it
#
# KDIR stays as it is: in a private mount namespace (root), the sources are
# placed into an overlay mounted on KDIR's source tree, at the same path,
# and the build writes to an overlay mounted on KDIR itself (OUT/obj-upper
# gets what it changes; OUT the results). At the same paths every compiler
# command line stays the same (Rust's hold the build directory's,
# OBJTREE=), so Kbuild rebuilds only what the new option changes: no Rust
# crate but the driver (from a copy at its own path every crate rebuilt:
# 70 s for the module against 21 s, on 2026-12-07's machine; copying the
# build directory took 8 s more). OUT keeps the results and the build log;
# what the build wrote in the overlays is removed.
set -euo pipefail
. "$(dirname "$0")/common.sh"

kconfig_entry() {
	echo
	sed '1,/^$/d' "$RB_ROOT/Kconfig"
}

place() {
	local src=$1 dir=$1/drivers/virtio
	[ -f "$dir/Kconfig" ] || die "no drivers/virtio/Kconfig in $src"
	"$RB_ROOT/scripts/copy-sources.sh" "$dir/rust_balloon"
	if ! grep -q "config VIRTIO_BALLOON_RUST" "$dir/Kconfig"; then
		# Real files: in a symlinked tree they would edit the original.
		local kconfig makefile
		kconfig=$(cat "$dir/Kconfig") makefile=$(cat "$dir/Makefile")
		rm -f "$dir/Kconfig" "$dir/Makefile"
		# After VIRTIO_BALLOON's entry (before the next statement at the
		# start of a line), inside the virtio menu.
		awk -v entry="$(kconfig_entry)" '
			in_entry && /^[a-z]/ { print substr(entry, 2); print ""; in_entry = 0 }
			{ print }
			/^config VIRTIO_BALLOON$/ { in_entry = 1 }
		' <<<"$kconfig" > "$dir/Kconfig"
		grep -q "config VIRTIO_BALLOON_RUST" "$dir/Kconfig" || die "could not place the Kconfig entry"
		{ echo "$makefile"; echo "obj-\$(CONFIG_VIRTIO_BALLOON_RUST) += rust_balloon/"; } > "$dir/Makefile"
	fi
}

if [ "${1:-}" = --place ]; then
	place "${2:?usage: in-tree.sh --place SRC}"
	exit
fi

if [ "${1:-}" = --config-in-namespace ]; then
	src=$2 out=$3
	shift 3
	overlay_kernel_tree "$src" "$out"
	place "$src"
	[ $# -eq 0 ] || "$src/scripts/config" --file "$out/obj/.config" "$@"
	make "${make_flags[@]}" olddefconfig
	exit
fi

if [ "${1:-}" = --config ]; then
	kdir=$(realpath "${2:?usage: in-tree.sh --config KDIR OUT [OPTION...]}")
	out=$(realpath -m "${3:?usage: in-tree.sh --config KDIR OUT [OPTION...]}")
	shift 3
	src=$(readlink -f "$kdir/source")
	[ -f "$src/Makefile" ] || die "$kdir is not an O= build (no source link)"
	[ "$(id -u)" -eq 0 ] || die "placing the sources mounts an overlay: run it as root"
	rm -rf "$out"
	mkdir -p "$out/obj"
	cp "$kdir/.config" "$out/obj/.config"
	if ! unshare --mount --propagation private "$0" --config-in-namespace "$src" "$out" "$@" \
		> "$out/config.log" 2>&1; then
		tail -n 20 "$out/config.log" >&2
		die "configuration failed; see $out/config.log"
	fi
	cp "$out/obj/.config" "$out/.config"
	exit
fi

if [ "${1:-}" = --build-in-namespace ]; then
	# Inside the private mount namespace: the overlays on the source and
	# on KDIR (so that the build writes to OUT), the build, and its
	# results copied to OUT.
	src=$2 out=$3 mode=$4 kdir=$5
	overlay_kernel_tree "$src" "$out" "$kdir"
	place "$src"
	"$src/scripts/config" --file "$kdir/.config" --set-val VIRTIO_BALLOON_RUST "$mode"
	make "${make_flags[@]}" olddefconfig
	grep -qx "CONFIG_VIRTIO_BALLOON_RUST=$mode" "$kdir/.config" ||
		die "CONFIG_VIRTIO_BALLOON_RUST=$mode did not stick"
	cp "$kdir/.config" "$out/"
	if [ "$mode" = m ]; then
		make "${make_flags[@]}" -j"$(nproc)" modules
		ko=$kdir/drivers/virtio/rust_balloon/rust_balloon.ko
		[ -f "$ko" ] || die "no $ko after the build"
		cp "$ko" "$out/"
	else
		make "${make_flags[@]}" -j"$(nproc)" bzImage
		image=$kdir/arch/x86/boot/bzImage
		[ -f "$image" ] || die "no $image after the build"
		cp "$image" "$kdir/modules.builtin" "$out/"
	fi
	exit
fi

mode=m
if [ "${1:-}" = --builtin ]; then
	mode=y
	shift
	grep -q '^CONFIG_X86_64=y' "${1:?usage: in-tree.sh --builtin KDIR [OUT]}/.config" ||
		die "--builtin builds an x86-64 kernel image only"
fi

kdir=$(realpath "${1:?usage: in-tree.sh KDIR [OUT]}")
out=$(realpath -m "${2:-$RB_ROOT/build/in-tree}")
src=$(readlink -f "$kdir/source")
[ -f "$src/Makefile" ] || die "$kdir is not an O= build (no source link)"
[ "$(id -u)" -eq 0 ] || die "the in-tree build mounts an overlay: run it as root"
need_space "$(dirname "$out")" 3
rm -rf "$out"
mkdir -p "$out"
start=$SECONDS
log=$out/build.log
say "building in tree (sources in $src/drivers/virtio/rust_balloon, $src and $kdir overlaid); log in $log"
if ! unshare --mount --propagation private "$0" --build-in-namespace "$src" "$out" "$mode" "$kdir" \
	> "$log" 2>&1; then
	{ grep -E 'error|Error' "$log" || true; } | tail -n 20 >&2
	die "in-tree build failed; see $log"
fi
# What the build wrote (a relinked vmlinux for --builtin: hundreds of MiB).
rm -rf "$out/upper" "$out/work" "$out/obj-upper" "$out/obj-work"
if [ "$mode" = y ]; then
	say "built in tree, built in, in $((SECONDS - start)) s: $out/bzImage"
	echo "$out/bzImage"
	exit
fi
say "built in tree in $((SECONDS - start)) s: $out/rust_balloon.ko"
echo "$out/rust_balloon.ko"
