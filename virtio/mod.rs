// SPDX-License-Identifier: GPL-2.0

//! A safe layer over the kernel's C virtio and memory-balloon APIs.
//!
//! Upstream Rust-for-Linux has no virtio abstraction yet. This one covers
//! what a balloon driver needs: driver registration and bus callbacks
//! ([`driver`]), config space and virtqueues of a bound device ([`device`]),
//! buffers that the queues own while the device may read them ([`buffer`]),
//! and the kernel's balloon page list ([`balloon`]). All `unsafe` code of the
//! module lives below this directory.

mod balloon;
mod bindings;
mod buffer;
mod device;
mod driver;
mod wait;
mod workqueue;

pub(crate) use balloon::{available_pages, BalloonPages, Page, PageList, PFNS_PER_PAGE};
pub(crate) use buffer::Buffer;
pub(crate) use device::{Binding, BoundGuard, Device, QueueId, QueueInfo};
pub(crate) use driver::{Driver, Registration};
pub(crate) use workqueue::flush as flush_work;

/// Constants of the virtio balloon device (`include/uapi/linux/virtio_balloon.h`).
pub(crate) mod balloon_uapi {
    use super::bindings as b;

    /// Virtio device ID of the memory balloon.
    pub(crate) const DEVICE_ID: u32 = b::VIRTIO_ID_BALLOON;
    /// Tell the host before deflated pages are used again.
    pub(crate) const F_MUST_TELL_HOST: u32 = b::VIRTIO_BALLOON_F_MUST_TELL_HOST;
    /// Config space offset of `num_pages`, the host's target.
    pub(crate) const CONFIG_NUM_PAGES: usize =
        core::mem::offset_of!(b::virtio_balloon_config, num_pages);
    /// Config space offset of `actual`, the balloon's size.
    pub(crate) const CONFIG_ACTUAL: usize = core::mem::offset_of!(b::virtio_balloon_config, actual);
    /// Most PFNs in one inflate or deflate buffer: the C driver's array size,
    /// and all that Firecracker reads from one descriptor.
    pub(crate) const MAX_PFNS_PER_BUFFER: usize = 256;
}

#[cfg(CONFIG_VIRTIO_HARDEN_NOTIFICATION)]
compile_error!("rust_balloon does not support CONFIG_VIRTIO_HARDEN_NOTIFICATION yet");
