// SPDX-License-Identifier: GPL-2.0

//! Free page reporting: the kernel hands the driver blocks of free guest
//! memory to tell the host about, so the host can reclaim them without the
//! balloon changing size.

use crate::bindings as b;
use kernel::{prelude::*, sync::Arc, types::Opaque};

/// A list of free page blocks the kernel is reporting, valid only during
/// [`ReportHandler::report`]: the pages stay the kernel's, and must not be
/// touched once the call returns.
pub struct ReportedPages {
    sgl: *mut b::scatterlist,
    nents: u32,
}

impl ReportedPages {
    /// The kernel's scatterlist of the blocks, and its length: for a bus to
    /// hand to its device, valid until [`ReportHandler::report`] returns.
    pub fn as_raw(&self) -> (*mut b::scatterlist, u32) {
        (self.sgl, self.nents)
    }

    /// How many free blocks the report holds (each of at least the
    /// reporting order).
    pub fn blocks(&self) -> usize {
        self.nents as usize
    }
}

/// Where reported pages go.
pub trait ReportHandler: Send + Sync + 'static {
    /// Tells the host about `pages` and returns once it is done with them.
    fn report(&self, pages: &ReportedPages) -> Result;
}

/// A registration with the kernel's free page reporting; unregistered on
/// drop. Holds a reference on its handler: drop it in the driver's `unbind`.
///
/// # Invariants
///
/// `info` is registered with page reporting from construction until drop,
/// and is the first field (`repr(C)`).
#[pin_data(PinnedDrop)]
#[repr(C)]
pub struct PageReporting<T: ReportHandler> {
    #[pin]
    info: Opaque<b::page_reporting_dev_info>,
    handler: Arc<T>,
}

// SAFETY: `info` is only used by the page reporting core; the handler is
// `Send + Sync`.
unsafe impl<T: ReportHandler> Send for PageReporting<T> {}
// SAFETY: See above.
unsafe impl<T: ReportHandler> Sync for PageReporting<T> {}

impl<T: ReportHandler> PageReporting<T> {
    /// Registers `handler` to receive up to `capacity` blocks at a time of
    /// at least `order`, or of the kernel's default order (a pageblock: 2 MiB
    /// on x86-64) when `order` is `None`.
    pub fn register(handler: Arc<T>, capacity: u32, order: Option<u32>) -> Result<Pin<KBox<Self>>> {
        let order = order.unwrap_or(b::PAGE_REPORTING_ORDER_UNSPECIFIED as u32);
        KBox::try_pin_init(
            try_pin_init!(Self {
                handler,
                info <- Opaque::try_ffi_init(move |info: *mut b::page_reporting_dev_info| {
                    // SAFETY: `info` is valid for writes and pinned; the
                    // handler is initialised (fields initialise in order).
                    unsafe {
                        info.write(core::mem::zeroed());
                        (*info).report = Some(Self::report_callback);
                        (*info).capacity = capacity;
                        (*info).order = order;
                        kernel::error::to_result(b::page_reporting_register(info))
                    }
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// # Safety
    ///
    /// Called by page reporting with the registered `info` and a valid
    /// scatterlist of `nents` entries.
    unsafe extern "C" fn report_callback(
        info: *mut b::page_reporting_dev_info,
        sgl: *mut b::scatterlist,
        nents: kernel::ffi::c_uint,
    ) -> kernel::ffi::c_int {
        // SAFETY: `info` is the first field of a registered, live `Self`.
        let this = unsafe { &*info.cast::<Self>() };
        match this.handler.report(&ReportedPages { sgl, nents }) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }
}

#[pinned_drop]
impl<T: ReportHandler> PinnedDrop for PageReporting<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `info` is registered (type invariant); this waits for a
        // report in progress to finish.
        unsafe { b::page_reporting_unregister(self.info.get()) };
    }
}
