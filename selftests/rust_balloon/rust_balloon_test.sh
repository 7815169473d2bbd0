#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Guest-side checks for rust_balloon, in KTAP. Needs root and a virtio
# balloon device; skips (exit 4) without either. Runs under the kernel's
# kselftest runner (tools/testing/selftests/rust_balloon/) or by hand:
#
#   rust_balloon_test.sh [MODULE_DIR]
#
# The module comes from MODULE_DIR/rust_balloon.ko (default: this script's
# directory, where scripts/kselftest-install.sh puts it), else from
# modprobe (in-tree builds), unless it is loaded already. Whatever the script
# changes (module loaded, device bound to another driver) is put back when
# it exits, even after a failure. The host-side runner (selftests/host)
# drives inflation over QMP; these are the checks that need only the guest.

DIR=$(cd "$(dirname "$0")" && pwd)
# The kernel's KTAP helpers: beside this directory in the kernel tree and
# in an installed kselftest tree; KSFT_HELPERS names another copy.
for helpers in "${KSFT_HELPERS:-}" "$DIR/../kselftest/ktap_helpers.sh"; do
	[ -n "$helpers" ] && [ -r "$helpers" ] && break
done
if ! [ -r "$helpers" ]; then
	echo "Bail out! no kselftest/ktap_helpers.sh (set KSFT_HELPERS)"
	exit 1
fi
. "$helpers"

MODDIR=${1:-$DIR}
DRV=/sys/bus/virtio/drivers/rust_balloon
CDRV=/sys/bus/virtio/drivers/virtio_balloon
DEBUGFS=/sys/kernel/debug

# The virtio device with ID 5 (the balloon), e.g. virtio0.
balloon_dev() {
	for d in /sys/bus/virtio/devices/*; do
		[ "$(cat "$d/device" 2>/dev/null)" = 0x0005 ] && { basename "$d"; return 0; }
	done
	return 1
}
loaded() { grep -q "^rust_balloon " /proc/modules; }
load() {
	if [ -n "$MODDIR" ] && [ -f "$MODDIR/rust_balloon.ko" ]; then
		insmod "$MODDIR/rust_balloon.ko"
	else
		modprobe rust_balloon 2>/dev/null
	fi
}
can_load() {
	{ [ -n "$MODDIR" ] && [ -f "$MODDIR/rust_balloon.ko" ]; } ||
		modprobe -n rust_balloon 2>/dev/null
}
# The driver the device is bound to now (empty if none).
bound_driver() {
	[ -e "/sys/bus/virtio/devices/$dev/driver" ] &&
		basename "$(readlink "/sys/bus/virtio/devices/$dev/driver")"
}
bound_to_rust() { [ -e "$DRV/$dev" ]; }
not_bound_to_c() { ! [ -e "$CDRV/$dev" ]; }
unbound() { ! [ -e "$DRV/$dev" ]; }

ktap_print_header

if [ "$(id -u)" -ne 0 ]; then
	ktap_skip_all "needs root"
	exit "$KSFT_SKIP"
fi
if ! dev=$(balloon_dev); then
	ktap_skip_all "no virtio balloon device (virtio device ID 5)"
	exit "$KSFT_SKIP"
fi
if ! loaded && ! can_load; then
	ktap_skip_all "no rust_balloon module (pass MODULE_DIR, or install it)"
	exit "$KSFT_SKIP"
fi

# What to put back on exit.
was_loaded=$(loaded && echo 1)
was_bound_to=$(bound_driver)
restore() {
	if [ -n "$was_loaded" ]; then
		loaded || load
	elif loaded; then
		rmmod rust_balloon
	fi
	now=$(bound_driver)
	if [ -n "$was_bound_to" ] && [ "$now" != "$was_bound_to" ]; then
		[ -n "$now" ] && echo "$dev" > "/sys/bus/virtio/drivers/$now/unbind"
		echo "$dev" > "/sys/bus/virtio/drivers/$was_bound_to/bind"
	fi
}
trap restore EXIT

ktap_set_plan 8

# Another driver (the C virtio_balloon) lets go of the device first.
if [ -n "$was_bound_to" ] && [ "$was_bound_to" != rust_balloon ]; then
	echo "$dev" > "/sys/bus/virtio/drivers/$was_bound_to/unbind"
fi
loaded || load
ktap_test_result "module loads" loaded
ktap_test_result "driver binds to the balloon device $dev" bound_to_rust
ktap_test_result "C virtio_balloon is not bound" not_bound_to_c

features=$(cat "/sys/bus/virtio/devices/$dev/features" 2>/dev/null)
ktap_test_result "negotiated features are in sysfs" [ -n "$features" ]

view="$DEBUGFS/rust_balloon/$dev"
[ -d "$DEBUGFS/rust_balloon" ] || mount -t debugfs none "$DEBUGFS" 2>/dev/null
if [ -d "$DEBUGFS/rust_balloon" ]; then
	ktap_test_result "debugfs shows $dev's balloon" [ -r "$view/actual_pages" ]
else
	ktap_test_skip "debugfs shows $dev's balloon (no debugfs)"
fi

echo "$dev" > "$DRV/unbind"
ktap_test_result "sysfs unbind releases the device" unbound
echo "$dev" > "$DRV/bind"
ktap_test_result "sysfs bind takes it again" bound_to_rust

if can_load; then
	rmmod rust_balloon && load
	ktap_test_result "rmmod and load again" bound_to_rust
else
	ktap_test_skip "rmmod and load again (no module file to load)"
fi

ktap_finished
