#!/usr/bin/env bash
# `make bench`: the C driver against rust_balloon, same kernel, same QEMU,
# interleaved rounds. The kernel is the test kernel without its debug
# checks (they would distort the figures). Output in bench-results/.
#   bench.sh [--rounds N] [--smoke]
set -euo pipefail
. "$(dirname "$0")/common.sh"
"$RB_ROOT/scripts/setup.sh"
flavour=bench
[[ " $* " == *" --smoke "* ]] && flavour=${RB_BENCH_KERNEL:-bench}
kdir=${KDIR:-$("$RB_ROOT/scripts/kernel.sh" "$flavour")}
obj=$(mktemp -d)
trap 'rm -rf "$obj"' EXIT
# Build the module for this kernel in a copy, leaving the tree's build alone.
"$RB_ROOT/scripts/copy-sources.sh" "$obj"
kmake "$kdir" -s M="$obj" modules
"$RB_ROOT/selftests/guest/mkinitramfs.sh" "$obj/initramfs.cpio.gz" "$obj/rust_balloon.ko" \
	"$kdir/drivers/virtio/virtio_balloon.ko" "$kdir/source/tools/testing/selftests/kselftest"
cd "$RB_ROOT/selftests/host"
# RB_BENCH_PY: another script with bench.py's arguments (a probe, such as
# probe_busy_trace.py).
"$RB_VENV/bin/python" "${RB_BENCH_PY:-bench.py}" "$kdir" "$obj/initramfs.cpio.gz" \
	"${RB_BENCH_OUT:-$RB_ROOT/bench-results}" "$@"
