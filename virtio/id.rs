// SPDX-License-Identifier: GPL-2.0

//! Virtio device IDs and ID tables, as `kernel::pci` has them.

use crate::bindings as b;
use kernel::device_id::RawDeviceId;

/// A virtio device ID (`struct virtio_device_id`): a device type, from any
/// vendor.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct DeviceId(b::virtio_device_id);

impl DeviceId {
    /// Devices of type `device` (`VIRTIO_ID_*`) from any vendor.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{uapi, virtio::DeviceId};
    ///
    /// // What a balloon driver binds to, in its `virtio_device_table!`.
    /// const BALLOON: DeviceId = DeviceId::new(uapi::VIRTIO_ID_BALLOON);
    /// # let _ = BALLOON;
    /// ```
    pub const fn new(device: u32) -> Self {
        Self(b::virtio_device_id {
            device,
            vendor: b::VIRTIO_DEV_ANY_ID,
        })
    }
}

// SAFETY: `DeviceId` is a `repr(transparent)` wrapper of `virtio_device_id`
// and adds no field. The table has no `driver_data` (virtio's ID has none),
// so it is built without an index (`IdArray::new_without_index`).
unsafe impl RawDeviceId for DeviceId {
    type RawType = b::virtio_device_id;
}

/// A driver's table of virtio device IDs, with data of type `T` per ID.
pub type IdTable<T> = &'static dyn kernel::device_id::IdTable<DeviceId, T>;

/// Declares a virtio device ID table and exports it for modpost, which
/// writes the module's `virtio:d<ID>v*` aliases from it (as
/// `kernel::pci_device_table!` does for PCI).
///
/// `virtio_device_table!(TABLE, MODULE_TABLE, IdInfo, [(DeviceId::new(..), info), ...])`
///
/// Exported at the crate's root, as the kernel crate's device table macros
/// are; its paths hold wherever it is expanded, in this crate or (once the
/// layer is the kernel crate's) in a driver.
#[macro_export]
macro_rules! virtio_device_table {
    ($table_name:ident, $module_table_name:ident, $id_info_type:ty, $table_data:expr) => {
        const $table_name: ::kernel::device_id::IdArray<
            $crate::virtio::DeviceId,
            $id_info_type,
            { $table_data.len() },
        > = ::kernel::device_id::IdArray::new_without_index($table_data);

        ::kernel::module_device_table!("virtio", $module_table_name, $table_name);
    };
}
