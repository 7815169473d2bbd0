// SPDX-License-Identifier: GPL-2.0

//! OOM notifier: a chance to release memory before the OOM killer picks a
//! victim.

use crate::bindings as b;
use kernel::{prelude::*, sync::Arc, types::Opaque};

/// What to do when the guest runs out of memory.
pub trait OomHandler: Send + Sync + 'static {
    /// Releases some memory; returns how many guest pages were freed.
    /// Called from the allocation path of whatever task ran out of memory:
    /// it may sleep, but must not allocate memory in a way that could
    /// recurse into the OOM killer.
    fn release_on_oom(this: &Arc<Self>) -> usize;
}

/// A registered OOM notifier; unregistered on drop.
///
/// It holds a reference on its handler, so the handler must not own this
/// registration past its own teardown (drop it in the driver's `unbind`).
///
/// # Invariants
///
/// `nb` is registered on the OOM notifier chain from construction until
/// drop; `nb` is the first field (`repr(C)`), so the callback can recover
/// `Self` from it.
#[pin_data(PinnedDrop)]
#[repr(C)]
pub struct OomNotifier<T: OomHandler> {
    #[pin]
    nb: Opaque<b::notifier_block>,
    handler: Arc<T>,
}

// SAFETY: The notifier block is only touched by the notifier chain, under
// its own lock; the handler is `Send + Sync`.
unsafe impl<T: OomHandler> Send for OomNotifier<T> {}
// SAFETY: See above.
unsafe impl<T: OomHandler> Sync for OomNotifier<T> {}

impl<T: OomHandler> OomNotifier<T> {
    /// Registers `handler` with `priority` (higher runs earlier).
    pub fn register(handler: Arc<T>, priority: i32) -> Result<Pin<KBox<Self>>> {
        KBox::try_pin_init(
            try_pin_init!(Self {
                handler,
                nb <- Opaque::try_ffi_init(move |nb: *mut b::notifier_block| {
                    // SAFETY: `nb` is valid for writes and pinned; `handler`
                    // is initialised already (fields initialise in order).
                    unsafe {
                        nb.write(core::mem::zeroed());
                        (*nb).notifier_call = Some(Self::notify);
                        (*nb).priority = priority;
                        kernel::error::to_result(b::register_oom_notifier(nb))
                    }
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// # Safety
    ///
    /// Called by the OOM notifier chain with the registered block and a
    /// pointer to the count of freed pages.
    unsafe extern "C" fn notify(
        nb: *mut b::notifier_block,
        _event: kernel::ffi::c_ulong,
        freed: *mut kernel::ffi::c_void,
    ) -> kernel::ffi::c_int {
        // SAFETY: `nb` is the first field of a registered, live `Self`.
        let this = unsafe { &*nb.cast::<Self>() };
        let released = T::release_on_oom(&this.handler);
        // SAFETY: The OOM killer passes a pointer to its `unsigned long`.
        unsafe { *freed.cast::<kernel::ffi::c_ulong>() += released as kernel::ffi::c_ulong };
        b::NOTIFY_OK as kernel::ffi::c_int
    }
}

#[pinned_drop]
impl<T: OomHandler> PinnedDrop for OomNotifier<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `nb` is registered (type invariant); unregistering waits for
        // running callbacks.
        unsafe { b::unregister_oom_notifier(self.nb.get()) };
    }
}
