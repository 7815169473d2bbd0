// SPDX-License-Identifier: GPL-2.0
/*
 * The static inline functions and macros the safe layer calls, which Rust
 * cannot call itself: wrapped the way rust/helpers/ wraps them for the
 * kernel crate, one file per file of rust/helpers/ that would take them
 * (the upstream series, scripts/patches.sh, adds each to its namesake).
 * bindgen reads this file too (bindings.h), and the build gives Rust each
 * function under its C name, without the rust_helper_ prefix, as the
 * kernel's rust/Makefile does.
 */

#include <linux/compiler_types.h>

/*
 * The kernel makes its helpers inline into the Rust code that calls them;
 * a module's are plain functions of its own object, weak so that a kernel
 * that has the same helpers (the upstream series' first patch, or a later
 * kernel) does not clash with the driver built in.
 */
#undef __rust_helper
#define __rust_helper __weak

#include "helpers/device.c"
#include "helpers/list.c"
#include "helpers/mm.c"
#include "helpers/page.c"
#include "helpers/virtio.c"
