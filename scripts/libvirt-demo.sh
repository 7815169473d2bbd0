#!/usr/bin/env bash
# The balloon as libvirt drives it: a transient domain (type qemu, so TCG
# where there is no KVM) boots the test kernel with rust_balloon loaded at
# boot and <memballoon model='virtio'> with stats every second; then
# `virsh setmem --live` down and up, `virsh dommemstat` before and after.
# Starts virtlogd and libvirtd if they are not running (no systemd here)
# and stops what it started.
#   libvirt-demo.sh [KDIR]
# Needs root (libvirtd, and the images it copies for libvirt's QEMU).
set -euo pipefail
. "$(dirname "$0")/common.sh"
kdir=${1:-$("$RB_ROOT/scripts/kernel.sh" test --print)}
[ -n "$kdir" ] || die "no test kernel: run make kernel first"
command -v virsh >/dev/null || die "no virsh (apt-get install libvirt-daemon-system libvirt-clients)"
uri=qemu:///system
name=rust-balloon-demo
started=()
for daemon in virtlogd libvirtd; do
	if ! pgrep -x "$daemon" >/dev/null; then
		"$daemon" -d
		started+=("$daemon")
	fi
done
images=/var/lib/libvirt/images/$name
cleanup() {
	virsh -c "$uri" destroy "$name" >/dev/null 2>&1 || true
	rm -rf "$images"
	for daemon in "${started[@]}"; do pkill -x "$daemon" || true; done
}
trap cleanup EXIT
# Where libvirt's QEMU (user libvirt-qemu) may read them.
mkdir -p "$images"
cp "$kdir/arch/x86/boot/bzImage" "$images/"
"$RB_ROOT/selftests/guest/mkinitramfs.sh" "$images/initramfs.cpio.gz" "$RB_ROOT/rust_balloon.ko" \
	"$kdir/drivers/virtio/virtio_balloon.ko" "$kdir/source/tools/testing/selftests/kselftest"
chmod -R a+rX "$images"
for _ in 1 2 3 4 5 6 7 8 9 10; do virsh -c "$uri" version >/dev/null 2>&1 && break; sleep 0.5; done

virsh -c "$uri" create /dev/stdin >/dev/null <<XML
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>1024</memory>
  <currentMemory unit='MiB'>1024</currentMemory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$images/bzImage</kernel>
    <initrd>$images/initramfs.cpio.gz</initrd>
    <cmdline>console=ttyS0 rb.load=1</cmdline>
  </os>
  <devices>
    <serial type='file'><source path='$images/console.log'/><target port='0'/></serial>
    <serial type='pty'><target port='1'/></serial>
    <memballoon model='virtio'><stats period='1'/></memballoon>
  </devices>
</domain>
XML

# Stats come from the driver (its stats queue): wait for them.
memstat() { virsh -c "$uri" dommemstat "$name" 2>/dev/null; }
# Whether dommemstat has a row matching the grep pattern $1. Captured
# first, never piped into `grep -q`: under pipefail that pipeline fails
# whenever grep exits before virsh has written every row (dommemstat writes
# each with its own write(); 1 run in 40 failed so).
memstat_has() {
	local rows
	rows=$(memstat) || return 1
	grep -q -- "$1" <<<"$rows"
}
have_stats=
for _ in $(seq 120); do memstat_has '^usable' && { have_stats=1; break; }; sleep 1; done
[ -n "$have_stats" ] || { cat "$images/console.log" >&2; die "no balloon stats after 120 s"; }
show() {
	echo "\$ virsh dommemstat $name"
	memstat | grep -v '^$'
}
# Waits until the balloon reports `actual` = $1 KiB; prints the seconds.
setmem() {
	local kib=$1 start=$SECONDS
	echo "\$ virsh setmem $name ${kib}KiB --live"
	virsh -c "$uri" setmem "$name" "${kib}KiB" --live >/dev/null
	for _ in $(seq 300); do
		memstat_has "^actual $kib\$" && { echo "(actual $kib KiB after $((SECONDS - start)) s)"; return; }
		sleep 1
	done
	die "actual did not reach $kib KiB"
}
show
setmem 524288
sleep 3   # one more stats period, so the guest figures are fresh
show
setmem 1048576
sleep 3
show
echo "--- guest kernel log (rust_balloon)"
grep rust_balloon "$images/console.log" || true
# RB_CONSOLE_COPY: where to keep the whole guest log (the test reads it).
[ -z "${RB_CONSOLE_COPY:-}" ] || cp "$images/console.log" "$RB_CONSOLE_COPY"
