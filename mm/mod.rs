// SPDX-License-Identifier: GPL-2.0

//! Memory management: what a balloon driver needs of it.
//!
//! In the kernel crate these modules join `kernel::mm` (the upstream series,
//! `scripts/patches.sh`, adds their `pub mod` lines to `rust/kernel/mm.rs`);
//! here they are that module's stand-in, declared in the same way.

#[cfg(CONFIG_BALLOON)]
pub mod balloon;
pub mod oom;
#[cfg(CONFIG_PAGE_REPORTING)]
pub mod page_reporting;
pub mod shrinker;
pub mod vmstat;
