#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Guest-side checks for rust_balloon, KTAP output. Needs a virtio balloon
# device; runs as root in any guest with busybox or coreutils.
#
#   rust_balloon_test.sh [MODULE_DIR]   (default /lib/modules)
#
# The host-side runner (selftests/host) drives inflation over QMP; these are
# the checks that need only the guest.

MODDIR=${1:-/lib/modules}
DRV=/sys/bus/virtio/drivers/rust_balloon
CDRV=/sys/bus/virtio/drivers/virtio_balloon
n=0 failed=0

ok() { n=$((n + 1)); echo "ok $n $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n $1 # $2"; }
check() { # check NAME REASON COMMAND...
	name=$1 reason=$2; shift 2
	if "$@"; then ok "$name"; else not_ok "$name" "$reason"; fi
}

# The virtio device with ID 5 (the balloon), e.g. virtio0.
balloon_dev() {
	for d in /sys/bus/virtio/devices/*; do
		[ "$(cat "$d/device" 2>/dev/null)" = 0x0005 ] && { basename "$d"; return 0; }
	done
	return 1
}
has_balloon_dev() { balloon_dev >/dev/null; }
bound_to_rust() { [ -e "$DRV/$(balloon_dev)" ]; }
not_bound_to_c() { ! [ -e "$CDRV/$(balloon_dev)" ]; }
loaded() { grep -q "^rust_balloon " /proc/modules; }

echo "KTAP version 1"
echo "1..7"

check "balloon device present" "no virtio device with ID 5" has_balloon_dev
loaded || insmod "$MODDIR/rust_balloon.ko"
check "module loads" "insmod failed" loaded
check "driver binds to the balloon device" "$DRV has no $(balloon_dev)" bound_to_rust
check "C virtio_balloon is not bound" "$CDRV has the device" not_bound_to_c

dev=$(balloon_dev)
echo "$dev" > "$DRV/unbind" 2>/dev/null
check "sysfs unbind releases the device" "still bound after unbind" sh -c "! [ -e $DRV/$dev ]"
echo "$dev" > "$DRV/bind" 2>/dev/null
check "sysfs bind takes it again" "not bound after bind" bound_to_rust

rmmod rust_balloon && insmod "$MODDIR/rust_balloon.ko"
check "rmmod and insmod again" "module not bound after reload" bound_to_rust

echo "# $failed failed"
[ "$failed" -eq 0 ]
