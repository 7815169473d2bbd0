#!/usr/bin/env bash
# Builds rust_balloon.ko against KDIR, then checks it the way the kernel's
# Rust code is checked: rustfmt, and CLIPPY=1 with no warnings.
#   build-module.sh KDIR
set -euo pipefail
. "$(dirname "$0")/common.sh"
kdir=$1
grep -qx CONFIG_RUST=y "$kdir/.config" 2>/dev/null ||
	die "KDIR without CONFIG_RUST: $kdir is not a Rust-enabled kernel build"
cd "$RB_ROOT"
kmake "$kdir" -s M="$RB_ROOT" modules
say "built $RB_ROOT/rust_balloon.ko"

rustfmt --edition 2021 --config-path "$kdir/source/.rustfmt.toml" --check \
	$(git ls-files '*.rs' 2>/dev/null || echo rust_balloon.rs virtio/[!b]*.rs) ||
	die "rustfmt: the sources are not formatted (run 'make fmt')"

# Clippy rebuilds the object; keep its output and refuse any warning.
touch rust_balloon.rs
log=$(kmake "$kdir" M="$RB_ROOT" CLIPPY=1 modules 2>&1) || { echo "$log"; die "clippy build failed"; }
if grep -q '^warning' <<<"$log"; then
	echo "$log" | grep -A12 '^warning' >&2
	die "clippy warnings (see above)"
fi
say "rustfmt and clippy clean"

# The page frame arithmetic is plain Rust: unit-test it on the host.
test_bin=$(mktemp)
rustc --edition 2021 --test -o "$test_bin" mm/balloon/pfn.rs 2>&1 | grep -v '^$' || true
[ -x "$test_bin" ] || die "host unit tests of mm/balloon/pfn.rs did not build"
"$test_bin" -q || { rm -f "$test_bin"; die "host unit tests of mm/balloon/pfn.rs failed"; }
rm -f "$test_bin"
