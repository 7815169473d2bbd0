#!/usr/bin/env bash
# Builds (or reuses) the rust-balloon test kernel and prints its build
# directory on stdout; everything else goes to stderr.
#
# The cache key is the kernel version, the config fragment and the toolchain
# (a Rust module must be built by the rustc that built its kernel), so CI and
# later sessions reuse the kernel until one of them changes.
#
#   scripts/kernel.sh [test|bench|debug] [--print]
#   scripts/kernel.sh --debian-mirror
#   scripts/kernel.sh source
#     source - only extract the kernel source (if it is not) and print
#             its directory: what `make patches` imports
#     --print - only print the directory, if that kernel is built
#     --debian-mirror - print the mirror an unstable apt source would use
#     test  - selftests/config (debug checks on): what `make check` boots
#     bench - the same without the debug checks, for `make bench`
#     debug - the test kernel plus KASAN, kmemleak and the other checks of
#             selftests/config.debug, built with clang: what `make stress`
#             boots
#     arm64-64k, arm64-4k - arm64 (cross-built with aarch64-linux-gnu-gcc)
#             from allnoconfig and selftests/config.arm64, with 64 KiB or
#             4 KiB pages: what `make check-arm64` boots and builds
set -euo pipefail
. "$(dirname "$0")/common.sh"

# Bump when the way the kernel is configured or built changes (not for
# edits that do not affect the result: this script is not hashed).
RECIPE=1

flavour=${1:-test}
print_only=${2:-}
fragment=$RB_ROOT/selftests/config
case $flavour in
test | bench | debug | source | --debian-mirror) ;;
arm64-64k | arm64-4k) fragment=$RB_ROOT/selftests/config.arm64 ;;
*) die "unknown kernel flavour '$flavour' (test, bench, debug, arm64-64k or arm64-4k)" ;;
esac

src_dir=$RB_CACHE/src/linux-$RB_KVER

fetch_tarball() {
	local tarball=$RB_SHARED_TARBALL
	if [ -f "$tarball" ]; then
		if (cd "$(dirname "$tarball")" && sha256sum -c --status "$(basename "$tarball").sha256"); then
			say "using $tarball (sha256 ok)" >&2
			echo "$tarball"
			return
		fi
		say "warning: $tarball fails its sha256 check; ignoring it"
	fi
	local deb_dir=$RB_CACHE/deb
	tarball=$deb_dir/usr/src/linux-source-$RB_KSERIES.tar.xz
	if [ ! -f "$tarball" ]; then
		say "fetching Debian's linux-source-$RB_KSERIES"
		add_unstable_source
		mkdir -p "$deb_dir"
		(cd "$deb_dir" && apt-get download -qq "linux-source-$RB_KSERIES" &&
			dpkg-deb -x linux-source-"$RB_KSERIES"_*.deb .) ||
			die "could not get linux-source-$RB_KSERIES from Debian"
	fi
	echo "$tarball"
}

# The Debian mirror this machine's apt already uses for its own release
# (apt itself reads sources.list and deb822 .sources files alike).
debian_mirror() {
	local codename
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[ -n "$codename" ] || die "no VERSION_CODENAME in /etc/os-release: not a Debian system?"
	apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE) $(IDENTIFIER)' |
		awk -v rel="$codename" '$2 == rel && $3 == "Packages" { print $1; exit }'
}

# Debian 12 has no linux-source-7.2; unstable has. Add it at priority 100 so
# that nothing else is ever upgraded from it.
add_unstable_source() {
	local list=/etc/apt/sources.list.d/rust-balloon-unstable.list
	local pref=/etc/apt/preferences.d/rust-balloon-unstable
	local mirror
	[ -f "$list" ] && return
	[ "$(id -u)" -eq 0 ] || die "need root to add Debian unstable as an apt source"
	mirror=$(debian_mirror)
	[ -n "$mirror" ] || die "no apt source for this machine's Debian release to take the mirror from"
	echo "deb ${mirror%/} unstable main" > "$list"
	printf 'Package: *\nPin: release a=unstable\nPin-Priority: 100\n' > "$pref"
	apt-get update -qq
}

extract_source() {
	[ -f "$src_dir/.rust-balloon-extracted" ] && return
	local tarball
	tarball=$(fetch_tarball)
	need_space "$RB_CACHE" 8
	say "extracting $(basename "$tarball") to $src_dir"
	rm -rf "$src_dir" "$src_dir.tmp"
	mkdir -p "$src_dir.tmp"
	tar -xf "$tarball" -C "$src_dir.tmp" --strip-components=1
	local version
	version=$(make -s -C "$src_dir.tmp" kernelversion)
	[ "$version" = "$RB_KVER" ] || die "tarball holds Linux $version, expected $RB_KVER"
	touch "$src_dir.tmp/.rust-balloon-extracted"
	mv "$src_dir.tmp" "$src_dir"
}

# The fragment for this flavour: test adds config.trim (subsystems no test
# uses); bench drops the debug checks; debug drops what brings CONTIG_ALLOC
# (CMA, memory hotplug) and adds config.debug.
flavour_fragment() {
	case $flavour in
	test)
		cat "$fragment" "$fragment.trim" ;;
	bench)
		sed -E 's/^CONFIG_(PROVE_LOCKING|DEBUG_ATOMIC_SLEEP|DEBUG_LIST|DEBUG_VM)=y/# CONFIG_\1 is not set/' "$fragment"
		cat "$fragment.trim" ;;
	arm64-4k)
		sed 's/^CONFIG_ARM64_64K_PAGES=y/CONFIG_ARM64_4K_PAGES=y/' "$fragment" ;;
	debug)
		grep -Ev '^CONFIG_(CMA|CONTIG_ALLOC|MEMORY_HOTPLUG|MEMORY_HOTREMOVE|ACPI_HOTPLUG_MEMORY)=' "$fragment"
		cat "$fragment.debug" ;;
	*)
		cat "$fragment" ;;
	esac
}

# The debug kernel is built with clang: the kernel allows KASAN with Rust
# only then.
make_flags=()
base_config=x86_64_defconfig
image=bzImage
case $flavour in
debug) make_flags=("LLVM=$RB_LLVM") ;;
arm64-*)
	make_flags=(ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-)
	base_config=allnoconfig
	image=Image ;;
esac

cache_key() {
	{
		echo "$RB_KVER $flavour"
		flavour_fragment
		rustc --version
		bindgen --version
		gcc --version | sed -n 1p
		[ "$flavour" != debug ] || "clang$RB_LLVM" --version | sed -n 1p
		case $flavour in arm64-*) aarch64-linux-gnu-gcc --version | sed -n 1p ;; esac
		echo "recipe $RECIPE"
	} | sha256sum | cut -c1-12
}

# Every option the fragment sets must survive olddefconfig: a dependency
# that is not met (no Rust toolchain, say) silently drops it otherwise.
check_config() {
	local cfg=$1/.config line opt val bad=0
	while IFS= read -r line; do
		case $line in
		CONFIG_*=*)
			opt=${line%%=*} val=${line#*=}
			grep -qx "$opt=$val" "$cfg" || { say "config: $opt=$val did not stick"; bad=1; } ;;
		"# CONFIG_"*" is not set")
			opt=${line#\# } opt=${opt%% *}
			! grep -q "^$opt=" "$cfg" || { say "config: $opt stayed enabled"; bad=1; } ;;
		esac
	done < <(flavour_fragment)
	if ! grep -qx CONFIG_RUST=y "$cfg"; then
		make -s -C "$src_dir" O="$1" "${make_flags[@]}" rustavailable >&2 || true
		die "KDIR without CONFIG_RUST: the Rust toolchain is not usable for this kernel (see above)"
	fi
	[ $bad -eq 0 ] || die "config fragment not honoured (see above)"
}

main() {
	if [ "$flavour" = source ]; then
		extract_source
		echo "$src_dir"
		return
	fi
	command -v rustc >/dev/null || die "no rustc (run scripts/setup.sh)"
	command -v bindgen >/dev/null || die "no bindgen (run scripts/setup.sh)"
	case $flavour in
	arm64-*) command -v aarch64-linux-gnu-gcc >/dev/null ||
		die "no aarch64-linux-gnu-gcc (run scripts/setup.sh --arm64)" ;;
	esac
	[ "$print_only" = --print ] || extract_source
	local key build
	key=$(cache_key)
	build=$RB_CACHE/linux-$RB_KVER-$flavour-$key
	if [ "$print_only" = --print ]; then
		[ -f "$build/.rust-balloon-built" ] && echo "$build"
		return
	fi
	if [ -f "$build/.rust-balloon-built" ]; then
		say "reusing cached kernel $build"
		echo "$build"
		return
	fi
	need_space "$RB_CACHE" 6
	mkdir -p "$build"
	local log=$build/build.log
	say "building Linux $RB_KVER ($flavour) in $build; log in $log (about 20 min on 2 cores; the debug kernel about 26)"
	flavour_fragment > "$build/fragment.config"
	{
		make -C "$src_dir" O="$build" "${make_flags[@]}" $base_config
		if [ $base_config = x86_64_defconfig ]; then
			(cd "$build" && "$src_dir/scripts/kconfig/merge_config.sh" -m .config \
				"$src_dir/kernel/configs/kvm_guest.config" fragment.config)
		else
			(cd "$build" && "$src_dir/scripts/kconfig/merge_config.sh" -m .config fragment.config)
		fi
		make -C "$src_dir" O="$build" "${make_flags[@]}" olddefconfig
	} > "$log" 2>&1 || { tail -n 30 "$log" >&2; die "kernel configuration failed"; }
	check_config "$build"
	local start=$SECONDS
	if ! make -C "$src_dir" O="$build" "${make_flags[@]}" -j"$(nproc)" $image modules >> "$log" 2>&1; then
		grep -E 'error|Error' "$log" | tail -n 20 >&2
		die "kernel build failed; see $log"
	fi
	touch "$build/.rust-balloon-built"
	say "kernel built in $((SECONDS - start)) s"
	echo "$build"
}

if [ "$flavour" = --debian-mirror ]; then
	debian_mirror
else
	main
fi
