// SPDX-License-Identifier: GPL-2.0

//! Free page reporting (`VIRTIO_BALLOON_F_REPORTING`): free blocks the page
//! allocator hands over go to the host, which may drop their backing.
//!
//! Exists only when the feature was negotiated (and the kernel has
//! `CONFIG_PAGE_REPORTING`).

use crate::debugfs::Counters;
use crate::mm::page_reporting::{PageReporting, ReportHandler, ReportedPages};
use crate::virtio::{Binding, QueueId};
use kernel::{prelude::*, sync::Arc};

/// The smallest blocks free page reporting hands over: the kernel's default
/// (a pageblock), except on arm64 with 64 KiB pages, where a pageblock is
/// 512 MiB and reporting would hardly ever start: 2 MiB (order 5), as the C
/// driver picks there (and for the same reason).
const REPORTING_ORDER: Option<u32> = if cfg!(all(CONFIG_ARM64, CONFIG_ARM64_64K_PAGES)) {
    Some(5)
} else {
    None
};

/// The reporting queue of a balloon.
pub(crate) struct Reporting {
    binding: Arc<Binding>,
    queue: QueueId,
    counters: Arc<Counters>,
}

impl Reporting {
    /// Registers with the page allocator, for as many blocks at a time as
    /// the queue has entries; unregistered when the result is dropped.
    pub(crate) fn register(
        binding: Arc<Binding>,
        queue: QueueId,
        counters: Arc<Counters>,
    ) -> Result<Pin<KBox<PageReporting<Self>>>> {
        let capacity = binding.lock()?.vring_size(queue)?;
        let reporting = Arc::new(
            Self {
                binding,
                queue,
                counters,
            },
            GFP_KERNEL,
        )?;
        PageReporting::register(reporting, capacity, REPORTING_ORDER)
    }
}

impl ReportHandler for Reporting {
    fn report(&self, pages: &ReportedPages) -> Result {
        self.binding.lock()?.report_pages(self.queue, pages)?;
        Counters::count(&self.counters.reported_blocks, pages.blocks());
        Ok(())
    }
}
