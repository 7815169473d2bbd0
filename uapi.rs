// SPDX-License-Identifier: GPL-2.0

//! The virtio balloon device's protocol constants
//! (`include/uapi/linux/virtio_balloon.h`): feature bits, config space
//! fields and statistics tags.
//!
//! Out of tree they come from the module's own bindings; in tree, from
//! `kernel::uapi` (the upstream series adds the virtio headers to
//! `rust/uapi/uapi_helper.h`).

use crate::bindings as b;
use crate::virtio::{config_le32, BalloonConfig, ConfigLe32, Feature};

/// Virtio device ID of the memory balloon.
pub(crate) const DEVICE_ID: u32 = b::VIRTIO_ID_BALLOON;
/// Tell the host before deflated pages are used again.
pub(crate) const F_MUST_TELL_HOST: Feature = Feature::new(b::VIRTIO_BALLOON_F_MUST_TELL_HOST);
/// Memory statistics queue.
pub(crate) const F_STATS_VQ: Feature = Feature::new(b::VIRTIO_BALLOON_F_STATS_VQ);
/// Deflate when the guest runs out of memory.
pub(crate) const F_DEFLATE_ON_OOM: Feature = Feature::new(b::VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
/// Free page hinting queue.
pub(crate) const F_FREE_PAGE_HINT: Feature = Feature::new(b::VIRTIO_BALLOON_F_FREE_PAGE_HINT);
/// Config space offset of `free_page_hint_cmd_id`.
pub(crate) const CONFIG_HINT_CMD_ID: ConfigLe32 = config_le32!(BalloonConfig, __bindgen_anon_1);
/// Hint command: stop hinting.
pub(crate) const CMD_ID_STOP: u32 = b::VIRTIO_BALLOON_CMD_ID_STOP;
/// Hint command: the host is done with the hints; free the blocks.
pub(crate) const CMD_ID_DONE: u32 = b::VIRTIO_BALLOON_CMD_ID_DONE;
/// The guest poisons (or zeroes) free pages; `poison_val` says with what.
pub(crate) const F_PAGE_POISON: Feature = Feature::new(b::VIRTIO_BALLOON_F_PAGE_POISON);
/// Free page reporting queue.
pub(crate) const F_REPORTING: Feature = Feature::new(b::VIRTIO_BALLOON_F_REPORTING);
/// Ring feature: indirect descriptors (they allocate memory when used).
pub(crate) const F_RING_INDIRECT_DESC: Feature = Feature::new(b::VIRTIO_RING_F_INDIRECT_DESC);
/// Transport feature: the device goes through the platform's IOMMU.
pub(crate) const F_ACCESS_PLATFORM: Feature = Feature::new(b::VIRTIO_F_ACCESS_PLATFORM);

/// Every balloon feature with the name the kernel's headers give it
/// (lower case, without the prefix), for logs and debugfs.
pub(crate) const FEATURE_NAMES: [(Feature, &str); 6] = [
    (F_MUST_TELL_HOST, "must_tell_host"),
    (F_STATS_VQ, "stats_vq"),
    (F_DEFLATE_ON_OOM, "deflate_on_oom"),
    (F_FREE_PAGE_HINT, "free_page_hint"),
    (F_PAGE_POISON, "page_poison"),
    (F_REPORTING, "reporting"),
];

/// Config space offset of `num_pages`, the host's target.
pub(crate) const CONFIG_NUM_PAGES: ConfigLe32 = config_le32!(BalloonConfig, num_pages);
/// Config space offset of `actual`, the balloon's size.
pub(crate) const CONFIG_ACTUAL: ConfigLe32 = config_le32!(BalloonConfig, actual);
/// Config space offset of `poison_val`.
pub(crate) const CONFIG_POISON_VAL: ConfigLe32 = config_le32!(BalloonConfig, poison_val);

/// PFNs in one inflate or deflate buffer of the C driver, and the most
/// that Firecracker takes from one descriptor (`MAX_PAGES_IN_DESC`): it
/// skips a longer one.
pub(crate) const C_PFNS_PER_BUFFER: usize = 256;

/// Statistics tags.
pub(crate) mod stat {
    use super::b;
    /// Pages swapped in.
    pub(crate) const SWAP_IN: u16 = b::VIRTIO_BALLOON_S_SWAP_IN as u16;
    /// Pages swapped out.
    pub(crate) const SWAP_OUT: u16 = b::VIRTIO_BALLOON_S_SWAP_OUT as u16;
    /// Major page faults.
    pub(crate) const MAJFLT: u16 = b::VIRTIO_BALLOON_S_MAJFLT as u16;
    /// Page faults (minor, as the C driver counts them).
    pub(crate) const MINFLT: u16 = b::VIRTIO_BALLOON_S_MINFLT as u16;
    /// Free memory, in bytes.
    pub(crate) const MEMFREE: u16 = b::VIRTIO_BALLOON_S_MEMFREE as u16;
    /// Total memory, in bytes.
    pub(crate) const MEMTOT: u16 = b::VIRTIO_BALLOON_S_MEMTOT as u16;
    /// Available memory, in bytes.
    pub(crate) const AVAIL: u16 = b::VIRTIO_BALLOON_S_AVAIL as u16;
    /// Page cache, in bytes.
    pub(crate) const CACHES: u16 = b::VIRTIO_BALLOON_S_CACHES as u16;
    /// Huge page allocations.
    pub(crate) const HTLB_PGALLOC: u16 = b::VIRTIO_BALLOON_S_HTLB_PGALLOC as u16;
    /// Failed huge page allocations.
    pub(crate) const HTLB_PGFAIL: u16 = b::VIRTIO_BALLOON_S_HTLB_PGFAIL as u16;
    /// OOM kills.
    pub(crate) const OOM_KILL: u16 = b::VIRTIO_BALLOON_S_OOM_KILL as u16;
    /// Allocation stalls.
    pub(crate) const ALLOC_STALL: u16 = b::VIRTIO_BALLOON_S_ALLOC_STALL as u16;
    /// Pages kswapd scanned.
    pub(crate) const ASYNC_SCAN: u16 = b::VIRTIO_BALLOON_S_ASYNC_SCAN as u16;
    /// Pages direct reclaim scanned.
    pub(crate) const DIRECT_SCAN: u16 = b::VIRTIO_BALLOON_S_DIRECT_SCAN as u16;
    /// Pages kswapd reclaimed.
    pub(crate) const ASYNC_RECLAIM: u16 = b::VIRTIO_BALLOON_S_ASYNC_RECLAIM as u16;
    /// Pages direct reclaim reclaimed.
    pub(crate) const DIRECT_RECLAIM: u16 = b::VIRTIO_BALLOON_S_DIRECT_RECLAIM as u16;
    /// Number of tags defined.
    pub(crate) const NR: usize = b::VIRTIO_BALLOON_S_NR as usize;
}
