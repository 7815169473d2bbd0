// SPDX-License-Identifier: GPL-2.0

//! Virtio driver registration and the bus callbacks.

use super::{
    bindings as b,
    device::{Binding, Validating},
    Device, Feature, IdTable, QueueId,
};
use core::marker::PhantomData;
use kernel::{
    debugfs::Dir,
    error::{from_result, to_result},
    prelude::*,
    sync::{Arc, SetOnce},
    types::Opaque,
    ThisModule,
};

/// A virtio driver.
///
/// `#[vtable]`: the bus gets a callback only for the optional methods the
/// driver implements (`validate`, `config_changed`, `shutdown`, `freeze`,
/// `restore`). The bus calls these from its own threads; the driver's state is an
/// `Arc<Self>` created by [`Driver::probe`] and kept until after
/// [`Driver::remove`].
#[vtable]
pub(crate) trait Driver: Send + Sync + Sized + 'static {
    /// Driver name, as sysfs shows it.
    const NAME: &'static CStr;
    /// Per-ID data of [`Driver::ID_TABLE`].
    type IdInfo: 'static;
    /// The devices this driver binds to: see [`super::virtio_device_table!`],
    /// which also exports the table for module aliases.
    const ID_TABLE: IdTable<Self::IdInfo>;
    /// Features the driver understands.
    const FEATURES: &'static [Feature];

    /// Checks and trims the offered features before negotiation ends.
    fn validate(_dev: &Validating) -> Result {
        Ok(())
    }

    /// Sets the device up: find its virtqueues through `binding` and return
    /// the driver's state. The device is made ready (DRIVER_OK) afterwards.
    /// `debugfs` is the driver's directory (`/sys/kernel/debug/<NAME>`),
    /// for per-device entries; it outlives every bound device.
    fn probe(dev: &Device, binding: Arc<Binding>, debugfs: &Dir) -> Result<Arc<Self>>;

    /// The device is ready: the driver may now use the virtqueues.
    fn ready(_this: &Arc<Self>) {}

    /// The device's configuration changed. Atomic context: defer work.
    fn config_changed(_this: &Arc<Self>) {}

    /// The device used buffers on `queue`. Hard-IRQ context: defer work.
    /// Waiters in [`super::BoundGuard::wait_buf`] are woken already.
    fn queue_event(_this: &Arc<Self>, _queue: QueueId) {}

    /// The device is going away. Stop all work and give everything back;
    /// the device still works here. The binding is torn down afterwards.
    fn remove(this: &Arc<Self>, dev: &Device);

    /// The system is shutting down, rebooting or starting another kernel
    /// (kexec). Stop all work and unregister every hook, so that nothing
    /// waits for the device once it is stopped; the device still works
    /// here. The layer then stops it as the virtio core does (break, reset)
    /// and every operation on the binding fails with `ENODEV`. Nothing
    /// needs to be given back: the memory is the next kernel's.
    fn shutdown(_this: &Arc<Self>, _dev: &Device) {}

    /// The system is suspending (freezable work is frozen already). Give
    /// back what the device holds; the binding is torn down afterwards.
    fn freeze(_this: &Arc<Self>, _dev: &Device) -> Result {
        Ok(())
    }

    /// The system resumed: the binding is usable again, with no virtqueues.
    /// Find them again; the device is made ready afterwards, and
    /// [`Driver::ready`] called.
    fn restore(_this: &Arc<Self>, _dev: &Device) -> Result {
        Ok(())
    }
}

/// What `virtio_device::priv` points to while a device is bound.
struct Context<T: Driver> {
    binding: Arc<Binding>,
    data: SetOnce<Arc<T>>,
}

/// A registered virtio driver; unregistered on drop.
///
/// # Invariants
///
/// `drv` is registered with the virtio bus from construction until drop. `drv` is the first field
/// (`repr(C)`), so a pointer to it is a pointer to the registration.
#[pin_data(PinnedDrop)]
#[repr(C)]
pub(crate) struct Registration<T: Driver> {
    #[pin]
    drv: Opaque<b::virtio_driver>,
    /// The driver's debugfs directory, handed to every probe. Created
    /// before `drv` is registered (fields initialise in order of the
    /// initialiser below) and removed after it is unregistered.
    debugfs: Dir,
    _driver: PhantomData<T>,
}

// SAFETY: After registration the C side only reads `drv` and the static ID
// table.
unsafe impl<T: Driver> Send for Registration<T> {}
// SAFETY: See above.
unsafe impl<T: Driver> Sync for Registration<T> {}

impl<T: Driver> Registration<T> {
    /// Registers `T` with the virtio bus.
    pub(crate) fn new(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        // INVARIANT: `drv` is the first field (`repr(C)`); it is registered
        // last and unregistered in `drop`.
        try_pin_init!(Self {
            debugfs: Dir::new(T::NAME),
            drv <- Opaque::try_ffi_init(|drv: *mut b::virtio_driver| {
                // SAFETY: `drv` is valid for writes; all-zero is a valid
                // `virtio_driver` (null pointers, no callbacks). Everything
                // it points to is static or pinned next to it, and it stays
                // registered until `drop`.
                unsafe {
                    drv.write(core::mem::zeroed());
                    (*drv).driver.name = T::NAME.as_char_ptr();
                    (*drv).driver.owner = module.as_ptr().cast();
                    (*drv).id_table = T::ID_TABLE.as_ptr();
                    // `Feature` is a transparent `u32`.
                    (*drv).feature_table = T::FEATURES.as_ptr().cast();
                    (*drv).feature_table_size = u32::try_from(T::FEATURES.len())?;
                    (*drv).validate = T::HAS_VALIDATE.then_some(validate_callback::<T>);
                    (*drv).probe = Some(probe_callback::<T>);
                    (*drv).remove = Some(remove_callback::<T>);
                    (*drv).shutdown = T::HAS_SHUTDOWN.then_some(shutdown_callback::<T>);
                    (*drv).config_changed = T::HAS_CONFIG_CHANGED.then_some(config_changed_callback::<T>);
                    (*drv).freeze = T::HAS_FREEZE.then_some(freeze_callback::<T>);
                    (*drv).restore = T::HAS_RESTORE.then_some(restore_callback::<T>);
                    to_result(b::__register_virtio_driver(drv, module.as_ptr().cast()))
                }
            }),
            _driver: PhantomData,
        })
    }
}

#[pinned_drop]
impl<T: Driver> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `drv` is registered (type invariant).
        unsafe { b::unregister_virtio_driver(self.drv.get()) };
    }
}

/// The registration of the driver `vdev` is being bound to.
///
/// # Safety
///
/// `vdev` is a valid device being bound to (or bound to) a driver
/// registered as `T`.
unsafe fn registration<'a, T: Driver>(vdev: *mut b::virtio_device) -> &'a Registration<T> {
    // SAFETY: The bus sets `dev.driver` to the `driver` member of the
    // `virtio_driver` it binds through: `drv` of a `Registration<T>`, whose
    // first field it is (type invariant), and which stays registered, hence
    // alive, until every device it bound is unbound.
    unsafe {
        let drv = kernel::container_of!((*vdev).dev.driver, b::virtio_driver, driver);
        &*drv.cast::<Registration<T>>()
    }
}

/// # Safety
///
/// `vdev` is a device being bound to a driver registered as `T`.
unsafe fn context<'a, T: Driver>(vdev: *mut b::virtio_device) -> Option<&'a Context<T>> {
    // SAFETY: `priv` is either null or a `Context<T>` set by `probe_callback`
    // that stays valid until `remove_callback` has torn the device down.
    unsafe { (*vdev).priv_.cast::<Context<T>>().as_ref() }
}

/// The bus's `validate` callback.
///
/// # Safety
///
/// `vdev` is a valid device offered to a driver registered as `T`.
unsafe extern "C" fn validate_callback<T: Driver>(
    vdev: *mut b::virtio_device,
) -> kernel::ffi::c_int {
    // SAFETY: The bus passes a valid device for the duration of the call,
    // in which it is offered to the driver.
    let dev = unsafe { Validating::from_device(Device::from_raw(vdev)) };
    from_result(|| T::validate(dev).map(|()| 0))
}

/// The bus's `probe` callback.
///
/// # Safety
///
/// `vdev` is a valid device being bound to a driver registered as `T`.
unsafe extern "C" fn probe_callback<T: Driver>(vdev: *mut b::virtio_device) -> kernel::ffi::c_int {
    // SAFETY: The bus passes a valid device, bound until `remove`.
    let dev = unsafe { Device::from_raw(vdev) };
    from_result(|| {
        let binding = Binding::new(dev, vq_callback::<T>)?;
        let context = KBox::new(
            Context::<T> {
                binding: binding.clone(),
                data: SetOnce::new(),
            },
            GFP_KERNEL,
        )?;
        let context = KBox::into_raw(context);
        // SAFETY: Publishing the context before any virtqueue exists, so the
        // callbacks always find it; freed in `remove_callback` (or below).
        unsafe { (*vdev).priv_ = context.cast() };
        // SAFETY: `context` is valid until freed below or in `remove`.
        let context = unsafe { &*context };
        // SAFETY: The bus is binding `vdev` to our driver.
        let registration = unsafe { registration::<T>(vdev) };
        let data = match T::probe(dev, binding.clone(), &registration.debugfs) {
            Ok(data) => data,
            Err(e) => {
                binding.teardown();
                // SAFETY: No callback can run after teardown; the context is
                // unpublished before it is freed.
                unsafe {
                    let ptr = (*vdev).priv_.cast::<Context<T>>();
                    (*vdev).priv_ = core::ptr::null_mut();
                    drop(KBox::from_raw(ptr));
                }
                return Err(e);
            }
        };
        context.data.populate(data.clone());
        binding.lock()?.ready();
        T::ready(&data);
        Ok(0)
    })
}

/// The bus's `remove` callback.
///
/// # Safety
///
/// `vdev` is a valid device bound by `probe_callback::<T>`.
unsafe extern "C" fn remove_callback<T: Driver>(vdev: *mut b::virtio_device) {
    // SAFETY: The bus passes a valid device for the duration of the call.
    let dev = unsafe { Device::from_raw(vdev) };
    // SAFETY: `vdev` was bound by `probe_callback::<T>`.
    let Some(context) = (unsafe { context::<T>(vdev) }) else {
        return;
    };
    if let Some(data) = context.data.as_ref() {
        T::remove(data, dev);
    }
    context.binding.teardown();
    // SAFETY: After teardown no callback runs; unpublish, then free.
    unsafe {
        let ptr = (*vdev).priv_.cast::<Context<T>>();
        (*vdev).priv_ = core::ptr::null_mut();
        drop(KBox::from_raw(ptr));
    }
}

/// The bus's `shutdown` callback (power off, reboot, kexec).
///
/// # Safety
///
/// `vdev` is a valid device bound by `probe_callback::<T>`.
unsafe extern "C" fn shutdown_callback<T: Driver>(vdev: *mut b::virtio_device) {
    // SAFETY: The bus passes a valid, bound device for the call.
    let dev = unsafe { Device::from_raw(vdev) };
    // SAFETY: `vdev` was bound by `probe_callback::<T>`.
    let Some(context) = (unsafe { context::<T>(vdev) }) else {
        return;
    };
    if let Some(data) = context.data.as_ref() {
        T::shutdown(data, dev);
    }
    // The context stays: the device stays bound until the machine goes.
    context.binding.shutdown();
}

/// The bus's `freeze` callback (system suspend).
///
/// # Safety
///
/// `vdev` is a valid device bound by `probe_callback::<T>`.
unsafe extern "C" fn freeze_callback<T: Driver>(vdev: *mut b::virtio_device) -> kernel::ffi::c_int {
    // SAFETY: The bus passes a valid, bound device for the call.
    let dev = unsafe { Device::from_raw(vdev) };
    // SAFETY: `vdev` was bound by `probe_callback::<T>`.
    let Some(context) = (unsafe { context::<T>(vdev) }) else {
        return 0;
    };
    from_result(|| {
        if let Some(data) = context.data.as_ref() {
            T::freeze(data, dev)?;
        }
        context.binding.teardown();
        Ok(0)
    })
}

/// The bus's `restore` callback (system resume).
///
/// # Safety
///
/// `vdev` is a valid device bound by `probe_callback::<T>`.
unsafe extern "C" fn restore_callback<T: Driver>(
    vdev: *mut b::virtio_device,
) -> kernel::ffi::c_int {
    // SAFETY: The bus passes a valid, bound device for the call.
    let dev = unsafe { Device::from_raw(vdev) };
    // SAFETY: `vdev` was bound by `probe_callback::<T>`.
    let Some(context) = (unsafe { context::<T>(vdev) }) else {
        return 0;
    };
    from_result(|| {
        context.binding.revive();
        if let Some(data) = context.data.as_ref() {
            T::restore(data, dev)?;
            context.binding.lock()?.ready();
            T::ready(data);
        }
        Ok(0)
    })
}

/// The bus's `config_changed` callback (atomic context).
///
/// # Safety
///
/// `vdev` is a valid device bound to a driver registered as `T`.
unsafe extern "C" fn config_changed_callback<T: Driver>(vdev: *mut b::virtio_device) {
    // SAFETY: The bus only calls this for a bound device.
    if let Some(data) = unsafe { context::<T>(vdev) }.and_then(|c| c.data.as_ref()) {
        T::config_changed(data);
    }
}

/// Virtqueue interrupt callback (hard-IRQ context).
///
/// # Safety
///
/// `vq` is a live virtqueue of a device bound to a driver registered as `T`.
unsafe extern "C" fn vq_callback<T: Driver>(vq: *mut b::virtqueue) {
    // SAFETY: Virtqueue callbacks only run for queues of a bound device,
    // before `teardown` deleted them.
    let (vdev, index) = unsafe { ((*vq).vdev, (*vq).index) };
    // SAFETY: As above.
    let Some(context) = (unsafe { context::<T>(vdev) }) else {
        return;
    };
    context.binding.notify_used();
    if let Some(data) = context.data.as_ref() {
        T::queue_event(data, QueueId(index as usize));
    }
}
