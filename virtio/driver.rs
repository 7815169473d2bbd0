// SPDX-License-Identifier: GPL-2.0

//! Virtio driver registration and the bus callbacks.

use super::{
    device::{Binding, Validating},
    Device, Feature, IdTable, QueueId,
};
use crate::bindings as b;
use core::{mem::MaybeUninit, ptr::addr_of_mut};
use kernel::{
    debugfs::Dir,
    device::{self, Bound, Core, CoreInternal},
    driver,
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
/// callback pinned, until [`kernel::driver::Registration`] drops it once the
/// device is unbound.
///
/// # Examples
///
/// A driver for the entropy device that binds and does nothing else:
///
/// ```
/// use kernel::{
///     debugfs::Dir,
///     device::Core,
///     prelude::*,
///     sync::Arc,
///     uapi,
///     virtio::{self, Binding, Device, DeviceId},
///     ThisModule,
/// };
///
/// struct Entropy;
///
/// struct EntropyData;
///
/// kernel::virtio_device_table!(
///     ENTROPY_TABLE,
///     MODULE_ENTROPY_TABLE,
///     u32,
///     [(DeviceId::new(uapi::VIRTIO_ID_RNG), 1)]
/// );
///
/// #[vtable]
/// impl virtio::Driver for Entropy {
///     type IdInfo = u32;
///     type Data<'bound> = EntropyData;
///     const ID_TABLE: virtio::IdTable<u32> = &ENTROPY_TABLE;
///     const FEATURES: &'static [virtio::Feature] = &[];
///
///     fn probe<'bound>(
///         _dev: &'bound Device<Core<'_>>,
///         id_info: &'bound u32,
///         _binding: Arc<Binding>,
///         _debugfs: &'bound Dir,
///     ) -> impl PinInit<EntropyData, Error> + 'bound {
///         // The info of the table's entry that matched.
///         assert_eq!(*id_info, 1);
///         Ok(EntropyData)
///     }
/// }
///
/// /// What a module's `init` returns to register the driver.
/// fn register(module: &'static ThisModule) -> impl PinInit<virtio::Registration<Entropy>, Error> {
///     virtio::Registration::new(c"entropy", module)
/// }
/// # let _ = register;
/// ```
#[vtable]
pub trait Driver {
    /// Per-ID data of [`Driver::ID_TABLE`].
    type IdInfo: 'static;
    /// The driver's data for a bound device. Shared with interrupt and
    /// config callbacks, which run beside the others: `Sync`.
    type Data<'bound>: Send + Sync + 'bound;
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
    /// initialises the driver's data. `id_info` is the data of the first
    /// [`Driver::ID_TABLE`] entry the device matches, as the bus matched
    /// it. The device is made ready (DRIVER_OK) afterwards. `debugfs` is
    /// the driver's directory (`/sys/kernel/debug/<name>`, the name given
    /// to `Registration::new`), for per-device entries; it outlives every
    /// bound device.
    fn probe<'bound>(
        dev: &'bound Device<Core<'_>>,
        id_info: &'bound Self::IdInfo,
        binding: Arc<Binding>,
        debugfs: &'bound Dir,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound;

    /// The device is ready: the driver may now use the virtqueues.
    fn ready(_dev: &Device<Bound>, _this: Pin<&Self::Data<'_>>) {}

    /// The device's configuration changed. Atomic context: defer work.
    fn config_changed(_dev: &Device<Bound>, _this: Pin<&Self::Data<'_>>) {}

    /// The device used buffers on `queue`. Hard-IRQ context: defer work.
    /// Waiters in [`super::BoundGuard::wait_buf`] are woken already. Not
    /// called before `probe` has returned.
    fn queue_event(_dev: &Device<Bound>, _this: Pin<&Self::Data<'_>>, _queue: QueueId) {}

    /// The device is being unbound (removed, or the driver unloaded).
    /// Optional. Stop all work and give back what the device holds; the
    /// device still works here. The binding is torn down afterwards (every
    /// operation on it fails with `ENODEV`), and the driver's data dropped:
    /// what needs no device belongs in its `Drop`.
    fn unbind<'bound>(_dev: &'bound Device<Core<'_>>, _this: Pin<&Self::Data<'bound>>) {}

    /// The system is shutting down, rebooting or starting another kernel
    /// (kexec). Stop all work and unregister every hook, so that nothing
    /// waits for the device once it is stopped; the device still works
    /// here. The layer then stops it as the virtio core does (break, reset)
    /// and every operation on the binding fails with `ENODEV`. Nothing
    /// needs to be given back: the memory is the next kernel's.
    fn shutdown(_dev: &Device<Core<'_>>, _this: Pin<&Self::Data<'_>>) {}

    /// The system is suspending (freezable work is frozen already). Give
    /// back what the device holds; the binding is torn down afterwards.
    fn freeze(_dev: &Device<Core<'_>>, _this: Pin<&Self::Data<'_>>) -> Result {
        Ok(())
    }

    /// The system resumed: the binding is usable again, with no virtqueues.
    /// Find them again; the device is made ready afterwards, and
    /// [`Driver::ready`] called.
    fn restore(_dev: &Device<Core<'_>>, _this: Pin<&Self::Data<'_>>) -> Result {
        Ok(())
    }
}

/// A registered virtio driver ([`Driver`] `T`); unregistered on drop.
///
/// The kernel crate's registration, with the bus's [`Adapter`], which
/// frees the driver's data once a device is unbound.
pub type Registration<T> = driver::Registration<Adapter<T>>;

/// The bus's side of a virtio [`Driver`]: the C callbacks, and its
/// registration through [`driver::Registration`].
pub struct Adapter<T: Driver>(T);

/// What the bus registers for a driver: the C `virtio_driver`, and the
/// driver's debugfs directory, which every probe is handed.
///
/// # Invariants
///
/// `debugfs` is initialised from before `drv` is registered until after it
/// is unregistered ([`Adapter`]'s `register` and `unregister`).
#[repr(C)]
pub struct BusDriver {
    drv: b::virtio_driver,
    debugfs: MaybeUninit<Dir>,
}

impl Default for BusDriver {
    fn default() -> Self {
        Self {
            // SAFETY: All-zero is a valid `virtio_driver`: null pointers, no
            // callbacks.
            drv: unsafe { core::mem::zeroed() },
            debugfs: MaybeUninit::uninit(),
        }
    }
}

// SAFETY:
// - `BusDriver` is `repr(C)`.
// - `T::Data` is the driver's data: what `probe_callback` stores with
//   `set_drvdata`.
// - `BusDriver` embeds a `struct device_driver` at `drv.driver`, whose
//   offset `DEVICE_DRIVER_OFFSET` is.
unsafe impl<T: Driver> driver::DriverLayout for Adapter<T> {
    type DriverType = BusDriver;
    type DriverData<'bound> = T::Data<'bound>;
    const DEVICE_DRIVER_OFFSET: usize =
        core::mem::offset_of!(BusDriver, drv) + core::mem::offset_of!(b::virtio_driver, driver);
}

// SAFETY: `unregister` undoes a successful `register` (its only caller,
// `driver::Registration`, calls it only after one).
unsafe impl<T: Driver> driver::RegistrationOps for Adapter<T> {
    /// Fills in the `virtio_driver` and the directory, and registers it.
    ///
    /// # Safety
    ///
    /// As [`driver::RegistrationOps::register`]: `reg` is a fresh
    /// `BusDriver` (`Default`), pinned until `unregister`.
    unsafe fn register(
        reg: &Opaque<BusDriver>,
        name: &'static CStr,
        module: &'static ThisModule,
    ) -> Result {
        let feature_table_size = u32::try_from(T::FEATURES.len())?;
        let reg = reg.get();
        // SAFETY: `reg` is valid and pinned until `unregister`, and not
        // registered yet: its fields may be written. Everything it points
        // to is static.
        unsafe {
            let drv = addr_of_mut!((*reg).drv);
            (*drv).driver.name = name.as_char_ptr();
            (*drv).driver.owner = module.as_ptr().cast();
            (*drv).id_table = T::ID_TABLE.as_ptr();
            // `Feature` is a transparent `u32`.
            (*drv).feature_table = T::FEATURES.as_ptr().cast();
            (*drv).feature_table_size = feature_table_size;
            (*drv).validate = T::HAS_VALIDATE.then_some(Self::validate_callback);
            (*drv).probe = Some(Self::probe_callback);
            (*drv).remove = Some(Self::remove_callback);
            (*drv).shutdown = T::HAS_SHUTDOWN.then_some(Self::shutdown_callback);
            (*drv).config_changed = T::HAS_CONFIG_CHANGED.then_some(Self::config_changed_callback);
            (*drv).freeze = T::HAS_FREEZE.then_some(Self::freeze_callback);
            (*drv).restore = T::HAS_RESTORE.then_some(Self::restore_callback);
            // INVARIANT: Set before `drv` is registered; taken back below
            // if registering fails, or in `unregister`.
            (*reg).debugfs.write(Dir::new(name));
            let registered = to_result(b::__register_virtio_driver(drv, module.as_ptr().cast()));
            if registered.is_err() {
                (*reg).debugfs.assume_init_drop();
            }
            registered
        }
    }

    /// Unregisters the driver, then drops the directory.
    ///
    /// # Safety
    ///
    /// As [`driver::RegistrationOps::unregister`]: `register` succeeded on
    /// `reg`, and it has not been unregistered since.
    unsafe fn unregister(reg: &Opaque<BusDriver>) {
        let reg = reg.get();
        // SAFETY: `drv` is registered (the caller's guarantee: `register`
        // succeeded); once it is unregistered no probe reads `debugfs`.
        unsafe {
            b::unregister_virtio_driver(addr_of_mut!((*reg).drv));
            (*reg).debugfs.assume_init_drop();
        }
    }
}

/// The debugfs directory of the driver `vdev` is being bound to.
///
/// # Safety
///
/// `vdev` is a valid device being bound to (or bound to) a driver
/// registered through `Adapter<T>`, for `'a`.
unsafe fn driver_debugfs<'a>(vdev: *mut b::virtio_device) -> &'a Dir {
    // SAFETY: The bus sets `dev.driver` to the `driver` member of the
    // `virtio_driver` it binds through: `drv` of a `BusDriver` (`repr(C)`),
    // which stays registered, hence alive with `debugfs` set (type
    // invariant), until every device it bound is unbound.
    unsafe {
        let drv = kernel::container_of!((*vdev).dev.driver, b::virtio_driver, driver);
        let bus_driver = kernel::container_of!(drv, BusDriver, drv);
        (*bus_driver).debugfs.assume_init_ref()
    }
}

/// The index of the first entry of `T`'s ID table that matches `id`, the
/// way the virtio core matched the device to the driver
/// (`virtio_dev_match`): the same type, or any; the same vendor, or any.
fn matching_id<T: Driver>(id: b::virtio_device_id) -> Option<usize> {
    let table = T::ID_TABLE.as_ptr();
    let mut index = 0;
    loop {
        // SAFETY: `as_ptr` is the table the bus matches devices with (the
        // C side reads it the same way): its entries followed by an all-zero
        // sentinel (`IdArray`), with provenance over all of them. The loop
        // ends at the first entry whose `device` is 0, as the core's does.
        let entry = unsafe { table.add(index).read() };
        if entry.device == 0 {
            return None;
        }
        if (entry.device == id.device || entry.device == b::VIRTIO_DEV_ANY_ID)
            && (entry.vendor == b::VIRTIO_DEV_ANY_ID || entry.vendor == id.vendor)
        {
            return Some(index);
        }
        index += 1;
    }
}

/// The layer's binding of a device, kept in `vdev->priv` (the virtio core
/// leaves that field to the driver) from before `probe` until after
/// `remove_callback`, for the virtqueue callbacks.
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
/// `vdev` is a valid device bound to a driver registered through
/// `Adapter<T>`, which the bus does not unbind for `'a` (it is in a
/// callback for it).
unsafe fn driver_data<'a, T: Driver>(vdev: *mut b::virtio_device) -> Option<Pin<&'a T::Data<'a>>> {
    // SAFETY: The device is valid (caller's guarantee).
    let ptr = unsafe { kernel::bindings::dev_get_drvdata(addr_of_mut!((*vdev).dev)) };
    // SAFETY: A non-null driver data pointer of a device bound to `T` is the
    // `Pin<KBox<T::Data>>` `probe_callback` stored; `driver::Registration`
    // frees it only once the device is unbound.
    (!ptr.is_null()).then(|| unsafe { Pin::<KBox<T::Data<'a>>>::borrow(ptr.cast()) })
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

impl<T: Driver> Adapter<T> {
    /// The bus's `validate` callback.
    ///
    /// # Safety
    ///
    /// `vdev` is a valid device offered to a driver registered as `T`.
    unsafe extern "C" fn validate_callback(vdev: *mut b::virtio_device) -> kernel::ffi::c_int {
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
    unsafe extern "C" fn probe_callback(vdev: *mut b::virtio_device) -> kernel::ffi::c_int {
        // SAFETY: The bus passes a valid device, being bound, for the call.
        let dev = unsafe { Device::<CoreInternal<'_>>::from_raw(vdev) };
        from_result(|| {
            // The bus offers a device only to a driver whose table it
            // matches (virtio has no driver_override or dynamic IDs): the
            // `ENODEV` is for a table that would not say what it matched.
            let index = matching_id::<T>(dev.id()).ok_or(ENODEV)?;
            let id_info = T::ID_TABLE.info(index);
            let binding = Binding::new(dev, Self::vq_callback)?;
            // SAFETY: Published before any virtqueue exists, so their callbacks
            // always find it; taken back after teardown, below or in `remove_callback`.
            unsafe { (*vdev).priv_ = binding.clone().into_foreign() };
            // SAFETY: The bus is binding `vdev` to our driver. The directory
            // may end up in the driver's data, which lives until the device
            // is unbound: `unregister` unbinds every device (and the data
            // is dropped) before it drops the directory.
            let debugfs = unsafe { driver_debugfs(vdev) };
            let data = T::probe(dev, id_info, binding.clone(), debugfs);
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

    /// The bus's `remove` callback: [`Driver::unbind`], then the binding
    /// torn down. `driver::Registration` drops the driver's data after.
    ///
    /// # Safety
    ///
    /// `vdev` is a valid device bound by `probe_callback`.
    unsafe extern "C" fn remove_callback(vdev: *mut b::virtio_device) {
        // SAFETY: The bus passes a valid device, bound for the call.
        let dev = unsafe { Device::<CoreInternal<'_>>::from_raw(vdev) };
        // SAFETY: The device is bound to `T` for the call.
        if let Some(data) = unsafe { driver_data::<T>(vdev) } {
            T::unbind(dev, data);
        }
        // SAFETY: `vdev` was bound by `probe_callback`, which published
        // the binding; the bus runs no other callback for a device it removes.
        unsafe { release_binding(vdev) };
    }

    /// The bus's `shutdown` callback (power off, reboot, kexec).
    ///
    /// # Safety
    ///
    /// `vdev` is a valid device bound by `probe_callback`.
    unsafe extern "C" fn shutdown_callback(vdev: *mut b::virtio_device) {
        // SAFETY: The bus passes a valid, bound device for the call.
        let dev = unsafe { Device::<CoreInternal<'_>>::from_raw(vdev) };
        // SAFETY: The device is bound to `T` for the call.
        if let Some(data) = unsafe { driver_data::<T>(vdev) } {
            T::shutdown(dev, data);
        }
        // The binding stays: the device stays bound until the machine goes.
        // SAFETY: `vdev` was bound by `probe_callback`.
        unsafe { binding(vdev) }.shutdown();
    }

    /// The bus's `freeze` callback (system suspend).
    ///
    /// # Safety
    ///
    /// `vdev` is a valid device bound by `probe_callback`.
    unsafe extern "C" fn freeze_callback(vdev: *mut b::virtio_device) -> kernel::ffi::c_int {
        // SAFETY: The bus passes a valid, bound device for the call.
        let dev = unsafe { Device::<CoreInternal<'_>>::from_raw(vdev) };
        from_result(|| {
            // SAFETY: The device is bound to `T` for the call.
            if let Some(data) = unsafe { driver_data::<T>(vdev) } {
                T::freeze(dev, data)?;
            }
            // SAFETY: `vdev` was bound by `probe_callback`.
            unsafe { binding(vdev) }.teardown();
            Ok(0)
        })
    }

    /// The bus's `restore` callback (system resume).
    ///
    /// # Safety
    ///
    /// `vdev` is a valid device bound by `probe_callback`.
    unsafe extern "C" fn restore_callback(vdev: *mut b::virtio_device) -> kernel::ffi::c_int {
        // SAFETY: The bus passes a valid, bound device for the call.
        let dev = unsafe { Device::<CoreInternal<'_>>::from_raw(vdev) };
        // SAFETY: `vdev` was bound by `probe_callback`.
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
    unsafe extern "C" fn config_changed_callback(vdev: *mut b::virtio_device) {
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
    unsafe extern "C" fn vq_callback(vq: *mut b::virtqueue) {
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
}
