// SPDX-License-Identifier: GPL-2.0

//! The statistics queue: guest memory figures for the host, refreshed each
//! time the host hands the buffer back (`VIRTIO_BALLOON_F_STATS_VQ`).
//!
//! Exists only when the feature was negotiated; it owns its queue, its
//! buffer and its work item.

use crate::mm::vmstat::{self, MemoryCounters};
use crate::uapi::stat;
use crate::virtio::{Binding, Buffer, QueueId};
use kernel::{
    new_mutex,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, Mutex,
    },
    workqueue::{self, impl_has_work, new_work, Work, WorkItem},
};

/// Bytes of a stats buffer holding every tag.
pub(crate) const STATS_BYTES: usize = stat::NR * (2 + 8);

/// The statistics queue of a balloon.
#[pin_data]
pub(crate) struct Stats {
    binding: Arc<Binding>,
    queue: QueueId,
    /// Set on remove, shutdown and suspend: no more work may start.
    stopping: Atomic<bool>,
    #[pin]
    work: Work<Stats>,
    /// The buffer between two host requests (lock order: after the
    /// device's lock).
    #[pin]
    spare: Mutex<Option<KBox<Buffer>>>,
}

impl_has_work! {
    impl HasWork<Self> for Stats { self.work }
}

impl WorkItem for Stats {
    type Pointer = Arc<Stats>;

    /// The host took the stats buffer: answer with fresh figures.
    fn run(this: Arc<Stats>) {
        crate::run_once(&this.stopping, "sending stats", || this.send());
    }
}

impl Stats {
    /// Sets the queue up with one buffer, so that the host can ask.
    pub(crate) fn new(binding: Arc<Binding>, queue: QueueId) -> Result<Arc<Self>> {
        let spare = Some(Buffer::new(STATS_BYTES)?);
        let stats = Arc::pin_init(
            pin_init!(Self {
                binding,
                queue,
                stopping: Atomic::new(false),
                work <- new_work!("Stats::work"),
                spare <- new_mutex!(spare),
            }),
            GFP_KERNEL,
        )?;
        stats.send()?;
        Ok(stats)
    }

    /// Whether `queue` is the stats queue.
    pub(crate) fn owns(&self, queue: QueueId) -> bool {
        self.queue == queue
    }

    /// The host used the buffer: queue the work that refills it (from the
    /// queue's interrupt).
    pub(crate) fn host_asked(this: &Arc<Self>) {
        if !this.stopping.load(Relaxed) {
            let _ = workqueue::system_freezable().enqueue(this.clone());
        }
    }

    /// Stops the work item: none is queued or running afterwards.
    pub(crate) fn stop(self: &Arc<Self>) {
        crate::stop_work(&self.stopping, self);
    }

    /// After resume: a fresh buffer (the old one went with the reset),
    /// queued for the host.
    pub(crate) fn restore(&self) -> Result {
        *self.spare.lock() = Some(Buffer::new(STATS_BYTES)?);
        self.send()
    }

    /// Refills the stats buffer the host handed back, and queues it again.
    fn send(&self) -> Result {
        // Read before taking the device lock: reading the event counters
        // takes the CPU hotplug lock, which memory offlining holds while it
        // migrates balloon pages, which takes the device lock.
        let counters = vmstat::memory_counters();
        let mut device = self.binding.lock()?;
        let mut spare = self.spare.lock();
        // The host returns the buffer to ask for stats; before the first
        // request the spare one is used.
        let Some(mut buf) = device.get_buf(self.queue).or_else(|| spare.take()) else {
            return Ok(());
        };
        buf.clear();
        fill_stats(&mut buf, &counters)?;
        device.add_outbuf(self.queue, buf).map_err(|(e, buf)| {
            *spare = Some(buf);
            e
        })?;
        device.kick(self.queue)
    }
}

/// Appends one statistic: a little-endian tag and value (the kernel's
/// packed `struct virtio_balloon_stat`).
fn push_stat(buf: &mut Buffer, tag: u16, value: u64) -> Result {
    buf.push_le16(tag)?;
    buf.push_le64(value)
}

/// The statistics, with the same tags in the same order as the C driver.
pub(crate) fn fill_stats(buf: &mut Buffer, c: &MemoryCounters) -> Result {
    let bytes = |pages: u64| pages << kernel::page::PAGE_SHIFT;
    push_stat(buf, stat::SWAP_IN, bytes(c.swap_in))?;
    push_stat(buf, stat::SWAP_OUT, bytes(c.swap_out))?;
    push_stat(buf, stat::MAJFLT, c.major_faults)?;
    push_stat(buf, stat::MINFLT, c.minor_faults)?;
    push_stat(buf, stat::OOM_KILL, c.oom_kills)?;
    push_stat(buf, stat::ALLOC_STALL, c.alloc_stalls)?;
    push_stat(buf, stat::ASYNC_SCAN, bytes(c.scanned_async))?;
    push_stat(buf, stat::DIRECT_SCAN, bytes(c.scanned_direct))?;
    push_stat(buf, stat::ASYNC_RECLAIM, bytes(c.reclaimed_async))?;
    push_stat(buf, stat::DIRECT_RECLAIM, bytes(c.reclaimed_direct))?;
    if let Some((allocs, failures)) = c.hugetlb {
        push_stat(buf, stat::HTLB_PGALLOC, allocs)?;
        push_stat(buf, stat::HTLB_PGFAIL, failures)?;
    }
    push_stat(buf, stat::MEMFREE, bytes(c.free))?;
    push_stat(buf, stat::MEMTOT, bytes(c.total))?;
    push_stat(buf, stat::AVAIL, bytes(c.available))?;
    push_stat(buf, stat::CACHES, bytes(c.caches))
}
