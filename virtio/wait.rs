// SPDX-License-Identifier: GPL-2.0

//! A wait queue that can be woken from interrupt context.
//!
//! The kernel's Rust [`kernel::sync::CondVar`] needs its waker to take the
//! lock the waiter sleeps under, which a virtqueue interrupt handler cannot do
//! with a sleeping lock. This is C's `wait_event()`/`wake_up()` instead: the
//! waiter queues itself before it checks its condition, so a wake-up between
//! the check and the sleep is never lost.

use crate::bindings as b;
use core::{mem::MaybeUninit, ops::ControlFlow};
use kernel::{prelude::*, sync::LockClassKey, types::Opaque};

/// A wait queue (`struct wait_queue_head`).
///
/// # Invariants
///
/// `head` is an initialised `wait_queue_head` for as long as `self` lives.
#[pin_data]
pub(crate) struct WaitQueue {
    #[pin]
    head: Opaque<b::wait_queue_head>,
}

// SAFETY: A `wait_queue_head` is protected by its own spinlock; every
// operation on it may come from any thread.
unsafe impl Send for WaitQueue {}
// SAFETY: See above.
unsafe impl Sync for WaitQueue {}

impl WaitQueue {
    /// Creates a wait queue whose lock lockdep knows as `name`/`key`.
    pub(crate) fn new(name: &'static CStr, key: Pin<&'static LockClassKey>) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `ptr` is valid for writes; `__init_waitqueue_head`
            // initialises every field. `name` and `key` are static.
            head <- Opaque::ffi_init(|ptr: *mut b::wait_queue_head| unsafe {
                b::__init_waitqueue_head(ptr, name.as_char_ptr(), key.as_ptr().cast())
            }),
        })
    }

    /// Wakes every waiter. Callable from any context, hard IRQ included.
    pub(crate) fn wake_all(&self) {
        // SAFETY: `head` is initialised by the type invariant.
        unsafe { b::__wake_up(self.head.get(), b::TASK_NORMAL, 0, core::ptr::null_mut()) };
    }

    /// Sleeps until `poll` breaks, and returns what it broke with. `poll`
    /// runs after every wake-up, and at least every 100 ms: a device that
    /// broke never wakes its waiters, so `poll` should also check for that.
    ///
    /// The sleep is `TASK_IDLE`: it cannot be interrupted (the caller holds
    /// state the host may still be reading), and it does not count as load
    /// or trip the hung-task detector while a slow host takes its time.
    pub(crate) fn wait_for<T>(&self, mut poll: impl FnMut() -> ControlFlow<T>) -> T {
        if let ControlFlow::Break(value) = poll() {
            return value;
        }
        let mut entry = MaybeUninit::<b::wait_queue_entry>::uninit();
        let entry = entry.as_mut_ptr();
        // SAFETY: `entry` is valid for writes and stays in place until
        // `finish_wait` below has taken it off the queue.
        unsafe { b::init_wait_entry(entry, 0) };
        let value = loop {
            // SAFETY: `head` is initialised; `entry` was initialised above.
            unsafe { b::prepare_to_wait_event(self.head.get(), entry, b::TASK_IDLE as i32) };
            if let ControlFlow::Break(value) = poll() {
                break value;
            }
            // SAFETY: Sleeping is allowed here: callers are in process
            // context (the same rule as C's `wait_event()`).
            unsafe {
                b::schedule_timeout(kernel::time::msecs_to_jiffies(100) as kernel::ffi::c_long)
            };
        };
        // SAFETY: `entry` was queued on `head` by `prepare_to_wait_event`.
        unsafe { b::finish_wait(self.head.get(), entry) };
        value
    }
}
