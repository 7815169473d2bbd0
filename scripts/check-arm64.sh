#!/usr/bin/env bash
# `make check-arm64`: the driver on arm64. Cross-builds two arm64 kernels
# (scripts/kernel.sh arm64-64k and arm64-4k), builds the module for both
# (rustfmt and CLIPPY=1 clean), and runs the core tests (test_arm64.py) on
# the 64 KiB-page kernel in QEMU's virt machine under TCG. The 4 KiB-page
# kernel is built, not booted. The output goes to docs/check-arm64-output.txt
# too.
set -euo pipefail
. "$(dirname "$0")/common.sh"
out=$RB_ROOT/docs/check-arm64-output.txt
"$RB_ROOT/scripts/setup.sh" --arm64
{
	echo "# make check-arm64, $(date -u '+%F %T') UTC, commit $(git -C "$RB_ROOT" rev-parse --short HEAD)"
	start=$SECONDS
	k4=$("$RB_ROOT/scripts/kernel.sh" arm64-4k)
	k64=$("$RB_ROOT/scripts/kernel.sh" arm64-64k)
	echo "# kernels ready after $((SECONDS - start)) s"
	# The 4 KiB build first: the 64 KiB one is left in the tree for the tests.
	for kdir in "$k4" "$k64"; do
		echo "## module for $(basename "$kdir"): $(grep -E '^CONFIG_ARM64_(4|64)K_PAGES=y' "$kdir/.config")"
		"$RB_ROOT/scripts/build-module.sh" "$kdir" 2>&1
		file "$RB_ROOT/rust_balloon.ko" | sed "s|$RB_ROOT/||"
	done
	cd "$RB_ROOT/selftests/host"
	RB_KDIR=$k64 "$RB_VENV/bin/python" -m pytest -v -ra -p no:cacheprovider "$@" test_arm64.py
} 2>&1 | tee "$out"
exit "${PIPESTATUS[0]}"
