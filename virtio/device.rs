// SPDX-License-Identifier: GPL-2.0

//! Virtio devices and the driver's binding to one.

use super::{wait::WaitQueue, Buffer, ConfigLe32, Feature};
use crate::bindings as b;
use crate::mm::balloon::Page;
#[cfg(CONFIG_PAGE_REPORTING)]
use crate::mm::page_reporting::ReportedPages;
use core::{
    marker::PhantomData,
    ops::ControlFlow,
    ptr::{addr_of_mut, NonNull},
};
use kernel::{
    device::{self, Bound, Core, DeviceContext, Normal},
    error::to_result,
    new_mutex,
    prelude::*,
    static_lock_class,
    sync::{
        aref::{ARef, AlwaysRefCounted},
        Arc, Mutex,
    },
    types::Opaque,
};

/// A virtio device (`struct virtio_device`).
///
/// As the kernel crate's bus devices (`pci::Device`), it carries a device
/// context: the bus callbacks hand the driver a `&Device<Core>` (probe,
/// remove, suspend, shutdown: the device lock is held) or a
/// `&Device<Bound>` (interrupt and config callbacks), which deref to the
/// wider contexts down to `Device` (`Normal`), the only one that may be
/// kept, as an `ARef<Device>`. `AsRef<device::Device<Ctx>>` makes
/// `dev_info!(dev, ...)` work.
///
/// # Invariants
///
/// The wrapped `virtio_device` is valid; for `Device<Bound>`, `Device<Core>`
/// and `Device<CoreInternal>` it is bound to the driver (or being bound, in
/// `probe`) for as long as the reference lives, which is the callback it was
/// handed to.
#[repr(transparent)]
pub struct Device<Ctx: DeviceContext = Normal>(Opaque<b::virtio_device>, PhantomData<Ctx>);

impl<Ctx: DeviceContext> Device<Ctx> {
    /// Creates a reference from the bus's pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `virtio_device` for `'a`, in the state
    /// `Ctx` stands for (see the type invariants) for all of `'a`.
    pub(super) unsafe fn from_raw<'a>(ptr: *mut b::virtio_device) -> &'a Self {
        // SAFETY: `Device` is a transparent wrapper of `virtio_device`; the
        // caller guarantees the pointer is valid, in this context, for `'a`.
        // INVARIANT: As the caller guarantees.
        unsafe { &*ptr.cast::<Self>() }
    }

    pub(super) fn as_raw(&self) -> *mut b::virtio_device {
        self.0.get()
    }

    /// The embedded generic device, for C calls that take one.
    fn raw_dev(&self) -> *mut b::device {
        // SAFETY: The device is valid (type invariant); `dev` is embedded in
        // it.
        unsafe { addr_of_mut!((*self.as_raw()).dev) }
    }

    /// The device's ID (type and vendor), as the bus matches it.
    pub(super) fn id(&self) -> b::virtio_device_id {
        // SAFETY: The device is valid (type invariant); the transport sets
        // `id` before it registers the device and never changes it.
        unsafe { (*self.as_raw()).id }
    }

    /// Whether `feature` was negotiated (or, in `validate`, offered).
    pub fn has_feature(&self, feature: Feature) -> bool {
        let (word, mask) = feature.word_and_mask();
        // SAFETY: The device is valid (type invariant); `features_array` is
        // the full view of the feature union.
        let words = unsafe { (*self.as_raw()).__bindgen_anon_1.features_array };
        words.get(word).is_some_and(|w| w & mask != 0)
    }
}

impl<Ctx: DeviceContext> AsRef<device::Device<Ctx>> for Device<Ctx> {
    fn as_ref(&self) -> &device::Device<Ctx> {
        // SAFETY: `dev` is embedded in the valid `virtio_device` (type
        // invariant) and lives as long as it; the context is the same.
        unsafe { device::Device::from_raw(self.raw_dev()) }
    }
}

// SAFETY: `Device` is a transparent wrapper of `virtio_device`, which does
// not depend on the context parameter.
kernel::impl_device_context_deref!(unsafe { Device });
kernel::impl_device_context_into_aref!(Device);

// SAFETY: A `virtio_device` is reference counted through its `struct device`
// (C has no `virtio_dev_get`: drivers call `get_device(&vdev->dev)`).
unsafe impl AlwaysRefCounted for Device {
    fn inc_ref(&self) {
        // SAFETY: A shared reference means the count is not zero.
        unsafe { kernel::bindings::get_device(self.raw_dev()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller owns a reference to give back.
        unsafe {
            kernel::bindings::put_device(addr_of_mut!(
                (*obj.cast::<b::virtio_device>().as_ptr()).dev
            ))
        }
    }
}

// SAFETY: A reference-counted device may be released from any thread.
unsafe impl Send for Device {}
// SAFETY: Every method of `Device` (`Normal`) and `Device<Bound>` is
// thread safe: they read fields fixed at registration or call C functions
// that lock for themselves.
unsafe impl Sync for Device {}
// SAFETY: See above.
unsafe impl Sync for Device<Bound> {}

impl Device<Core<'_>> {
    /// Declares that the device may hold the system awake (it handles
    /// wakeup events its transport passes up).
    pub fn set_wakeup_capable(&self) {
        // SAFETY: The device is valid (type invariant); the call only sets
        // up sysfs state, under the device lock a `Core` context holds.
        unsafe { b::device_set_wakeup_capable(self.raw_dev(), true) };
    }
}

/// A device in [`super::Driver::validate`]: offered features are still open
/// to negotiation, and only here may the driver turn some off.
///
/// # Invariants
///
/// The bus is in its `validate` callback for the device for as long as the
/// reference lives.
#[repr(transparent)]
pub struct Validating<'a>(Device<Core<'a>>);

impl<'a> Validating<'a> {
    /// # Safety
    ///
    /// `ptr` is a valid device offered to the driver, and the bus is in its
    /// `validate` callback for it for `'b`.
    pub(super) unsafe fn from_raw<'b>(ptr: *mut b::virtio_device) -> &'b Self {
        // SAFETY: `Validating` is a transparent wrapper of `Device`;
        // validity as the caller guarantees.
        // INVARIANT: As the caller guarantees.
        unsafe { &*ptr.cast::<Self>() }
    }

    /// Turns `feature` off before negotiation completes.
    pub fn clear_feature(&self, feature: Feature) {
        let (word, mask) = feature.word_and_mask();
        // SAFETY: The device is valid (type invariant of `Device`); in
        // `validate` (the invariant of `Validating`) the core has not read
        // the features back yet, and the bus serialises its callbacks.
        unsafe {
            if let Some(w) = (*self.0.as_raw())
                .__bindgen_anon_1
                .features_array
                .get_mut(word)
            {
                *w &= !mask;
            }
        }
    }
}

impl<'a> core::ops::Deref for Validating<'a> {
    type Target = Device<Core<'a>>;

    fn deref(&self) -> &Device<Core<'a>> {
        &self.0
    }
}

/// The transport a virtio device is on: what its parent device is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport {
    /// virtio-pci (modern or transitional): the parent is a PCI device.
    Pci,
    /// virtio-mmio: the parent is a platform device.
    Mmio,
    /// Anything else (virtio-ccw, a remoteproc, ...).
    Other,
}

// Only while bound: unregistering the device drops its reference on its
// parent (`device_del()`), which may then be freed (a PCI hot-unplug) with
// `parent` still pointing at it.
impl Device<Bound> {
    /// The transport the device is on.
    pub fn transport(&self) -> Transport {
        // SAFETY: The device is valid (type invariant); its transport sets
        // `parent` before registering it and never changes it.
        let parent = unsafe { (*self.as_raw()).dev.parent };
        if parent.is_null() {
            return Transport::Other;
        }
        // SAFETY: The device is bound (the `Bound` context), so registered,
        // and a registered device holds a reference on its parent: `parent`
        // is a valid device; these only compare its bus pointer.
        #[cfg(CONFIG_PCI)]
        if unsafe { kernel::bindings::dev_is_pci(parent) } {
            return Transport::Pci;
        }
        // SAFETY: As above.
        if unsafe { kernel::bindings::dev_is_platform(parent) } {
            return Transport::Mmio;
        }
        Transport::Other
    }
}

/// Identifies one of a device's virtqueues: its position in the list given to
/// [`Binding::find_vqs`], which is also its (dense) queue index.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QueueId(pub usize);

/// A virtqueue the driver asks for.
pub struct QueueInfo {
    /// Name, as the transport shows it.
    pub name: &'static CStr,
    /// Whether the driver wants [`super::Driver::queue_event`] calls for it.
    pub callback: bool,
    /// The order of the page blocks the driver hands the device on this
    /// queue ([`BoundGuard::add_inbuf_pages`]), if it does.
    pub page_order: Option<u32>,
}

/// A live virtqueue and what the binding knows of the buffers it takes.
#[derive(Clone, Copy)]
struct Queue {
    vq: NonNull<b::virtqueue>,
    /// See [`QueueInfo::page_order`].
    page_order: Option<u32>,
}

/// Token of reported pages, which the queue never owns (they stay the page
/// allocator's). Never the address of a `KBox<Buffer>` or a `struct page`.
static REPORT_TOKEN: u64 = 0;

fn report_token() -> *mut kernel::ffi::c_void {
    core::ptr::addr_of!(REPORT_TOKEN).cast_mut().cast()
}

/// Tag bit of a token that is a page block's `struct page`: `KBox<Buffer>`
/// addresses and `struct page`s are both at least 8-byte aligned, so bit 0
/// of either is free.
const PAGES_TAG: usize = 1;

/// A buffer the device has handed back: the queue's ownership ends here.
pub enum Used {
    /// A buffer the driver filled ([`BoundGuard::add_outbuf`]).
    Buffer(KBox<Buffer>),
    /// A block of pages the device may have written
    /// ([`BoundGuard::add_inbuf_pages`]).
    Pages(Page),
}

/// What a token stood for.
enum Token {
    Used(Used),
    Reported,
}

impl Token {
    /// # Safety
    ///
    /// `token` is non-null and one the invariant of `queue` allows (see
    /// [`Binding`]), handed back by it, and not used again.
    unsafe fn take(token: *mut kernel::ffi::c_void, queue: Queue) -> Self {
        if token == report_token() {
            Token::Reported
        } else if token as usize & PAGES_TAG != 0 {
            let page = (token as usize & !PAGES_TAG) as *mut b::page;
            // A tagged token comes only from a queue with a page order.
            let order = queue.page_order.unwrap_or(0);
            // SAFETY: A tagged token is a block of the queue's page order
            // that `add_inbuf_pages` handed to the queue (caller's
            // guarantee); ownership comes back with it.
            Token::Used(Used::Pages(unsafe { Page::from_raw(page, order) }))
        } else {
            // SAFETY: Any other token is from `KBox::<Buffer>::into_raw`
            // (caller's guarantee).
            Token::Used(Used::Buffer(unsafe {
                KBox::from_raw(token.cast::<Buffer>())
            }))
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

/// Adds one buffer of a single segment to `vq`. Never sleeps and never
/// allocates with reclaim (`GFP_NOWAIT`; a single segment never takes an
/// indirect descriptor anyway), so it may run under locks that memory
/// reclaim or the OOM notifier take.
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
        let add = match direction {
            Direction::ToDevice => b::virtqueue_add_outbuf,
            Direction::FromDevice => b::virtqueue_add_inbuf,
        };
        add(
            vq.as_ptr(),
            sg.as_mut_ptr(),
            1,
            token,
            kernel::bindings::GFP_NOWAIT,
        )
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
    /// Set once `BoundGuard::stop_device` broke and reset the device: it
    /// stays so until torn down and revived, and is reset once.
    stopped: bool,
    vqs: KVec<Queue>,
}

/// The driver's handle on a bound device's config space and virtqueues,
/// which work items, notifiers and reclaim callbacks may keep.
///
/// A `&Device<Bound>` proves the device bound only for one callback; this
/// is what the driver keeps beyond it, revocable the way the kernel crate's
/// `Devres` is: once the device is removed (or [`Binding::teardown`] ran),
/// every operation fails with `ENODEV` instead of touching a device that is
/// gone. The bus adapter makes it before `probe` (from the `Device<Core>`)
/// and revokes it after the driver's `unbind`. All operations are serialised by one
/// lock, which a waiter keeps while the host processes its buffer. Setting
/// the queues up and tearing them down take a second lock first (`setup`),
/// so that finding the queues, which allocates memory, never holds the
/// first: code that reclaim or the OOM killer calls may take it.
///
/// # Invariants
///
/// While `state.alive`, `device` is bound and `state.vqs` are its live
/// virtqueues, each holding only tokens made by
/// `KBox::<Buffer>::into_raw`, page blocks of the queue's `page_order`
/// (`struct page` pointers tagged with `PAGES_TAG`, owned by the queue;
/// only on a queue with a page order) or `report_token()` (reported pages,
/// which the queue never owns).
#[pin_data]
pub struct Binding {
    /// The device, kept alive by this reference (but not bound: see
    /// `state.alive`).
    device: ARef<Device>,
    callback: VqCallback,
    /// Held while the queues are found or torn down (before `state`).
    #[pin]
    setup: Mutex<()>,
    #[pin]
    state: Mutex<BindingState>,
    /// Woken whenever the device uses a buffer on any queue.
    #[pin]
    used: WaitQueue,
}

// SAFETY: `callback` is a plain function; `device` is `Send + Sync`; the
// virtqueue pointers in `state` are only used under its lock.
unsafe impl Send for Binding {}
// SAFETY: See above.
unsafe impl Sync for Binding {}
// SAFETY: The virtqueue pointers are only used under `Binding::state`.
unsafe impl Send for BindingState {}

impl Binding {
    pub(super) fn new(dev: &Device<Core<'_>>, callback: VqCallback) -> Result<Arc<Self>> {
        // INVARIANT: The device is being bound (probe) and has no queues
        // yet.
        Arc::pin_init(
            pin_init!(Self {
                device: dev.into(),
                callback,
                setup <- new_mutex!(()),
                state <- new_mutex!(BindingState {
                    alive: true,
                    stopped: false,
                    vqs: KVec::new(),
                }),
                used <- WaitQueue::new(c"virtio_binding_used", static_lock_class!()),
            }),
            GFP_KERNEL,
        )
    }

    /// The device (not necessarily still bound), for `dev_*!` messages.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether `feature` was negotiated.
    pub fn has_feature(&self, feature: Feature) -> bool {
        self.device.has_feature(feature)
    }

    fn vdev(&self) -> *mut b::virtio_device {
        self.device.as_raw()
    }

    fn dev(&self) -> *mut b::device {
        self.device.raw_dev()
    }

    /// Keeps the system from suspending on its own (autosleep) until
    /// [`Binding::relax`]. Not counted: one relax ends any number of calls.
    /// Callable from any context.
    pub fn stay_awake(&self) {
        // SAFETY: The device is valid; `pm_stay_awake` takes its own lock
        // with interrupts disabled.
        unsafe { b::pm_stay_awake(self.dev()) };
    }

    /// Ends [`Binding::stay_awake`].
    pub fn relax(&self) {
        // SAFETY: As above.
        unsafe { b::pm_relax(self.dev()) };
    }

    /// Locks the device for config and queue operations; `ENODEV` once it
    /// is gone.
    pub fn lock(&self) -> Result<BoundGuard<'_>> {
        let state = self.state.lock();
        if !state.alive {
            return Err(ENODEV);
        }
        Ok(BoundGuard {
            binding: self,
            state,
        })
    }

    /// Finds the virtqueues, in order: queue `i` of `infos` is `QueueId(i)`.
    ///
    /// Pass only the queues the negotiated features call for: indices are
    /// dense, an absent optional queue takes none. The transport allocates
    /// memory here, so the operations lock is not held meanwhile: code that
    /// runs in reclaim (the OOM notifier, balloon page migration) can use
    /// the device, and finds no queues (`EINVAL`) until this returns.
    pub fn find_vqs(&self, infos: &[QueueInfo]) -> Result {
        let mut raw_infos = KVec::with_capacity(infos.len(), GFP_KERNEL)?;
        for info in infos {
            raw_infos.push(
                b::virtqueue_info {
                    name: info.name.as_char_ptr(),
                    callback: info.callback.then_some(self.callback),
                    ctx: false,
                },
                GFP_KERNEL,
            )?;
        }
        let mut vqs = KVec::<*mut b::virtqueue>::with_capacity(infos.len(), GFP_KERNEL)?;
        vqs.resize(infos.len(), core::ptr::null_mut(), GFP_KERNEL)?;
        let mut found = KVec::with_capacity(infos.len(), GFP_KERNEL)?;
        let count = u32::try_from(infos.len())?;
        let _setup = self.setup.lock();
        {
            let state = self.state.lock();
            if !state.alive {
                return Err(ENODEV);
            }
            if !state.vqs.is_empty() {
                return Err(EBUSY);
            }
        }
        let vdev = self.vdev();
        // SAFETY: The device is alive and has no queues, and `setup` keeps
        // it so (only `teardown` ends it, under `setup`). Both arrays hold
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
        for (vq, info) in vqs.into_iter().zip(infos) {
            // On success every requested queue exists; `found` has room.
            let vq = NonNull::new(vq).ok_or(ENODEV)?;
            let queue = Queue {
                vq,
                page_order: info.page_order,
            };
            if found.push_within_capacity(queue).is_err() {
                return Err(ENOMEM);
            }
        }
        // INVARIANT: The queues are new and hold no buffers.
        self.state.lock().vqs = found;
        Ok(())
    }

    /// Like [`Binding::lock`], but `None` instead of waiting if the lock is
    /// taken: for reclaim (a shrinker), which must not wait.
    pub fn try_lock(&self) -> Option<Result<BoundGuard<'_>>> {
        let state = self.state.try_lock()?;
        if !state.alive {
            return Some(Err(ENODEV));
        }
        Some(Ok(BoundGuard {
            binding: self,
            state,
        }))
    }

    /// Called from the virtqueue interrupt: wakes waiters for used buffers.
    pub(super) fn notify_used(&self) {
        self.used.wake_all();
    }

    /// Resets the device, takes back every buffer still queued and deletes
    /// the virtqueues. Afterwards no callback runs and every operation fails
    /// with `ENODEV`. Idempotent.
    ///
    /// The operations lock is held only to end the device's life: the
    /// reset and the queues' teardown (which frees interrupts) run under
    /// the setup lock alone, so code that reclaim or memory offlining runs
    /// (balloon page migration) never waits behind them.
    pub fn teardown(&self) {
        let _setup = self.setup.lock();
        let vdev = self.vdev();
        let Some(vqs) = self.end() else {
            // Ended already (a failed restore, say), after which the core
            // may have set a status again (FAILED): the bus wants a device
            // reset when the driver lets go of it.
            // SAFETY: `config` and `get_status` are set by every transport;
            // resetting a device whose queues are gone is allowed.
            unsafe {
                if (*(*vdev).config)
                    .get_status
                    .is_some_and(|get| get(vdev) != 0)
                {
                    b::virtio_reset_device(vdev);
                }
            }
            return;
        };
        // SAFETY: The device was alive until `end` above; `setup` keeps
        // anyone else from finding queues or tearing down meanwhile.
        unsafe { b::virtio_reset_device(vdev) };
        Self::detach_all(vqs);
        // SAFETY: As above; `config` and `del_vqs` are set by every
        // transport. Deleting with no queues found is allowed.
        unsafe {
            if let Some(del_vqs) = (*(*vdev).config).del_vqs {
                del_vqs(vdev);
            }
        }
    }

    /// System shutdown, reboot or kexec: stops the device the way the
    /// virtio core does for drivers without a `shutdown` method (breaks the
    /// queues so nothing kicks a reset device, waits for callbacks running,
    /// resets), and frees the buffers still queued. The queues stay (as in
    /// C). Afterwards every operation fails with `ENODEV`. Idempotent.
    pub(super) fn shutdown(&self) {
        let _setup = self.setup.lock();
        let Some(vqs) = self.end() else {
            return;
        };
        // SAFETY: The device was alive and bound until `end` above; this is
        // what the core would call without our callback.
        unsafe { b::virtio_device_shutdown(self.vdev()) };
        Self::detach_all(vqs);
    }

    /// Marks the device gone, under the operations lock (so no operation is
    /// under way), and hands over its queues; `None` if it was gone
    /// already. Callers hold `setup`.
    fn end(&self) -> Option<KVec<Queue>> {
        let mut state = self.state.lock();
        if !state.alive {
            return None;
        }
        state.alive = false;
        Some(core::mem::take(&mut state.vqs))
    }

    /// Takes every buffer back from queues of a device that was reset.
    fn detach_all(mut vqs: KVec<Queue>) {
        for queue in vqs.drain_all() {
            loop {
                // SAFETY: The queue is live and the device reset, so the
                // device no longer owns any of its buffers; no one else
                // uses the queue any more (the binding is not alive).
                let token = unsafe { b::virtqueue_detach_unused_buf(queue.vq.as_ptr()) };
                if token.is_null() {
                    break;
                }
                // SAFETY: Tokens are of the kinds the type invariant allows
                // for this queue, each detached once.
                drop(unsafe { Token::take(token, queue) });
            }
        }
    }

    /// Makes the device usable again after [`Binding::teardown`] (resume
    /// from suspend). It has no virtqueues until they are found again.
    pub(super) fn revive(&self) {
        let _setup = self.setup.lock();
        let mut state = self.state.lock();
        state.alive = true;
        state.stopped = false;
    }
}

/// Exclusive access to a live device; see [`Binding::lock`].
pub struct BoundGuard<'a> {
    binding: &'a Binding,
    state: kernel::sync::MutexGuard<'a, BindingState>,
}

impl BoundGuard<'_> {
    fn vdev(&self) -> *mut b::virtio_device {
        self.binding.vdev()
    }

    fn queue(&self, queue: QueueId) -> Result<Queue> {
        self.state.vqs.get(queue.0).copied().ok_or(EINVAL)
    }

    fn vq(&self, queue: QueueId) -> Result<NonNull<b::virtqueue>> {
        Ok(self.queue(queue)?.vq)
    }

    /// `queue`, to hand the device a buffer or a notification: `EIO` once
    /// the device is stopped (`stop_device`), even if the core has unbroken
    /// its queues since (`virtio_device_ready()` does, with
    /// `CONFIG_VIRTIO_HARDEN_NOTIFICATION`).
    fn live_queue(&self, queue: QueueId) -> Result<Queue> {
        if self.state.stopped {
            return Err(EIO);
        }
        self.queue(queue)
    }

    /// Queues `buf` for the device to read. The queue owns it until
    /// [`Self::get_buf`] hands it back; on failure it comes back at once.
    pub fn add_outbuf(
        &mut self,
        queue: QueueId,
        buf: KBox<Buffer>,
    ) -> core::result::Result<(), (Error, KBox<Buffer>)> {
        let vq = match self.live_queue(queue) {
            Ok(queue) => queue.vq,
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

    /// Hands a block of pages to the device as an "in" buffer: the device
    /// may write to it, and the driver gets it back whole. The queue owns
    /// the block until [`Self::take_used`] hands it back, or frees it when
    /// the device is torn down; on failure it comes back at once. The
    /// block's order must be the queue's [`QueueInfo::page_order`].
    pub fn add_inbuf_pages(
        &mut self,
        queue: QueueId,
        block: Page,
    ) -> core::result::Result<(), (Error, Page)> {
        let Queue { vq, page_order } = match self.live_queue(queue) {
            Ok(queue) => queue,
            Err(e) => return Err((e, block)),
        };
        if page_order != Some(block.order()) {
            return Err((EINVAL, block));
        }
        let Ok(len) = u32::try_from(block.bytes()) else {
            return Err((EINVAL, block));
        };
        let order = block.order();
        let data = block.address();
        let page = block.into_raw();
        let token = (page.as_ptr() as usize | PAGES_TAG) as *mut kernel::ffi::c_void;
        // SAFETY: `data` is the block's `len` bytes in the linear map; the
        // queue owns the block from here on through `token`, which is
        // tagged (a `struct page` is at least 8-byte aligned), on a queue
        // of the block's order.
        let added = unsafe { add_one(vq, data, len, token, Direction::FromDevice) };
        added.map_err(|e| {
            // SAFETY: The queue did not take the block; `page` came from
            // `into_raw` above, with this order.
            (e, unsafe { Page::from_raw(page.as_ptr(), order) })
        })
    }

    /// Tells the device there are new buffers in `queue`.
    pub fn kick(&mut self, queue: QueueId) -> Result {
        let vq = self.live_queue(queue)?.vq;
        // SAFETY: `vq` is live (guard invariant).
        if unsafe { b::virtqueue_kick(vq.as_ptr()) } {
            Ok(())
        } else {
            // The buffers queued stay the device's, which may still use
            // them though the notify failed (see `stop_device`).
            self.stop_device();
            Err(EIO)
        }
    }

    fn get_token(&mut self, queue: QueueId) -> Option<Token> {
        let queue = self.queue(queue).ok()?;
        let mut len = 0u32;
        // SAFETY: The queue is live (guard invariant); `len` is valid for
        // writes.
        let token = unsafe { b::virtqueue_get_buf(queue.vq.as_ptr(), &mut len) };
        // SAFETY: Tokens are of the kinds the type invariant allows for this
        // queue, each handed back once.
        (!token.is_null()).then(|| unsafe { Token::take(token, queue) })
    }

    /// Takes back a buffer or block the device has used, if any.
    pub fn take_used(&mut self, queue: QueueId) -> Option<Used> {
        loop {
            match self.get_token(queue)? {
                Token::Used(used) => return Some(used),
                Token::Reported => continue,
            }
        }
    }

    /// Takes back a buffer the device has used, if any; hint blocks used on
    /// the same queue are freed.
    pub fn get_buf(&mut self, queue: QueueId) -> Option<KBox<Buffer>> {
        loop {
            match self.take_used(queue)? {
                Used::Buffer(buf) => return Some(buf),
                Used::Pages(_) => continue,
            }
        }
    }

    /// Whether `queue` will use no more buffers: the device marked it
    /// broken, or was stopped.
    fn broken(&self, queue: QueueId) -> bool {
        if self.state.stopped {
            return true;
        }
        // SAFETY: `vq` is live (guard invariant).
        self.vq(queue)
            .map_or(true, |vq| unsafe { b::virtqueue_is_broken(vq.as_ptr()) })
    }

    /// Sleeps until the device has used a buffer of `queue`, and returns it;
    /// `EIO` if the queue breaks meanwhile, after resetting the device
    /// (`stop_device`).
    ///
    /// The lock stays held, as C drivers hold theirs across `wait_event()`:
    /// nothing else may use the device until the host has answered.
    pub fn wait_buf(&mut self, queue: QueueId) -> Result<KBox<Buffer>> {
        self.vq(queue)?;
        let binding = self.binding;
        let got = binding.used.wait_for(|| match self.get_buf(queue) {
            Some(buf) => ControlFlow::Break(Ok(buf)),
            None if self.broken(queue) => ControlFlow::Break(Err(EIO)),
            None => ControlFlow::Continue(()),
        });
        if got.is_err() {
            // The answer will never come, but the device may still act on
            // what it was sent (see `stop_device`): a balloon whose host
            // could still discard an unanswered inflate's pages, or keep
            // an old page of a migration, must not give them to the guest.
            self.stop_device();
        }
        got
    }

    /// Stops a device whose queue broke under a waiter: a failed kick or
    /// a bad ring is the driver's view only, and the device may still use
    /// the buffers queued. Breaking it makes every later queue operation
    /// fail with `EIO` (config space still reads); the reset ends its use
    /// of guest memory and its claim on any page (the balloon's pages are
    /// the guest's after a reset). It stays so until it is torn down, and
    /// a second call does nothing. The reset runs under the operations
    /// lock (unlike `teardown`): rare, and a waiter behind it then fails
    /// with `EIO` as it should.
    fn stop_device(&mut self) {
        if self.state.stopped {
            return;
        }
        self.state.stopped = true;
        let vdev = self.vdev();
        // SAFETY: The device is alive (guard invariant); breaking and
        // resetting it is what the core does to a device it gives up on,
        // and every later operation sees broken queues.
        unsafe {
            b::virtio_break_device(vdev);
            b::virtio_reset_device(vdev);
        }
    }

    /// Free descriptors in `queue`'s ring; `EIO` if the queue is broken
    /// (a broken queue hands nothing back, so a caller waiting for room
    /// would wait for ever).
    pub fn free_slots(&self, queue: QueueId) -> Result<u32> {
        let vq = self.vq(queue)?;
        if self.broken(queue) {
            return Err(EIO);
        }
        // SAFETY: `vq` is live (guard invariant); a racy read of a counter
        // only this lock's holder changes.
        Ok(unsafe { (*vq.as_ptr()).num_free })
    }

    /// Number of descriptors in `queue`'s ring.
    pub fn vring_size(&self, queue: QueueId) -> Result<u32> {
        let vq = self.vq(queue)?;
        // SAFETY: `vq` is live (guard invariant).
        Ok(unsafe { b::virtqueue_get_vring_size(vq.as_ptr()) })
    }

    #[cfg(CONFIG_PAGE_REPORTING)]
    /// Hands reported free pages to the device ("in" buffers whose memory
    /// it may discard) and waits until it has processed them; `EIO` if the
    /// queue breaks meanwhile, after resetting the device.
    pub fn report_pages(&mut self, queue: QueueId, pages: &ReportedPages) -> Result {
        let vq = self.live_queue(queue)?.vq;
        let (sgl, nents) = pages.as_raw();
        // SAFETY: `vq` is live; `pages` is valid for the duration of the
        // report (its invariant), and this returns only once the device has
        // given the buffer back, or has been reset (below), after which it
        // touches nothing. GFP_NOWAIT: an indirect descriptor table, if
        // the ring uses one, is allocated without reclaim (page reporting
        // runs under memory pressure).
        let ret = unsafe {
            b::virtqueue_add_inbuf(
                vq.as_ptr(),
                sgl,
                nents,
                report_token(),
                kernel::bindings::GFP_NOWAIT,
            )
        };
        kernel::error::to_result(ret)?;
        let binding = self.binding;
        let reported = self.kick(queue).and_then(|()| {
            binding.used.wait_for(|| match self.get_token(queue) {
                Some(Token::Reported) => ControlFlow::Break(Ok(())),
                // Nothing else is queued on a reporting queue.
                Some(Token::Used(_)) => ControlFlow::Continue(()),
                None if self.broken(queue) => ControlFlow::Break(Err(EIO)),
                None => ControlFlow::Continue(()),
            })
        });
        if reported.is_err() {
            // Page reporting frees these pages as soon as this returns.
            self.stop_device();
        }
        reported
    }

    /// Reads 32-bit config field `field`; `EINVAL` if it is a field of
    /// another device type's config, or of a feature not negotiated.
    pub fn read_config_le32(&self, field: ConfigLe32) -> Result<u32> {
        let mut bytes = [0u8; 4];
        let vdev = self.config_of(field)?;
        // SAFETY: The device is alive; `field` is a 4-byte field of its
        // type's config struct (invariant of `ConfigLe32`, type checked by
        // `config_of`); `bytes` is valid for 4 bytes.
        unsafe {
            let get = (*(*vdev).config).get.ok_or(ENODEV)?;
            get(vdev, field.offset(), bytes.as_mut_ptr().cast(), 4);
        }
        Ok(u32::from_le_bytes(bytes))
    }

    /// Writes 32-bit config field `field`; `EINVAL` if it is a field of
    /// another device type's config, or of a feature not negotiated.
    pub fn write_config_le32(&self, field: ConfigLe32, value: u32) -> Result {
        let bytes = value.to_le_bytes();
        let vdev = self.config_of(field)?;
        // SAFETY: The device is alive; `field` is a 4-byte field of its
        // type's config struct (invariant of `ConfigLe32`, type checked by
        // `config_of`); `bytes` is valid for 4 bytes.
        unsafe {
            let set = (*(*vdev).config).set.ok_or(ENODEV)?;
            set(vdev, field.offset(), bytes.as_ptr().cast(), 4);
        }
        Ok(())
    }

    /// The device, if `field` is a field of its type's config space and
    /// exists (its feature, if it needs one, was negotiated).
    fn config_of(&self, field: ConfigLe32) -> Result<*mut b::virtio_device> {
        let negotiated = |feature| self.binding.has_feature(feature);
        if field.feature().is_some_and(|f| !negotiated(f)) {
            return Err(EINVAL);
        }
        let vdev = self.vdev();
        // SAFETY: The device is alive; its ID is set before it is
        // registered and never changes.
        let device = unsafe { (*vdev).id.device };
        if device == field.device() {
            Ok(vdev)
        } else {
            Err(EINVAL)
        }
    }

    /// Sets DRIVER_OK: from now on the device may use the queues (and,
    /// with `CONFIG_VIRTIO_HARDEN_NOTIFICATION`, its interrupts reach them).
    ///
    /// Not on a device stopped during probe or restore (`stop_device`
    /// reset it): the core still sets DRIVER_OK after the driver's probe,
    /// but the queue operations stay refused (`live_queue`).
    pub(super) fn ready(&self) {
        if self.state.stopped {
            return;
        }
        // SAFETY: The device is alive and bound (a guard exists), its queues
        // are set up, and the bus calls it once per probe or restore, as C
        // drivers call `virtio_device_ready()`.
        unsafe { b::virtio_device_ready(self.vdev()) };
    }
}
