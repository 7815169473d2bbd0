#!/usr/bin/env bash
# `make stress`: every reliability scenario at full size (RB_STRESS=1) on
# the debug kernel (KASAN, kmemleak, DEBUG_PAGEALLOC, page poisoning, debug
# objects, allocation-tag checks, Rust debug assertions; built with clang),
# plus the functional suite there. The one scenario that needs memory
# hotplug runs on the test kernel: memory hotplug brings CONTIG_ALLOC,
# which the debug kernel leaves out (see selftests/config.debug).
# Output in docs/stress-output.txt.
#   stress.sh [pytest args...]
set -euo pipefail
. "$(dirname "$0")/common.sh"
"$RB_ROOT/scripts/setup.sh"
debug=$("$RB_ROOT/scripts/kernel.sh" debug)
test_kdir=$("$RB_ROOT/scripts/kernel.sh" test)
obj=$(mktemp -d)
trap 'rm -rf "$obj"' EXIT
# Build the module for each kernel in a copy, leaving the tree's build alone.
for k in debug test; do
	mkdir -p "$obj/$k"
	"$RB_ROOT/scripts/copy-sources.sh" "$obj/$k"
done
kmake "$debug" -s M="$obj/debug" modules
kmake "$test_kdir" -s M="$obj/test" modules
out=${RB_STRESS_OUT:-$RB_ROOT/docs/stress-output.txt}
mkdir -p "$(dirname "$out")"
cd "$RB_ROOT/selftests/host"
start=$SECONDS
status=0
# Guests run on q35. Under TCG with KASAN, ACPICA runs the pc machine's
# _PRT method (a loop over 128 slots) into its 30 s loop timeout at every
# boot ("AE_AML_LOOP_TIMEOUT"), and the balloon, which has only INTx in
# QEMU 7.2, is left without an interrupt; q35's routing is a table.
# (acpi=noirq boots too, but its BIOS-routed INTx stays silent after an
# S3 resume: the balloon then never hears from the host again.)
export RB_MACHINE=${RB_MACHINE:-q35}
# Two guests at a time (pytest-xdist): under TCG each guest runs on one host
# thread (see guest.py), so two fill this machine's two cores; one at a
# time took 51 minutes.
jobs=${RB_STRESS_JOBS:-2}
# Which sources ran, taken before tee truncates the (tracked) output file.
rev=$(git -C "$RB_ROOT" describe --always --dirty)
{
	echo "# make stress, $(date -u '+%Y-%m-%d %H:%M UTC'), $rev"
	echo "# debug kernel: $debug"
	RB_STRESS=1 RB_KDIR=$debug RB_RUST_KO=$obj/debug/rust_balloon.ko \
		"$RB_VENV/bin/python" -m pytest -v -ra --durations=0 -p no:cacheprovider --timeout="${RB_TEST_TIMEOUT:-2400}" \
		-n "$jobs" -k "not memory_hot_remove" test_reliability.py "$@" || status=$?
	echo "# test kernel (memory hotplug): $test_kdir"
	RB_STRESS=1 RB_KDIR=$test_kdir RB_RUST_KO=$obj/test/rust_balloon.ko \
		"$RB_VENV/bin/python" -m pytest -v -ra --durations=0 -p no:cacheprovider --timeout="${RB_TEST_TIMEOUT:-2400}" \
		-k memory_hot_remove test_reliability.py "$@" || status=$?
	echo "# make stress took $((SECONDS - start)) s, exit status $status"
} 2>&1 | tee "$out"
exit "$status"
