// SPDX-License-Identifier: GPL-2.0

//! What `kernel::workqueue` lacks for a driver that must quiesce.
//!
//! The upstream series (`scripts/patches.sh`) adds this module's lines to
//! `rust/kernel/workqueue.rs`, with `cancel.rs` in `rust/kernel/workqueue/`.

mod cancel;

pub use cancel::cancel;
