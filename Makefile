# SPDX-License-Identifier: GPL-2.0
#
#   make KDIR=/path/to/linux   build rust_balloon.ko against your kernel tree
#   make                       the same, against the cached test kernel
#   make check [ARGS=...]      install, build kernel + module, run all tests
#                              (ARGS: pytest arguments, e.g. ARGS="-k oom")
#   make demo                  boot a guest and balloon it live from the host
#   make bench                 C vs Rust driver benchmark
#   make stress                reliability scenarios on the debug kernel
#   make check-arm64           arm64: the core tests on 64 KiB pages (QEMU
#                              virt, TCG), and a build with 4 KiB pages
#   make kselftest-install     the kselftest, the kernel's runner and the
#                              module in build/kselftest (run_kselftest.sh)
#   make patches               the upstream series (four patches and a cover
#                              letter) against the Linux source, with
#                              checkpatch, in build/patches (issue 20)
#   make patches-check         the series built after each patch, then its
#                              kernels booted: kselftest, core tests, KUnit
#                              doctests (docs/patches-check-output.txt)
#   make fmt | clippy | clean

SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
CACHE ?= $(HOME)/.cache/rust-balloon
VENV := $(CACHE)/venv
export LIBCLANG_PATH ?= /usr/lib/llvm-19/lib
export PATH := $(HOME)/.cargo/bin:$(PATH)

# KDIR defaults to the cached test kernel (built by `make kernel`).
KDIR ?= $(shell $(ROOT)/scripts/kernel.sh test --print 2>/dev/null)
# A kernel built with clang (the debug kernel) builds modules with its LLVM.
# An arm64 kernel builds modules with the aarch64 cross compiler.
KMAKE = $(MAKE) -C "$(KDIR)" $(shell sed -n \
	-e 's/^CONFIG_CLANG_VERSION=\([0-9]*\)[0-9]\{4\}$$/LLVM=-\1/p' \
	-e 's/^CONFIG_ARM64=y$$/ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-/p' "$(KDIR)/.config" 2>/dev/null)

.PHONY: all module setup kernel check check-arm64 demo bench stress patches patches-check fmt clippy clean kselftest-install

all: module

module:
	@test -n "$(KDIR)" || { echo "no KDIR: pass KDIR=/path/to/kernel or run 'make kernel'"; exit 1; }
	@grep -qx CONFIG_RUST=y "$(KDIR)/.config" 2>/dev/null || \
		{ echo "KDIR without CONFIG_RUST: $(KDIR) is not a Rust-enabled kernel build"; exit 1; }
	$(KMAKE) M="$(ROOT)" modules

kselftest-install: module
	@scripts/kselftest-install.sh "$(KDIR)" "$(ROOT)/build/kselftest"

clippy:
	$(KMAKE) M="$(ROOT)" CLIPPY=1 modules

fmt:
	rustfmt --edition 2021 --config-path "$(KDIR)/source/.rustfmt.toml" $$(git ls-files '*.rs')

setup:
	@scripts/setup.sh

kernel: setup
	@scripts/kernel.sh test >/dev/null

check: setup
	@scripts/check.sh $(ARGS)

check-arm64:
	@scripts/check-arm64.sh

demo: setup
	@scripts/demo.sh

bench: setup
	@scripts/bench.sh

stress: setup
	@scripts/stress.sh

patches:
	@scripts/patches.sh

patches-check: setup
	@scripts/patches-check.sh

clean:
	@if [ -n "$(KDIR)" ]; then $(KMAKE) M="$(ROOT)" clean; fi
	rm -f bindings/bindings_generated.rs bindings/.bindings_generated.rs.cmd
