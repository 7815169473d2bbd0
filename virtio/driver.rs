// SPDX-License-Identifier: GPL-2.0

//! Virtio driver registration and the bus callbacks.

use super::{
    device::{Binding, Validating},
    Device, Feature, IdTable, QueueId,
};
use crate::bindings as b;
use core::{marker::PhantomData, ptr::addr_of_mut};
use kernel::{
    debugfs::Dir,
    device::{self, Bound, Core, CoreInternal},
    error::{from_result, to_result},
    prelude::*,
    sync::{Arc, ArcBorrow},
    types::{ForeignOwnable, Opaque},
    ThisModule,
};

/// A virtio driver, in the shape of the kernel crate's bus drivers
/// (`pci::Driver`).
///
/// `#[vtable]`: the bus gets a callback only for the optional methods the
/// driver implements (`validate`, `config_changed`, `shutdown`, `freeze`,
/// `restore`). [`Driver::probe`] initialises the driver's data for the
/// device, which the bus keeps as the device's driver data (`dev_set_drvdata`,
/// as `pci`, `platform` and `auxiliary` do) and hands to every later
/// callback pinned, until it drops it once the device is unbound.
#[vtable]
pub trait Driver: Send + Sync + Sized + 'static {
    /// Driver name, as sysfs shows it.
    const NAME: &'static CStr;
    /// Per-ID data of [`Driver::ID_TABLE`].
    type IdInfo: 'static;
    /// The devices this driver binds to: see [`crate::virtio_device_table!`],
    /// which also exports the table for module aliases.
    const ID_TABLE: IdTable<Self::IdInfo>;
    /// Features the driver understands.
    const FEATURES: &'static [Feature];

    /// Checks and trims the offered features before negotiation ends.
    fn validate(_dev: &Validating<'_>) -> Result {
        Ok(())
    }

    /// Sets the device up: finds its virtqueues through `binding` (the
    /// handle the driver keeps for work beyond the bus callbacks) and
    /// initialises the driver's data. The device is made ready (DRIVER_OK)
    /// afterwards. `debugfs` is the driver's directory
    /// (`/sys/kernel/debug/<NAME>`), for per-device entries; it outlives
    /// every bound device.
    fn probe(
        dev: &Device<Core<'_>>,
        binding: Arc<Binding>,
        debugfs: &Dir,
    ) -> impl PinInit<Self, Error>;

    /// The device is ready: the driver may now use the virtqueues.
    fn ready(_dev: &Device<Bound>, _this: Pin<&Self>) {}

    /// The device's configuration changed. Atomic context: defer work.
    fn config_changed(_dev: &Device<Bound>, _this: Pin<&Self>) {}

    /// The device used buffers on `queue`. Hard-IRQ context: defer work.
    /// Waiters in [`super::BoundGuard::wait_buf`] are woken already. Not
    /// called before `probe` has returned.
    fn queue_event(_dev: &Device<Bound>, _this: Pin<&Self>, _queue: QueueId) {}

    /// The device is going away. Stop all work and give everything back;
    /// the device still works here. The binding is torn down afterwards,
    /// and the driver's data dropped.
    fn remove(dev: &Device<Core<'_>>, this: Pin<&Self>);

    /// The system is shutting down, rebooting or starting another kernel
    /// (kexec). Stop all work and unregister every hook, so that nothing
    /// waits for the device once it is stopped; the device still works
    /// here. The layer then stops it as the virtio core does (break, reset)
    /// and every operation on the binding fails with `ENODEV`. Nothing
    /// needs to be given back: the memory is the next kernel's.
    fn shutdown(_dev: &Device<Core<'_>>, _this: Pin<&Self>) {}

    /// The system is suspending (freezable work is frozen already). Give
    /// back what the device holds; the binding is torn down afterwards.
    fn freeze(_dev: &Device<Core<'_>>, _this: Pin<&Self>) -> Result {
        Ok(())
    }

    /// The system resumed: the binding is usable again, with no virtqueues.
    /// Find them again; the device is made ready afterwards, and
    /// [`Driver::ready`] called.
    fn restore(_dev: &Device<Core<'_>>, _this: Pin<&Self>) -> Result {
        Ok(())
    }
}

/// A registered virtio driver; unregistered on drop.
///
/// # Invariants
///
/// `drv` is registered with the virtio bus from construction until drop. `drv` is the first field
/// (`repr(C)`), so a pointer to it is a pointer to the registration.
#[pin_data(PinnedDrop)]
#[repr(C)]
pub struct Registration<T: Driver> {
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
    pub fn new(module: &'static ThisModule) -> impl PinInit<Self, Error> {
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
                    (*drv).config_changed =
                        T::HAS_CONFIG_CHANGED.then_some(config_changed_callback::<T>);
                    (*drv).freeze = T::HAS_FREEZE.then_some(freeze_callback::<T>);
                    (*drv).restore = T::HAS_RESTORE.then_some(restore_callback::<T>);
                    // Frees the driver's data once a device is unbound, or
                    // after a failed probe, as `driver::Registration` does
                    // for the kernel crate's buses.
                    (*drv).driver.p_cb.post_unbind_rust = Some(post_unbind_callback::<T>);
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

/// The layer's binding of a device, kept in `vdev->priv` (the virtio core
/// leaves that field to the driver) from before `probe` until after
/// `remove`, for the virtqueue callbacks.
///
/// # Safety
///
/// `vdev` is a valid device bound by `probe_callback`, whose binding
/// `remove_callback` has not taken back yet.
unsafe fn binding<'a>(vdev: *mut b::virtio_device) -> ArcBorrow<'a, Binding> {
    // SAFETY: `priv` holds `Arc::into_foreign` of the binding from
    // `probe_callback` until `take_binding`, which runs after every callback
    // that may use it (caller's guarantee).
    unsafe { Arc::<Binding>::borrow((*vdev).priv_) }
}

/// Takes the binding back out of `vdev->priv`.
///
/// # Safety
///
/// `vdev` is a valid device whose `priv` holds a binding (set by
/// `probe_callback`), and no callback may use it any more.
unsafe fn take_binding(vdev: *mut b::virtio_device) -> Arc<Binding> {
    // SAFETY: As the caller guarantees; unpublished before it is returned.
    unsafe {
        let ptr = (*vdev).priv_;
        (*vdev).priv_ = core::ptr::null_mut();
        Arc::<Binding>::from_foreign(ptr)
    }
}

/// The driver's data for `vdev`, once `probe` has returned it.
///
/// # Safety
///
/// `vdev` is a valid device bound to a driver registered as `T`, which the
/// bus does not unbind for `'a` (it is in a callback for it).
unsafe fn driver_data<'a, T: Driver>(vdev: *mut b::virtio_device) -> Option<Pin<&'a T>> {
    // SAFETY: The device is valid (caller's guarantee).
    let ptr = unsafe { kernel::bindings::dev_get_drvdata(addr_of_mut!((*vdev).dev)) };
    // SAFETY: A non-null driver data pointer of a device bound to `T` is the
    // `Pin<KBox<T>>` `probe_callback` stored; it is freed only by
    // `post_unbind_callback`, once the device is unbound.
    (!ptr.is_null()).then(|| unsafe { Pin::<KBox<T>>::borrow(ptr.cast()) })
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
    let dev = unsafe { Validating::from_raw(vdev) };
    from_result(|| T::validate(dev).map(|()| 0))
}

/// The bus's `probe` callback.
///
/// # Safety
///
/// `vdev` is a valid device being bound to a driver registered as `T`.
unsafe extern "C" fn probe_callback<T: Driver>(vdev: *mut b::virtio_device) -> kernel::ffi::c_int {
    // SAFETY: The bus passes a valid device, being bound, for the call.
    let dev = unsafe { Device::<CoreInternal<'_>>::from_raw(vdev) };
    from_result(|| {
        let binding = Binding::new(dev, vq_callback::<T>)?;
        // SAFETY: Published before any virtqueue exists, so their callbacks
        // always find it; taken back after teardown, below or in `remove`.
        unsafe { (*vdev).priv_ = binding.clone().into_foreign() };
        // SAFETY: The bus is binding `vdev` to our driver.
        let registration = unsafe { registration::<T>(vdev) };
        let data = T::probe(dev, binding.clone(), &registration.debugfs);
        let dev_core: &device::Device<CoreInternal<'_>> = dev.as_ref();
        if let Err(e) = dev_core.set_drvdata(data) {
            // SAFETY: Published above; the bus runs no other callback for a
            // device whose probe fails.
            unsafe { release_binding(vdev) };
            return Err(e);
        }
        // Cannot fail: only teardown (by this device's callbacks, which the
        // bus serialises with this one) ends the binding.
        if let Ok(device) = binding.lock() {
            device.ready();
        }
        // SAFETY: Just stored, and the device stays bound for this call.
        if let Some(data) = unsafe { driver_data::<T>(vdev) } {
            T::ready(dev, data);
        }
        Ok(0)
    })
}

/// The bus's `remove` callback.
///
/// # Safety
///
/// `vdev` is a valid device bound by `probe_callback::<T>`.
unsafe extern "C" fn remove_callback<T: Driver>(vdev: *mut b::virtio_device) {
    // SAFETY: The bus passes a valid device, bound for the call.
    let dev = unsafe { Device::<CoreInternal<'_>>::from_raw(vdev) };
    // SAFETY: The device is bound to `T` for the call.
    if let Some(data) = unsafe { driver_data::<T>(vdev) } {
        T::remove(dev, data);
    }
    // SAFETY: `vdev` was bound by `probe_callback::<T>`, which published
    // the binding; the bus runs no other callback for a device it removes.
    unsafe { release_binding(vdev) };
}

/// Tears the binding down (no virtqueue callback runs afterwards), takes it
/// out of `vdev->priv` and drops the layer's reference (work items may keep
/// theirs, which fail with `ENODEV` from now on).
///
/// # Safety
///
/// `vdev` is a valid device whose `priv` holds a binding (set by
/// `probe_callback`), for which the bus runs no other callback any more.
unsafe fn release_binding(vdev: *mut b::virtio_device) {
    // SAFETY: As the caller guarantees.
    unsafe { binding(vdev) }.teardown();
    // SAFETY: After teardown no virtqueue callback runs, and no other bus
    // callback (caller's guarantee).
    drop(unsafe { take_binding(vdev) });
}

/// The driver core's hook after a device was unbound (or a probe failed):
/// frees the driver's data.
///
/// # Safety
///
/// `dev` is the valid `struct device` of a virtio device just unbound from
/// a driver registered as `T`.
unsafe extern "C" fn post_unbind_callback<T: Driver>(dev: *mut kernel::bindings::device) {
    // SAFETY: `dev` is valid (caller's guarantee).
    let ptr = unsafe { kernel::bindings::dev_get_drvdata(dev) };
    if ptr.is_null() {
        return;
    }
    // SAFETY: As above; no one reads the pointer after the device is
    // unbound.
    unsafe { kernel::bindings::dev_set_drvdata(dev, core::ptr::null_mut()) };
    // SAFETY: A non-null driver data pointer is what `probe_callback` stored
    // with `set_drvdata`: a `Pin<KBox<T>>`, taken back once.
    drop(unsafe { Pin::<KBox<T>>::from_foreign(ptr.cast()) });
}

/// The bus's `shutdown` callback (power off, reboot, kexec).
///
/// # Safety
///
/// `vdev` is a valid device bound by `probe_callback::<T>`.
unsafe extern "C" fn shutdown_callback<T: Driver>(vdev: *mut b::virtio_device) {
    // SAFETY: The bus passes a valid, bound device for the call.
    let dev = unsafe { Device::<CoreInternal<'_>>::from_raw(vdev) };
    // SAFETY: The device is bound to `T` for the call.
    if let Some(data) = unsafe { driver_data::<T>(vdev) } {
        T::shutdown(dev, data);
    }
    // The binding stays: the device stays bound until the machine goes.
    // SAFETY: `vdev` was bound by `probe_callback::<T>`.
    unsafe { binding(vdev) }.shutdown();
}

/// The bus's `freeze` callback (system suspend).
///
/// # Safety
///
/// `vdev` is a valid device bound by `probe_callback::<T>`.
unsafe extern "C" fn freeze_callback<T: Driver>(vdev: *mut b::virtio_device) -> kernel::ffi::c_int {
    // SAFETY: The bus passes a valid, bound device for the call.
    let dev = unsafe { Device::<CoreInternal<'_>>::from_raw(vdev) };
    from_result(|| {
        // SAFETY: The device is bound to `T` for the call.
        if let Some(data) = unsafe { driver_data::<T>(vdev) } {
            T::freeze(dev, data)?;
        }
        // SAFETY: `vdev` was bound by `probe_callback::<T>`.
        unsafe { binding(vdev) }.teardown();
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
    let dev = unsafe { Device::<CoreInternal<'_>>::from_raw(vdev) };
    // SAFETY: `vdev` was bound by `probe_callback::<T>`.
    let binding = unsafe { binding(vdev) };
    from_result(|| {
        binding.revive();
        // SAFETY: The device is bound to `T` for the call.
        if let Some(data) = unsafe { driver_data::<T>(vdev) } {
            let restored = T::restore(dev, data).and_then(|()| {
                binding.lock()?.ready();
                Ok(())
            });
            if let Err(e) = restored {
                // The core marks the device FAILED. Without this, it would
                // stay alive with whatever queues were found: work queued
                // before the suspend would fail with `EINVAL` for ever;
                // now every operation fails with `ENODEV` and stops it.
                binding.teardown();
                return Err(e);
            }
            T::ready(dev, data);
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
    // SAFETY: The core calls this only between the end of `probe` and the
    // start of `remove` (`virtio_config_core_enable`/`_disable`), for a
    // valid device bound to the driver for the call.
    let dev = unsafe { Device::<Bound>::from_raw(vdev) };
    // SAFETY: As above.
    if let Some(data) = unsafe { driver_data::<T>(vdev) } {
        T::config_changed(dev, data);
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
    // SAFETY: As above: the binding is published before the queues exist
    // and taken back after they are deleted.
    unsafe { binding(vdev) }.notify_used();
    // SAFETY: As above: the device is bound while its queues live.
    let dev = unsafe { Device::<Bound>::from_raw(vdev) };
    // SAFETY: As above.
    if let Some(data) = unsafe { driver_data::<T>(vdev) } {
        T::queue_event(dev, data, QueueId(index as usize));
    }
}
