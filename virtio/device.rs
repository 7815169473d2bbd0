// SPDX-License-Identifier: GPL-2.0

//! Virtio devices and the driver's binding to one.

use super::{bindings as b, reporting::ReportedPages, wait::WaitQueue, Buffer, Page};
use core::ptr::NonNull;
use kernel::{
    error::to_result,
    new_mutex,
    prelude::*,
    static_lock_class,
    sync::{Arc, Mutex},
    types::Opaque,
};

/// A virtio device (`struct virtio_device`), as the bus hands it to a driver.
///
/// # Invariants
///
/// A `&Device` is only created for a device that is bound, or being bound,
/// to the driver, and only for the duration of a bus callback.
#[repr(transparent)]
pub(crate) struct Device(Opaque<b::virtio_device>);

impl Device {
    /// Creates a reference from the bus's pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a `virtio_device` that stays valid, and bound to
    /// this driver, for `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut b::virtio_device) -> &'a Self {
        // SAFETY: `Device` is a transparent wrapper of `virtio_device`; the
        // caller guarantees the pointer is valid for `'a`.
        unsafe { &*ptr.cast::<Self>() }
    }

    pub(super) fn as_raw(&self) -> *mut b::virtio_device {
        self.0.get()
    }

    /// The generic device, for logging with `dev_info!` and friends.
    pub(crate) fn as_dev(&self) -> &kernel::device::Device {
        // SAFETY: `dev` is embedded in a valid `virtio_device` (type
        // invariant), and lives as long as it.
        unsafe {
            kernel::device::Device::from_raw(
                core::ptr::addr_of_mut!((*self.as_raw()).dev).cast::<kernel::bindings::device>(),
            )
        }
    }

    /// Whether feature `bit` was negotiated (or, in `validate`, offered).
    pub(crate) fn has_feature(&self, bit: u32) -> bool {
        features_test(self.as_raw(), bit)
    }

    /// Turns feature `bit` off before negotiation completes. Only has an
    /// effect from [`super::Driver::validate`], where the virtio core lets a
    /// driver drop features the device offered.
    pub(crate) fn clear_feature(&self, bit: u32) {
        let (word, mask) = feature_word(bit);
        // SAFETY: The device is valid (type invariant); `validate` runs before
        // the core reads the features back, serialised by the bus.
        unsafe {
            if let Some(w) = (*self.as_raw())
                .__bindgen_anon_1
                .features_array
                .get_mut(word)
            {
                *w &= !mask;
            }
        }
    }
}

fn feature_word(bit: u32) -> (usize, u64) {
    ((bit / 64) as usize, 1u64 << (bit % 64))
}

fn features_test(vdev: *mut b::virtio_device, bit: u32) -> bool {
    let (word, mask) = feature_word(bit);
    // SAFETY: Callers pass a valid device; `features_array` is the full view
    // of the feature union.
    let words = unsafe { (*vdev).__bindgen_anon_1.features_array };
    words.get(word).is_some_and(|w| w & mask != 0)
}

/// Identifies one of a device's virtqueues: its position in the list given to
/// [`BoundGuard::find_vqs`], which is also its (dense) queue index.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct QueueId(pub(crate) usize);

/// A virtqueue the driver asks for.
pub(crate) struct QueueInfo {
    /// Name, as the transport shows it.
    pub(crate) name: &'static CStr,
    /// Whether the driver wants [`super::Driver::queue_event`] calls for it.
    pub(crate) callback: bool,
}

/// Tokens of buffers the queue does not own (reported pages, hinted
/// blocks): never a `KBox<Buffer>` address.
static FOREIGN_TOKENS: [u8; 2] = [0; 2];

fn report_token() -> *mut kernel::ffi::c_void {
    core::ptr::addr_of!(FOREIGN_TOKENS[0]).cast_mut().cast()
}

fn hint_token() -> *mut kernel::ffi::c_void {
    core::ptr::addr_of!(FOREIGN_TOKENS[1]).cast_mut().cast()
}

/// A buffer the device has used.
enum Used {
    Buffer(KBox<Buffer>),
    Reported,
    Hinted,
}

impl Used {
    /// # Safety
    ///
    /// `token` is non-null and either a foreign token or from
    /// `KBox::<Buffer>::into_raw`, and not used again.
    unsafe fn from_token(token: *mut kernel::ffi::c_void) -> Self {
        if token == report_token() {
            Used::Reported
        } else if token == hint_token() {
            Used::Hinted
        } else {
            // SAFETY: Guaranteed by the caller.
            Used::Buffer(unsafe { KBox::from_raw(token.cast::<Buffer>()) })
        }
    }
}

/// Which way a buffer's data goes.
enum Direction {
    /// The device reads it ("out" buffer).
    ToDevice,
    /// The device may write it ("in" buffer).
    FromDevice,
}

/// Adds one buffer of a single segment to `vq`.
///
/// # Safety
///
/// `vq` is live and its lock held; `data` is `len` bytes in the kernel's
/// linear map that stay valid (and, for an out buffer, unchanged) until the
/// device has used the buffer or was reset; `token` is one the queue's
/// invariant allows.
unsafe fn add_one(
    vq: NonNull<b::virtqueue>,
    data: *mut u8,
    len: u32,
    token: *mut kernel::ffi::c_void,
    direction: Direction,
) -> Result {
    let mut sg = core::mem::MaybeUninit::<b::scatterlist>::uninit();
    // SAFETY: As the caller guarantees; `sg` is initialised by `sg_init_one`
    // and copied by the add functions, which need it only for the call.
    let ret = unsafe {
        b::sg_init_one(sg.as_mut_ptr(), data.cast(), len);
        match direction {
            Direction::ToDevice => b::virtqueue_add_outbuf(
                vq.as_ptr(),
                sg.as_mut_ptr(),
                1,
                token,
                kernel::bindings::GFP_KERNEL,
            ),
            Direction::FromDevice => b::virtqueue_add_inbuf(
                vq.as_ptr(),
                sg.as_mut_ptr(),
                1,
                token,
                kernel::bindings::GFP_KERNEL,
            ),
        }
    };
    to_result(ret)
}

/// Raw C callback the binding installs on every virtqueue that wants one.
///
/// # Safety
///
/// The virtio core calls it, in interrupt context, with a live virtqueue of
/// the device the binding set it up for; nothing else may call it.
pub(super) type VqCallback = unsafe extern "C" fn(*mut b::virtqueue);

struct BindingState {
    /// False once the device is torn down: nothing may touch it then.
    alive: bool,
    vqs: KVec<NonNull<b::virtqueue>>,
}

/// The driver's handle on a bound device: config space and virtqueues.
///
/// It outlives the binding safely: once the device is removed (or
/// [`Binding::teardown`] ran), every operation fails with `ENODEV` instead of
/// touching a device that is gone. All operations are serialised by one lock,
/// which a waiter keeps while the host processes its buffer.
///
/// # Invariants
///
/// `vdev` is valid for as long as `self` lives (a reference is held on its
/// `struct device`). While `state.alive`, the device is bound and `state.vqs`
/// are its live virtqueues, each holding only tokens made by
/// `KBox::<Buffer>::into_raw` or foreign tokens (for reported pages and
/// hinted blocks, which the queue never owns).
#[pin_data(PinnedDrop)]
pub(crate) struct Binding {
    vdev: NonNull<b::virtio_device>,
    callback: VqCallback,
    #[pin]
    state: Mutex<BindingState>,
    /// Woken whenever the device uses a buffer on any queue.
    #[pin]
    used: WaitQueue,
}

// SAFETY: The raw pointers are only dereferenced under `state`'s lock or for
// thread-safe operations (config ops of a live device, refcounting).
unsafe impl Send for Binding {}
// SAFETY: See above.
unsafe impl Sync for Binding {}
// SAFETY: The virtqueue pointers are only used under `Binding::state`.
unsafe impl Send for BindingState {}

impl Binding {
    pub(super) fn new(dev: &Device, callback: VqCallback) -> Result<Arc<Self>> {
        let vdev = NonNull::new(dev.as_raw()).ok_or(EINVAL)?;
        // SAFETY: `dev` is valid; the reference is dropped in `Drop`.
        unsafe { b::get_device(core::ptr::addr_of_mut!((*vdev.as_ptr()).dev)) };
        Arc::pin_init(
            pin_init!(Self {
                vdev,
                callback,
                state <- new_mutex!(BindingState { alive: true, vqs: KVec::new() }),
                used <- WaitQueue::new(c"virtio_binding_used", static_lock_class!()),
            }),
            GFP_KERNEL,
        )
    }

    /// Whether feature `bit` was negotiated.
    pub(crate) fn has_feature(&self, bit: u32) -> bool {
        features_test(self.vdev.as_ptr(), bit)
    }

    fn dev(&self) -> *mut b::device {
        // SAFETY: `vdev` is valid (type invariant); `dev` is embedded in it.
        unsafe { core::ptr::addr_of_mut!((*self.vdev.as_ptr()).dev) }
    }

    /// Declares that the device may hold the system awake (it handles
    /// wakeup events its transport passes up).
    pub(crate) fn set_wakeup_capable(&self) {
        // SAFETY: The device is valid; the call only sets up sysfs state.
        unsafe { b::device_set_wakeup_capable(self.dev(), true) };
    }

    /// Keeps the system from suspending on its own (autosleep) until
    /// [`Binding::relax`]. Callable from any context.
    pub(crate) fn stay_awake(&self) {
        // SAFETY: The device is valid; `pm_stay_awake` takes its own lock
        // with interrupts disabled.
        unsafe { b::pm_stay_awake(self.dev()) };
    }

    /// Ends [`Binding::stay_awake`].
    pub(crate) fn relax(&self) {
        // SAFETY: As above.
        unsafe { b::pm_relax(self.dev()) };
    }

    /// Locks the device for config and queue operations; `ENODEV` once it
    /// is gone.
    pub(crate) fn lock(&self) -> Result<BoundGuard<'_>> {
        let state = self.state.lock();
        if !state.alive {
            return Err(ENODEV);
        }
        Ok(BoundGuard {
            binding: self,
            state,
        })
    }

    /// Called from the virtqueue interrupt: wakes waiters for used buffers.
    pub(super) fn notify_used(&self) {
        self.used.wake_all();
    }

    /// Resets the device, takes back every buffer still queued and deletes
    /// the virtqueues. Afterwards no callback runs and every operation fails
    /// with `ENODEV`. Idempotent.
    pub(crate) fn teardown(&self) {
        let mut state = self.state.lock();
        if !state.alive {
            return;
        }
        state.alive = false;
        let vdev = self.vdev.as_ptr();
        // SAFETY: The device is alive (checked above, under the lock).
        unsafe { b::virtio_reset_device(vdev) };
        for vq in state.vqs.drain_all() {
            loop {
                // SAFETY: `vq` is live and the device reset, so the device
                // no longer owns any of its buffers.
                let token = unsafe { b::virtqueue_detach_unused_buf(vq.as_ptr()) };
                if token.is_null() {
                    break;
                }
                // SAFETY: Tokens are `KBox<Buffer>`s or foreign tokens (type
                // invariant), each detached once.
                drop(unsafe { Used::from_token(token) });
            }
        }
        // SAFETY: The device is alive; `config` and `del_vqs` are set by every
        // transport. Deleting with no queues found is allowed.
        unsafe {
            if let Some(del_vqs) = (*(*vdev).config).del_vqs {
                del_vqs(vdev);
            }
        }
    }

    /// Makes the device usable again after [`Binding::teardown`] (resume
    /// from suspend). It has no virtqueues until they are found again.
    pub(super) fn revive(&self) {
        self.state.lock().alive = true;
    }
}

#[pinned_drop]
impl PinnedDrop for Binding {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: The reference was taken in `new`.
        unsafe { b::put_device(core::ptr::addr_of_mut!((*self.vdev.as_ptr()).dev)) };
    }
}

/// Exclusive access to a live device; see [`Binding::lock`].
pub(crate) struct BoundGuard<'a> {
    binding: &'a Binding,
    state: kernel::sync::MutexGuard<'a, BindingState>,
}

impl BoundGuard<'_> {
    fn vdev(&self) -> *mut b::virtio_device {
        self.binding.vdev.as_ptr()
    }

    /// Finds the virtqueues, in order: queue `i` of `infos` is `QueueId(i)`.
    ///
    /// Pass only the queues the negotiated features call for: indices are
    /// dense, an absent optional queue takes none.
    pub(crate) fn find_vqs(&mut self, infos: &[QueueInfo]) -> Result {
        if !self.state.vqs.is_empty() {
            return Err(EBUSY);
        }
        let mut raw_infos = KVec::with_capacity(infos.len(), GFP_KERNEL)?;
        for info in infos {
            raw_infos.push(
                b::virtqueue_info {
                    name: info.name.as_char_ptr(),
                    callback: info.callback.then_some(self.binding.callback),
                    ctx: false,
                },
                GFP_KERNEL,
            )?;
        }
        let mut vqs = KVec::<*mut b::virtqueue>::with_capacity(infos.len(), GFP_KERNEL)?;
        vqs.resize(infos.len(), core::ptr::null_mut(), GFP_KERNEL)?;
        let vdev = self.vdev();
        let count = u32::try_from(infos.len())?;
        // SAFETY: The device is alive (guard invariant); both arrays hold
        // `count` entries; `find_vqs` is set by every transport.
        let ret = unsafe {
            let find_vqs = (*(*vdev).config).find_vqs.ok_or(ENODEV)?;
            find_vqs(
                vdev,
                count,
                vqs.as_mut_ptr(),
                raw_infos.as_mut_ptr(),
                core::ptr::null_mut(),
            )
        };
        to_result(ret)?;
        let mut found = KVec::with_capacity(vqs.len(), GFP_KERNEL)?;
        for vq in vqs {
            // On success every requested queue exists.
            found.push(NonNull::new(vq).ok_or(ENODEV)?, GFP_KERNEL)?;
        }
        self.state.vqs = found;
        Ok(())
    }

    fn vq(&self, queue: QueueId) -> Result<NonNull<b::virtqueue>> {
        self.state.vqs.get(queue.0).copied().ok_or(EINVAL)
    }

    /// Queues `buf` for the device to read. The queue owns it until
    /// [`Self::get_buf`] hands it back; on failure it comes back at once.
    pub(crate) fn add_outbuf(
        &mut self,
        queue: QueueId,
        buf: KBox<Buffer>,
    ) -> core::result::Result<(), (Error, KBox<Buffer>)> {
        let vq = match self.vq(queue) {
            Ok(vq) => vq,
            Err(e) => return Err((e, buf)),
        };
        let Ok(len) = u32::try_from(buf.len()) else {
            return Err((EINVAL, buf));
        };
        if len == 0 {
            return Err((EINVAL, buf));
        }
        let data = buf.as_slice().as_ptr();
        let token = KBox::into_raw(buf);
        // SAFETY: `data` points to `len` bytes of kmalloc memory (`Buffer`
        // invariant) that the queue owns from here on through `token`.
        let added = unsafe { add_one(vq, data.cast_mut(), len, token.cast(), Direction::ToDevice) };
        added.map_err(|e| {
            // SAFETY: The queue did not take the buffer; `token` came from
            // `KBox::into_raw` above.
            (e, unsafe { KBox::from_raw(token) })
        })
    }

    /// Tells the device there are new buffers in `queue`.
    pub(crate) fn kick(&mut self, queue: QueueId) -> Result {
        let vq = self.vq(queue)?;
        // SAFETY: `vq` is live (guard invariant).
        if unsafe { b::virtqueue_kick(vq.as_ptr()) } {
            Ok(())
        } else {
            Err(EIO)
        }
    }

    fn get_used(&mut self, queue: QueueId) -> Option<Used> {
        let vq = self.vq(queue).ok()?;
        let mut len = 0u32;
        // SAFETY: `vq` is live (guard invariant); `len` is valid for writes.
        let token = unsafe { b::virtqueue_get_buf(vq.as_ptr(), &mut len) };
        // SAFETY: Tokens are `KBox<Buffer>`s or foreign tokens (type
        // invariant), each handed back once.
        (!token.is_null()).then(|| unsafe { Used::from_token(token) })
    }

    /// Takes back a buffer the device has used, if any.
    pub(crate) fn get_buf(&mut self, queue: QueueId) -> Option<KBox<Buffer>> {
        loop {
            match self.get_used(queue)? {
                Used::Buffer(buf) => return Some(buf),
                Used::Reported | Used::Hinted => continue,
            }
        }
    }

    /// Sleeps until the device has used a buffer of `queue`, and returns it.
    ///
    /// The lock stays held, as C drivers hold theirs across `wait_event()`:
    /// nothing else may use the device until the host has answered.
    pub(crate) fn wait_buf(&mut self, queue: QueueId) -> Result<KBox<Buffer>> {
        self.vq(queue)?;
        let mut used = None;
        let binding = self.binding;
        binding.used.wait_until(|| {
            used = self.get_buf(queue);
            used.is_some()
        });
        used.ok_or(EIO)
    }

    /// Takes back every buffer the device has used on `queue`.
    pub(crate) fn drain_used(&mut self, queue: QueueId) {
        while self.get_used(queue).is_some() {}
    }

    /// Free descriptors in `queue`'s ring.
    pub(crate) fn free_slots(&self, queue: QueueId) -> Result<u32> {
        let vq = self.vq(queue)?;
        // SAFETY: `vq` is live (guard invariant); a racy read of a counter
        // only this lock's holder changes.
        Ok(unsafe { (*vq.as_ptr()).num_free })
    }

    /// Hands a free page block to the device as a hint ("in" buffer). The
    /// queue does not own the block: the caller keeps it until the host
    /// is done with hints (or the device is reset), as the C driver does.
    pub(crate) fn add_hint_block(&mut self, queue: QueueId, block: &Page) -> Result {
        let vq = self.vq(queue)?;
        let len = u32::try_from(block.bytes())?;
        // SAFETY: `block` is a whole, owned block in the linear map, `len`
        // bytes long; the caller keeps it allocated while the host may use
        // it.
        unsafe {
            add_one(
                vq,
                block.address(),
                len,
                hint_token(),
                Direction::FromDevice,
            )
        }
    }

    /// Number of descriptors in `queue`'s ring.
    pub(crate) fn vring_size(&self, queue: QueueId) -> Result<u32> {
        let vq = self.vq(queue)?;
        // SAFETY: `vq` is live (guard invariant).
        Ok(unsafe { b::virtqueue_get_vring_size(vq.as_ptr()) })
    }

    /// Hands reported free pages to the device (which writes to nothing:
    /// "in" buffers it may discard) and waits until it has processed them.
    pub(crate) fn report_pages(&mut self, queue: QueueId, pages: &ReportedPages) -> Result {
        let vq = self.vq(queue)?;
        // SAFETY: `vq` is live; `pages` is valid for the duration of the
        // report (its invariant), and the wait below returns only once the
        // device has given the buffer back. No allocation: indirect
        // descriptors are turned off in `validate`.
        let ret = unsafe {
            b::virtqueue_add_inbuf(
                vq.as_ptr(),
                pages.sgl,
                pages.nents,
                report_token(),
                kernel::bindings::GFP_NOWAIT,
            )
        };
        kernel::error::to_result(ret)?;
        self.kick(queue)?;
        let binding = self.binding;
        binding
            .used
            .wait_until(|| matches!(self.get_used(queue), Some(Used::Reported)));
        Ok(())
    }

    /// Reads a little-endian `u32` from config space at `offset`.
    pub(crate) fn read_config_le32(&self, offset: usize) -> Result<u32> {
        let mut bytes = [0u8; 4];
        let vdev = self.vdev();
        // SAFETY: The device is alive; `bytes` is valid for 4 bytes.
        unsafe {
            let get = (*(*vdev).config).get.ok_or(ENODEV)?;
            get(vdev, u32::try_from(offset)?, bytes.as_mut_ptr().cast(), 4);
        }
        Ok(u32::from_le_bytes(bytes))
    }

    /// Writes a little-endian `u32` to config space at `offset`.
    pub(crate) fn write_config_le32(&self, offset: usize, value: u32) -> Result {
        let bytes = value.to_le_bytes();
        let vdev = self.vdev();
        // SAFETY: The device is alive; `bytes` is valid for 4 bytes.
        unsafe {
            let set = (*(*vdev).config).set.ok_or(ENODEV)?;
            set(vdev, u32::try_from(offset)?, bytes.as_ptr().cast(), 4);
        }
        Ok(())
    }

    /// Sets DRIVER_OK: from now on the device may use the queues.
    pub(super) fn ready(&self) {
        let vdev = self.vdev();
        // SAFETY: The device is alive; `get_status`/`set_status` are set by
        // every transport. Mirrors C's `virtio_device_ready()`.
        unsafe {
            let config = &*(*vdev).config;
            if let (Some(get), Some(set)) = (config.get_status, config.set_status) {
                let status = get(vdev);
                set(vdev, status | b::VIRTIO_CONFIG_S_DRIVER_OK as u8);
            }
        }
    }
}
