// SPDX-License-Identifier: GPL-2.0

//! A memory shrinker: lets reclaim ask the driver for memory it holds.

use crate::bindings as b;
use core::ptr::NonNull;
use kernel::{prelude::*, sync::Arc, types::ForeignOwnable};

/// Memory a driver can give back under pressure.
pub trait ShrinkHandler: Send + Sync + 'static {
    /// How many pages could be freed now (0: nothing to do).
    fn count(&self) -> usize;
    /// Frees up to `pages` pages; returns how many were freed, or `None`
    /// if it cannot free any now without waiting (reclaim then stops
    /// asking this time: `SHRINK_STOP`).
    fn scan(&self, pages: usize) -> Option<usize>;
}

/// A registered shrinker; freed (unregistered) on drop. Holds a reference
/// on its handler: drop it in the driver's `unbind`.
///
/// # Invariants
///
/// `shrinker` is registered, and its `private_data` is an `Arc<T>` from
/// `into_foreign`, until drop.
pub struct Shrinker<T: ShrinkHandler> {
    shrinker: NonNull<b::shrinker>,
    _handler: core::marker::PhantomData<Arc<T>>,
}

// SAFETY: The shrinker core synchronises its own use of the registration.
unsafe impl<T: ShrinkHandler> Send for Shrinker<T> {}
// SAFETY: See above.
unsafe impl<T: ShrinkHandler> Sync for Shrinker<T> {}

impl<T: ShrinkHandler> Shrinker<T> {
    /// Registers `handler` as the shrinker `name`.
    pub fn register(handler: Arc<T>, name: &'static CStr) -> Result<Self> {
        // SAFETY: `"%s"` with a valid C string.
        let raw = unsafe { b::shrinker_alloc(0, c"%s".as_char_ptr(), name.as_char_ptr()) };
        let shrinker = NonNull::new(raw).ok_or(ENOMEM)?;
        // SAFETY: `shrinker` is allocated and not registered yet, so its
        // fields are ours to set; `register` makes it live.
        unsafe {
            let s = shrinker.as_ptr();
            (*s).count_objects = Some(Self::count_callback);
            (*s).scan_objects = Some(Self::scan_callback);
            (*s).private_data = handler.into_foreign().cast();
            b::shrinker_register(s);
        }
        Ok(Self {
            shrinker,
            _handler: core::marker::PhantomData,
        })
    }

    /// # Safety
    ///
    /// `shrinker` is registered by `register`.
    unsafe fn handler<'a>(shrinker: *mut b::shrinker) -> <Arc<T> as ForeignOwnable>::Borrowed<'a> {
        // SAFETY: `private_data` is the `Arc<T>` set in `register`, released
        // only after `shrinker_free` stopped all callbacks.
        unsafe { <Arc<T> as ForeignOwnable>::borrow((*shrinker).private_data.cast()) }
    }

    /// # Safety
    ///
    /// Called by the shrinker core for a registered shrinker.
    unsafe extern "C" fn count_callback(
        shrinker: *mut b::shrinker,
        _sc: *mut b::shrink_control,
    ) -> kernel::ffi::c_ulong {
        // SAFETY: As the caller guarantees.
        unsafe { Self::handler(shrinker) }.count() as kernel::ffi::c_ulong
    }

    /// # Safety
    ///
    /// Called by the shrinker core for a registered shrinker, with a valid
    /// `sc`.
    unsafe extern "C" fn scan_callback(
        shrinker: *mut b::shrinker,
        sc: *mut b::shrink_control,
    ) -> kernel::ffi::c_ulong {
        // SAFETY: The core passes a valid control block.
        let wanted = unsafe { (*sc).nr_to_scan };
        // SAFETY: As the caller guarantees.
        match unsafe { Self::handler(shrinker) }.scan(wanted) {
            Some(freed) => freed as kernel::ffi::c_ulong,
            None => b::SHRINK_STOP,
        }
    }
}

impl<T: ShrinkHandler> Drop for Shrinker<T> {
    fn drop(&mut self) {
        let s = self.shrinker.as_ptr();
        // SAFETY: Registered (type invariant). `shrinker_free` waits for
        // running callbacks and frees the shrinker, after which the handler
        // reference can go.
        unsafe {
            let handler = (*s).private_data;
            b::shrinker_free(s);
            drop(<Arc<T> as ForeignOwnable>::from_foreign(handler.cast()));
        }
    }
}
