// SPDX-License-Identifier: GPL-2.0

//! A safe layer over the kernel's C virtio and memory-balloon APIs.
//!
//! Upstream Rust-for-Linux has no virtio abstraction yet. This one covers
//! what a balloon driver needs: driver registration and bus callbacks
//! ([`driver`]), config space and virtqueues of a bound device ([`device`]),
//! buffers that the queues own while the device may read them ([`buffer`]),
//! the kernel's balloon page list ([`balloon`]), memory counters ([`mm`]),
//! the OOM notifier ([`oom`]) and free page reporting ([`reporting`]). All
//! `unsafe` code of the module lives below this directory.

mod balloon;
mod bindings;
mod buffer;
mod config;
mod device;
mod driver;
mod id;
mod mm;
mod oom;
mod pfn;
#[cfg(CONFIG_PAGE_REPORTING)]
mod reporting;
mod shrinker;
mod wait;
mod workqueue;

pub use crate::virtio_device_table;
pub use balloon::{
    BalloonPages, Migrate, Mobility, Page, PageList, HUGE_ORDER, MAX_PAGE_ORDER, PAGE_SHIFT,
    PFNS_PER_PAGE,
};
pub use buffer::Buffer;
pub use config::{ConfigLe32, Feature};
pub use device::{Binding, BoundGuard, Device, QueueId, QueueInfo, Transport, Used, Validating};
pub use driver::{Driver, Registration};
pub use id::{DeviceId, IdTable};
pub use mm::{
    available_pages, free_page_fill, memory_counters, reclaim_counters, MemoryCounters,
    ReclaimCounters,
};
pub use oom::{OomHandler, OomNotifier};
pub use pfn::{round_target, whole_pages};
#[cfg(CONFIG_PAGE_REPORTING)]
pub use reporting::{PageReporting, ReportHandler, ReportedPages};
pub use shrinker::{ShrinkHandler, Shrinker};
pub use workqueue::cancel as cancel_work;

/// Constants of the virtio balloon device (`include/uapi/linux/virtio_balloon.h`).
pub mod balloon_uapi {
    use super::{bindings as b, config::config_le32, ConfigLe32, Feature};

    /// Virtio device ID of the memory balloon.
    pub const DEVICE_ID: u32 = b::VIRTIO_ID_BALLOON;
    /// Tell the host before deflated pages are used again.
    pub const F_MUST_TELL_HOST: Feature = Feature::new(b::VIRTIO_BALLOON_F_MUST_TELL_HOST);
    /// Memory statistics queue.
    pub const F_STATS_VQ: Feature = Feature::new(b::VIRTIO_BALLOON_F_STATS_VQ);
    /// Deflate when the guest runs out of memory.
    pub const F_DEFLATE_ON_OOM: Feature = Feature::new(b::VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
    /// Free page hinting queue.
    pub const F_FREE_PAGE_HINT: Feature = Feature::new(b::VIRTIO_BALLOON_F_FREE_PAGE_HINT);
    /// Config space offset of `free_page_hint_cmd_id`.
    pub const CONFIG_HINT_CMD_ID: ConfigLe32 =
        config_le32!(DEVICE_ID, b::virtio_balloon_config, __bindgen_anon_1);
    /// Hint command: stop hinting.
    pub const CMD_ID_STOP: u32 = b::VIRTIO_BALLOON_CMD_ID_STOP;
    /// Hint command: the host is done with the hints; free the blocks.
    pub const CMD_ID_DONE: u32 = b::VIRTIO_BALLOON_CMD_ID_DONE;
    /// The guest poisons (or zeroes) free pages; `poison_val` says with what.
    pub const F_PAGE_POISON: Feature = Feature::new(b::VIRTIO_BALLOON_F_PAGE_POISON);
    /// Free page reporting queue.
    pub const F_REPORTING: Feature = Feature::new(b::VIRTIO_BALLOON_F_REPORTING);
    /// Ring feature: indirect descriptors (they allocate memory when used).
    pub const F_RING_INDIRECT_DESC: Feature = Feature::new(b::VIRTIO_RING_F_INDIRECT_DESC);
    /// Transport feature: the device goes through the platform's IOMMU.
    pub const F_ACCESS_PLATFORM: Feature = Feature::new(b::VIRTIO_F_ACCESS_PLATFORM);

    /// Every balloon feature with the name the kernel's headers give it
    /// (lower case, without the prefix), for logs and debugfs.
    pub const FEATURE_NAMES: [(Feature, &str); 6] = [
        (F_MUST_TELL_HOST, "must_tell_host"),
        (F_STATS_VQ, "stats_vq"),
        (F_DEFLATE_ON_OOM, "deflate_on_oom"),
        (F_FREE_PAGE_HINT, "free_page_hint"),
        (F_PAGE_POISON, "page_poison"),
        (F_REPORTING, "reporting"),
    ];

    /// Config space offset of `num_pages`, the host's target.
    pub const CONFIG_NUM_PAGES: ConfigLe32 =
        config_le32!(DEVICE_ID, b::virtio_balloon_config, num_pages);
    /// Config space offset of `actual`, the balloon's size.
    pub const CONFIG_ACTUAL: ConfigLe32 = config_le32!(DEVICE_ID, b::virtio_balloon_config, actual);
    /// Config space offset of `poison_val`.
    pub const CONFIG_POISON_VAL: ConfigLe32 =
        config_le32!(DEVICE_ID, b::virtio_balloon_config, poison_val);

    /// PFNs in one inflate or deflate buffer of the C driver, and the most
    /// that Firecracker takes from one descriptor (`MAX_PAGES_IN_DESC`): it
    /// skips a longer one.
    pub const C_PFNS_PER_BUFFER: usize = 256;

    /// Statistics tags.
    pub mod stat {
        use super::b;
        /// Pages swapped in.
        pub const SWAP_IN: u16 = b::VIRTIO_BALLOON_S_SWAP_IN as u16;
        /// Pages swapped out.
        pub const SWAP_OUT: u16 = b::VIRTIO_BALLOON_S_SWAP_OUT as u16;
        /// Major page faults.
        pub const MAJFLT: u16 = b::VIRTIO_BALLOON_S_MAJFLT as u16;
        /// Page faults (minor, as the C driver counts them).
        pub const MINFLT: u16 = b::VIRTIO_BALLOON_S_MINFLT as u16;
        /// Free memory, in bytes.
        pub const MEMFREE: u16 = b::VIRTIO_BALLOON_S_MEMFREE as u16;
        /// Total memory, in bytes.
        pub const MEMTOT: u16 = b::VIRTIO_BALLOON_S_MEMTOT as u16;
        /// Available memory, in bytes.
        pub const AVAIL: u16 = b::VIRTIO_BALLOON_S_AVAIL as u16;
        /// Page cache, in bytes.
        pub const CACHES: u16 = b::VIRTIO_BALLOON_S_CACHES as u16;
        /// Huge page allocations.
        pub const HTLB_PGALLOC: u16 = b::VIRTIO_BALLOON_S_HTLB_PGALLOC as u16;
        /// Failed huge page allocations.
        pub const HTLB_PGFAIL: u16 = b::VIRTIO_BALLOON_S_HTLB_PGFAIL as u16;
        /// OOM kills.
        pub const OOM_KILL: u16 = b::VIRTIO_BALLOON_S_OOM_KILL as u16;
        /// Allocation stalls.
        pub const ALLOC_STALL: u16 = b::VIRTIO_BALLOON_S_ALLOC_STALL as u16;
        /// Pages kswapd scanned.
        pub const ASYNC_SCAN: u16 = b::VIRTIO_BALLOON_S_ASYNC_SCAN as u16;
        /// Pages direct reclaim scanned.
        pub const DIRECT_SCAN: u16 = b::VIRTIO_BALLOON_S_DIRECT_SCAN as u16;
        /// Pages kswapd reclaimed.
        pub const ASYNC_RECLAIM: u16 = b::VIRTIO_BALLOON_S_ASYNC_RECLAIM as u16;
        /// Pages direct reclaim reclaimed.
        pub const DIRECT_RECLAIM: u16 = b::VIRTIO_BALLOON_S_DIRECT_RECLAIM as u16;
        /// Number of tags defined.
        pub const NR: usize = b::VIRTIO_BALLOON_S_NR as usize;
    }
}

#[cfg(CONFIG_VIRTIO_HARDEN_NOTIFICATION)]
compile_error!("rust_balloon does not support CONFIG_VIRTIO_HARDEN_NOTIFICATION yet");
