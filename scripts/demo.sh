#!/usr/bin/env bash
# `make demo`: boot a guest, load rust_balloon, balloon it from the host.
set -euo pipefail
. "$(dirname "$0")/common.sh"
"$RB_ROOT/scripts/setup.sh"
kdir=${KDIR:-$("$RB_ROOT/scripts/kernel.sh" test)}
kmake "$kdir" -s M="$RB_ROOT" modules
initramfs=$(mktemp --suffix=.cpio.gz)
trap 'rm -f "$initramfs"' EXIT
"$RB_ROOT/selftests/guest/mkinitramfs.sh" "$initramfs" "$RB_ROOT/rust_balloon.ko" \
	"$kdir/drivers/virtio/virtio_balloon.ko" "$kdir/source/tools/testing/selftests/kselftest"
cd "$RB_ROOT/selftests/host"
"$RB_VENV/bin/python" demo.py "$kdir" "$initramfs"
