#!/usr/bin/env bash
# Builds the test guest's initramfs: busybox, the init and agent above, the
# kselftest scripts, the two balloon drivers, a kexec loader, a memory
# integrity checker, the bench's busy workload and a memory toucher.
#   mkinitramfs.sh OUT.cpio.gz RUST_KO C_KO KSFT_DIR
# KSFT_DIR: the kernel's tools/testing/selftests/kselftest, whose KTAP
# helpers the kselftest script sources (/selftests/kselftest/, as in an
# installed kselftest tree).
set -euo pipefail
out=$1 rust_ko=$2 c_ko=$3 ksft_dir=$4
here=$(cd "$(dirname "$0")" && pwd)
# The guest's architecture is the module's: an arm64 guest gets the aarch64
# busybox `setup.sh --arm64` fetched and cross-compiled helpers.
. "$here/../../scripts/common.sh"
busybox=/bin/busybox cc=gcc
if grep -q "Machine:.*AArch64" <<<"$(LC_ALL=C readelf -h "$rust_ko")"; then
	busybox=$RB_CACHE/arm64/busybox cc=aarch64-linux-gnu-gcc
fi
[ -x "$busybox" ] || { echo "no $busybox (run scripts/setup.sh, with --arm64 for arm64)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,lib/modules,selftests}
cp "$busybox" "$root/bin/busybox"
install -m 755 "$here/init" "$root/init"
install -m 755 "$here/rb-agent" "$root/bin/rb-agent"
# The static helpers are built once per source and compiler, not per
# initramfs (a make check builds dozens of initramfs).
helpers=$RB_CACHE/guest-helpers/$(cat "$here"/rb-*.c <("$cc" --version) | sha256sum | cut -c1-12)
progs="rb-kexec rb-pattern rb-busy rb-offline rb-touch rb-tick"
if [ ! -d "$helpers" ]; then
	mkdir -p "$helpers.tmp.$$"
	for prog in $progs; do
		"$cc" -static -O2 -Wall -o "$helpers.tmp.$$/$prog" "$here/$prog.c"
	done
	# Whole or not at all, whoever builds them at the same time.
	mv -T "$helpers.tmp.$$" "$helpers" 2>/dev/null || rm -rf "$helpers.tmp.$$"
fi
for prog in $progs; do
	install -m 755 "$helpers/$prog" "$root/bin/$prog"
done
cp -r "$here/../rust_balloon" "$root/selftests/"
mkdir -p "$root/selftests/kselftest"
cp "$ksft_dir/ktap_helpers.sh" "$root/selftests/kselftest/"
cp "$rust_ko" "$root/lib/modules/rust_balloon.ko"
cp "$c_ko" "$root/lib/modules/virtio_balloon.ko"
(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 > "$out.tmp"
mv "$out.tmp" "$out"
