#!/usr/bin/env bash
# Installs the rust_balloon kselftest the way the kernel installs its own
# (make -C tools/testing/selftests TARGETS=rust_balloon install): the
# kernel's runner (run_kselftest.sh, kselftest/) with selftests/rust_balloon
# and the module built for KDIR beside its script. The result runs in any
# guest of that kernel: run_kselftest.sh, KTAP on standard output.
#   kselftest-install.sh KDIR INSTALL_PATH
set -euo pipefail
. "$(dirname "$0")/common.sh"
kdir=${1:?usage: kselftest-install.sh KDIR INSTALL_PATH}
install_path=${2:?usage: kselftest-install.sh KDIR INSTALL_PATH}
src=$(readlink -f "$kdir/source" 2>/dev/null || echo "$kdir")
[ -f "$src/tools/testing/selftests/lib.mk" ] || die "no kselftest tree in $src"
[ -f "$RB_ROOT/rust_balloon.ko" ] || die "build the module first (make)"
# The kernel's selftests tree as symlinks (the cached tree stays as it is),
# with ours added as one more target.
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/tools/testing"
cp -rs "$src/tools/testing/selftests" "$tree/tools/testing/"
cp -rs "$src/scripts" "$tree/"
cp -r "$RB_ROOT/selftests/rust_balloon" "$tree/tools/testing/selftests/"
rm -rf "$install_path"
make -s -C "$tree/tools/testing/selftests" TARGETS=rust_balloon \
	INSTALL_PATH="$(realpath -m "$install_path")" install >/dev/null
cp "$RB_ROOT/rust_balloon.ko" "$install_path/rust_balloon/"
say "kselftest installed in $install_path (run_kselftest.sh)"
