// SPDX-License-Identifier: GPL-2.0

//! What `kernel::workqueue` lacks for a driver that must quiesce: flushing.

use super::bindings as b;
use kernel::workqueue::Work;

/// Waits until the last queued instance of `work` has finished running.
/// Returns whether it had to wait.
pub(crate) fn flush<T: ?Sized, const ID: u64>(work: &Work<T, ID>) -> bool {
    // SAFETY: `work` is a live, initialised `Work`, so `raw_get` yields its
    // initialised `work_struct`, valid for the duration of the call.
    unsafe { b::flush_work(Work::raw_get(work).cast()) }
}
