// SPDX-License-Identifier: GPL-2.0

//! What `kernel::workqueue` lacks for a driver that must quiesce:
//! cancelling.

use crate::bindings as b;
use kernel::{
    sync::Arc,
    workqueue::{HasWork, Work, WorkItem},
};

/// Takes `this`'s work item off its queue if it is queued, and waits for
/// an instance already running to finish; the reference the queue held is
/// dropped. Returns whether it was queued.
///
/// Unlike `flush_work()`, it never waits for a queued instance to run: on a
/// frozen workqueue (hibernation, from the snapshot to power-off) that
/// never happens, and a flush there hangs the shutdown. Not for delayed
/// work (its timer may be armed: `cancel_delayed_work_sync()` is for that).
///
/// # Examples
///
/// ```
/// use kernel::sync::Arc;
/// use kernel::workqueue::{self, impl_has_work, new_work, Work, WorkItem};
///
/// #[pin_data]
/// struct Refill {
///     #[pin]
///     work: Work<Refill>,
/// }
///
/// impl_has_work! {
///     impl HasWork<Self> for Refill { self.work }
/// }
///
/// impl WorkItem for Refill {
///     type Pointer = Arc<Refill>;
///
///     fn run(_this: Arc<Refill>) {}
/// }
///
/// let refill = Arc::pin_init(
///     pin_init!(Refill { work <- new_work!("Refill::work") }),
///     GFP_KERNEL,
/// )?;
/// // Never queued: nothing to take off the queue, nothing to wait for.
/// assert!(!workqueue::cancel(&refill));
/// // Queued, then cancelled: either it ran already, or it is taken off
/// // the queue (and the queue's reference dropped) without running.
/// let _ = workqueue::system().enqueue(refill.clone());
/// workqueue::cancel(&refill);
/// assert!(!workqueue::cancel(&refill));
/// # Ok::<(), Error>(())
/// ```
pub fn cancel<T, const ID: u64>(this: &Arc<T>) -> bool
where
    T: WorkItem<ID, Pointer = Arc<T>> + HasWork<T, ID>,
{
    let ptr = Arc::as_ptr(this);
    // SAFETY: `ptr` points into a live `Arc<T>`, so it is valid, and
    // `raw_get_work` gives its initialised `Work` field, valid as long as
    // `this` is.
    let work = unsafe { Work::raw_get(T::raw_get_work(ptr.cast_mut())) };
    // SAFETY: `work` is an initialised `work_struct` (above).
    let was_queued = unsafe { b::cancel_work_sync(work.cast()) };
    if was_queued {
        // SAFETY: `T`'s work pointer type is `Arc<T>`, so a queued instance
        // of this work item was queued by `Arc<T>`'s `__enqueue`, which
        // leaked one reference to the `T` that holds the `work_struct`
        // (this one, `ptr`) with `Arc::into_raw` and would have taken it
        // back in `run`. Cancelling took it off the queue before it ran,
        // so that reference is ours to drop, once.
        drop(unsafe { Arc::from_raw(ptr) });
    }
    was_queued
}
