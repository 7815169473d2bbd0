// SPDX-License-Identifier: GPL-2.0

//! rust_balloon: a virtio memory balloon driver (virtio device ID 5).
//!
//! The host sets a target balloon size in the device's config space; the
//! driver inflates (allocates guest pages and tells the host it may take
//! them) or deflates (tells the host, then frees pages) until the balloon
//! holds that many 4 KiB pages, and reports the size back in `actual`. It
//! also sends memory statistics, deflates when the guest runs out of memory,
//! reports free pages, and lets compaction migrate balloon pages.
//!
//! This file holds the balloon logic only; every operation the compiler cannot
//! check lives in the [`virtio`] layer.
//!
//! # Lock order
//!
//! Taken in this order, never the other way round:
//!
//! 1. `Balloon::inflating`: pages allocated for the next inflate step. Only
//!    the resize work takes it, and it is the only lock held while the
//!    driver allocates memory with reclaim.
//! 2. The balloon's lock ([`BalloonPages::lock`], the [`State`]): what the
//!    host knows about the balloon. Held to dequeue, enqueue and talk to the
//!    host; the OOM notifier takes it (with the kernel's `oom_lock` held) and
//!    balloon page migration tries it (from compaction). Nothing under it
//!    allocates with reclaim or waits for anything but the host.
//! 3. The device ([`Binding::lock`]): config space and virtqueues. Held
//!    across a wait for the host (which gives up if the queue breaks), never
//!    across an allocation with reclaim (finding the queues allocates, and
//!    takes only the binding's own setup lock meanwhile; so do resetting
//!    and deleting them) nor across anything that takes the CPU hotplug
//!    lock: memory offlining holds that lock while it migrates balloon
//!    pages, which takes locks 2 and 3, so the statistics read the kernel's
//!    event counters (`cpus_read_lock()`) before taking this one.
//! 4. `Hints::blocks` and `Balloon::stats`: taken under the device lock or
//!    alone; the shrinker only tries `Hints::blocks`.

mod debugfs;
mod virtio;

use debugfs::Counters;
use kernel::{
    debugfs::Dir,
    new_mutex,
    prelude::*,
    sync::{
        atomic::{Atomic, Full, Relaxed},
        Arc, Mutex,
    },
    time::{delay::fsleep, Delta, Instant, Monotonic},
    workqueue::{self, impl_has_work, new_work, Work, WorkItem},
};
use virtio::{
    available_pages as guest_available_pages, balloon_uapi as uapi, balloon_uapi::stat,
    BalloonPages, Binding, BoundGuard, Buffer, Device, MemoryCounters, Migrate, OomHandler,
    OomNotifier, Page, PageList, QueueId, QueueInfo, ShrinkHandler, Shrinker, Transport, Used,
    PFNS_PER_PAGE,
};
#[cfg(CONFIG_PAGE_REPORTING)]
use virtio::{PageReporting, ReportHandler, ReportedPages};

module! {
    type: BalloonModule,
    name: "rust_balloon",
    authors: ["rust-balloon developers"],
    description: "Virtio memory balloon driver, in Rust",
    license: "GPL",
    alias: ["virtio:d00000005v*"],
    params: {
        min_available_mib: u32 {
            default: 64,
            description: "Never inflate below this much available guest memory (MiB)",
        },
        buffer_pfns: u32 {
            default: 0,
            description: "PFNs per inflate/deflate buffer: 0 picks by transport (512 on virtio-pci, 256 on others), 256 or 512",
        },
    },
}

/// Inflate queue: PFNs of pages the guest gives up.
const INFLATE_QUEUE: QueueId = QueueId(0);
/// Deflate queue: PFNs of pages the guest takes back.
const DEFLATE_QUEUE: QueueId = QueueId(1);

/// The smallest blocks free page reporting hands over: the kernel's default
/// (a pageblock), except on arm64 with 64 KiB pages, where a pageblock is
/// 512 MiB and reporting would hardly ever start: 2 MiB (order 5), as the C
/// driver picks there (and for the same reason).
#[cfg(all(CONFIG_ARM64, CONFIG_ARM64_64K_PAGES))]
const REPORTING_ORDER: Option<u32> = Some(5);
#[cfg(not(all(CONFIG_ARM64, CONFIG_ARM64_64K_PAGES)))]
const REPORTING_ORDER: Option<u32> = None;

/// PFN buffers one step keeps in flight on a queue. The C driver waits for
/// the host after each buffer; here the next buffer is filled while the
/// host works on the previous ones (with a host that handles notifications
/// asynchronously, as KVM's ioeventfd does).
const BUFFERS_IN_FLIGHT: usize = 8;

/// Guest pages in one huge block (512 on x86-64).
const HUGE_BLOCK_PAGES: usize = 1 << virtio::HUGE_ORDER;

/// 4 KiB frames in one huge block: a whole 2 MiB host huge page.
const BLOCK_PFNS: usize = HUGE_BLOCK_PAGES * PFNS_PER_PAGE;

/// How many PFNs go in one inflate or deflate buffer.
///
/// A host whose guest RAM is backed by huge pages (hugetlbfs) can only give
/// a huge page back once the guest has ballooned every 4 KiB frame in it,
/// and QEMU (since 4.1) tracks that within one buffer only: it frees a
/// 2 MiB page only if all 512 of its frames arrive in one buffer. Two
/// buffers of 256 give it nothing. So a buffer holds one whole block.
///
/// But Firecracker takes at most 256 frames from a buffer, and skips a
/// longer one with an error: the host never sees those pages. It offers
/// virtio-mmio (virtio-pci only with `--enable-pci`), and merges adjacent
/// frames of all the buffers it finds in one go, so two buffers of 256
/// queued before one notification still cover a whole huge page there.
///
/// Hence the rule: one block per buffer (512) on virtio-pci, the C
/// driver's 256 on any other transport, and `buffer_pfns=` to override it
/// (256 for Firecracker with `--enable-pci`, 512 for QEMU's microvm with
/// hugetlbfs). Cloud-hypervisor takes buffers of any length.
fn pfns_per_buffer(transport: Transport) -> usize {
    match *module_parameters::buffer_pfns.value() as usize {
        0 if transport == Transport::Pci => BLOCK_PFNS,
        0 => uapi::C_PFNS_PER_BUFFER,
        // Checked at load (`check_parameters`).
        pfns => pfns,
    }
}

/// Pages moved into or out of the kernel's balloon list under one hold of
/// its lock: one huge block, which then stays side by side in the list (so
/// deflate frees it as one run). `balloon_page_list_enqueue()` and
/// `_dequeue()` keep interrupts off for the whole list they are given: a
/// step's 4096 pages at once held them off for tens of milliseconds under
/// TCG, a stall for whatever ran on that CPU (the busy-guest bench).
const LIST_BATCH_PAGES: usize = HUGE_BLOCK_PAGES;

/// Steps one work run may take before it yields the worker, so a large
/// target does not hold up the freezer or other work (16 steps of 8 MiB).
const STEPS_PER_RUN: usize = 16;

/// Pause after a step that moved nothing: short at first (an allocation
/// failure is often over once reclaim has run), doubling while nothing
/// moves, up to the C driver's fixed 200 ms (and a bit more), back to the
/// shortest as soon as a step moves pages again.
const BACKOFF_MIN_MS: u32 = 1;
const BACKOFF_MAX_MS: u32 = 256;

/// The pause after one of `ms` that did not help either.
fn next_backoff_ms(ms: u32) -> u32 {
    ms.saturating_mul(2).clamp(BACKOFF_MIN_MS, BACKOFF_MAX_MS)
}

/// 4 KiB pages released per OOM notification, as in the C driver.
const OOM_RELEASE_PFNS: usize = 256;
/// OOM notifier priority, as in the C driver.
const OOM_NOTIFY_PRIORITY: i32 = 80;

/// What one step towards the target achieved.
enum Step {
    /// At the target: nothing left to do.
    Done,
    /// Moved this many 4 KiB pages; maybe more to do.
    Moved(usize),
    /// Could not allocate a single page (inflate) or dequeue one (deflate,
    /// while compaction holds them): try again later.
    Stalled,
}

/// The optional queues, numbered densely after inflate and deflate in the
/// order the features define them.
#[derive(PartialEq)]
struct Queues {
    stats: Option<QueueId>,
    hint: Option<QueueId>,
    reporting: Option<QueueId>,
}

impl Queues {
    /// Finds the queues the negotiated features call for.
    fn find(binding: &Binding) -> Result<Self> {
        let mut infos = KVec::new();
        let mut add = |name| -> Result<QueueId> {
            infos.push(
                QueueInfo {
                    name,
                    callback: true,
                },
                GFP_KERNEL,
            )?;
            Ok(QueueId(infos.len() - 1))
        };
        add(c"inflate")?;
        add(c"deflate")?;
        let stats = match binding.has_feature(uapi::F_STATS_VQ) {
            true => Some(add(c"stats")?),
            false => None,
        };
        let hint = match binding.has_feature(uapi::F_FREE_PAGE_HINT) {
            true => Some(add(c"free_page_vq")?),
            false => None,
        };
        let reporting = match binding.has_feature(uapi::F_REPORTING) {
            true => Some(add(c"reporting_vq")?),
            false => None,
        };
        binding.find_vqs(&infos)?;
        Ok(Self {
            stats,
            hint,
            reporting,
        })
    }
}

/// What the host knows about the balloon, under the balloon's lock (see
/// [`BalloonPages`]). Nothing here is allocated per step: the buffers are
/// made at probe and the page lists link through `page->lru`.
struct State {
    binding: Arc<Binding>,
    counters: Arc<Counters>,
    /// Balloon size in 4 KiB pages: what the host has been told.
    num_pages: u32,
    /// PFN buffers not in a queue: all of them while the lock is free
    /// (fewer only if the device broke holding some).
    pfns: KVec<KBox<Buffer>>,
    /// Pages dequeued for deflation but not yet sent...
    unsent: PageList,
    /// ...those of the buffer being filled...
    batch: PageList,
    /// ...and those in buffers sent during this step.
    sent: PageList,
}

impl State {
    /// Sends the pages of `batch` on `queue` in one buffer, kicking the host
    /// if `kick`. On success they move to `sent`; on failure they stay in
    /// `batch`.
    fn send_batch(&mut self, queue: QueueId, kick: bool) -> Result {
        let mut device = self.binding.lock()?;
        queue_pfns(&mut self.pfns, &mut device, queue, |buf| {
            push_list_pfns(buf, &self.batch)
        })?;
        if kick {
            device.kick(queue)?;
        }
        self.sent.append(&mut self.batch);
        Ok(())
    }

    /// Kicks `queue` and waits until the host has handed back the `count`
    /// buffers sent on it in this step.
    fn wait_sent(&mut self, queue: QueueId, count: usize) -> Result {
        if count == 0 {
            return Ok(());
        }
        let mut device = self.binding.lock()?;
        device.kick(queue)?;
        let start = Instant::<Monotonic>::now();
        for _ in 0..count {
            let buf = device.wait_buf(queue)?;
            give_back(&mut self.pfns, buf);
        }
        self.counters.host_waited(start.elapsed());
        Ok(())
    }
}

/// Returns a PFN buffer to the pool (which has room for all of them).
fn give_back(pool: &mut KVec<KBox<Buffer>>, buf: KBox<Buffer>) {
    // Cannot fail: the pool's capacity is the number of buffers.
    let _ = pool.push_within_capacity(buf);
}

/// Takes a PFN buffer from `pool`, fills it with `fill` and adds it to
/// `queue` (without a kick). On failure the buffer goes back to the pool.
fn queue_pfns(
    pool: &mut KVec<KBox<Buffer>>,
    device: &mut BoundGuard<'_>,
    queue: QueueId,
    fill: impl FnOnce(&mut Buffer) -> Result,
) -> Result {
    let mut buf = pool.pop().ok_or(EIO)?;
    buf.clear();
    if let Err(e) = fill(&mut buf) {
        give_back(pool, buf);
        return Err(e);
    }
    device.add_outbuf(queue, buf).map_err(|(e, buf)| {
        give_back(pool, buf);
        e
    })
}

/// Sends one buffer filled by `fill` on `queue` and waits until the host has
/// processed it.
fn tell_host(
    pool: &mut KVec<KBox<Buffer>>,
    device: &mut BoundGuard<'_>,
    queue: QueueId,
    fill: impl FnOnce(&mut Buffer) -> Result,
) -> Result {
    queue_pfns(pool, device, queue, fill)?;
    device.kick(queue)?;
    let buf = device.wait_buf(queue)?;
    give_back(pool, buf);
    Ok(())
}

/// Appends the 4 KiB frame numbers of one guest page, starting at `first`.
fn push_page_pfns(buf: &mut Buffer, first: u64) -> Result {
    for pfn in first..first + PFNS_PER_PAGE as u64 {
        // The protocol has 32-bit PFNs: 16 TiB of guest memory.
        buf.push_le32(u32::try_from(pfn).map_err(|_| ERANGE)?)?;
    }
    Ok(())
}

/// Appends the frame numbers of every page of `list`.
fn push_list_pfns(buf: &mut Buffer, list: &PageList) -> Result {
    let mut result = Ok(());
    list.for_each_pfn(|first| result = result.and_then(|()| push_page_pfns(buf, first)));
    result
}

impl Migrate for State {
    /// Balloon page migration, C's `virtballoon_migratepage()`: inflate the
    /// new page, then deflate the old one.
    ///
    /// Once the host knows the new page is ballooned, the migration must
    /// go through, even if telling it about the old page fails: an error
    /// would make compaction free the new page, which the host may have
    /// discarded already, and keep the old one. The old page is then the
    /// guest's without the host having been told, which is what a reset
    /// does to every page, and what the C driver does here too.
    fn migrate(&mut self, new_pfn: u64, old_pfn: u64) -> Result {
        let mut device = self.binding.lock()?;
        tell_host(&mut self.pfns, &mut device, INFLATE_QUEUE, |buf| {
            push_page_pfns(buf, new_pfn)
        })?;
        if let Err(e) = tell_host(&mut self.pfns, &mut device, DEFLATE_QUEUE, |buf| {
            push_page_pfns(buf, old_pfn)
        }) {
            pr_warn!(
                "migration: could not tell the host about the old page: {:?}\n",
                e
            );
        }
        Counters::count(&self.counters.migrated, PFNS_PER_PAGE);
        Ok(())
    }
}

/// Pages allocated for the next inflate step, before the balloon's lock is
/// taken (see the lock order).
struct Inflating {
    pages: PageList,
    /// Whether the last step could not allocate (logged once per stall).
    out_of_puff: bool,
}

/// Free page hinting: during live migration the host asks, with a fresh
/// command id, which guest memory is free, so it need not send it.
#[pin_data]
struct Hints {
    /// Blocks the host has handed back, kept until it says DONE (or the
    /// shrinker wants them). Blocks still in the queue are the queue's.
    #[pin]
    blocks: Mutex<PageList>,
    /// Pages in `blocks`, for the shrinker's count (which must not wait).
    held_pages: Atomic<usize>,
    /// Pages in blocks the queue holds: the host may hand them back
    /// before the hint work next looks, so the shrinker counts them too.
    queued_pages: Atomic<usize>,
    /// The command id being (or last) answered. Only the hint work uses it.
    active: Atomic<u32>,
    /// The host's command id as last read from config space...
    received: Atomic<u32>,
    /// ...and whether the config changed since, so it must be read again.
    /// Reading it only then (as C does) costs one config read per change,
    /// not one per block.
    stale: Atomic<bool>,
}

impl Hints {
    fn new() -> Result<impl PinInit<Self>> {
        let blocks = PageList::with_order(virtio::HINT_BLOCK_ORDER)?;
        Ok(pin_init!(Self {
            blocks <- new_mutex!(blocks),
            held_pages: Atomic::new(0),
            queued_pages: Atomic::new(0),
            active: Atomic::new(uapi::CMD_ID_STOP),
            received: Atomic::new(uapi::CMD_ID_STOP),
            stale: Atomic::new(true),
        }))
    }

    /// The host's current command id: read from config space only if it
    /// changed since the last read.
    fn command(&self, binding: &Binding) -> Result<u32> {
        if self.stale.load(Relaxed) {
            // Clear first: a change that comes while reading marks it again.
            self.stale.store(false, Relaxed);
            let cmd = binding.lock()?.read_config_le32(uapi::CONFIG_HINT_CMD_ID)?;
            self.received.store(cmd, Relaxed);
        }
        Ok(self.received.load(Relaxed))
    }

    /// Hands `block` to the host on `queue`; on failure it is freed.
    fn send(&self, device: &mut BoundGuard<'_>, queue: QueueId, block: Page) -> Result {
        let pages = block.bytes() >> kernel::page::PAGE_SHIFT;
        device.add_hint_block(queue, block).map_err(|(e, _)| e)?;
        self.queued_pages.add(pages, Relaxed);
        Ok(())
    }

    /// Keeps the blocks the host has handed back on `queue`.
    fn collect(&self, device: &mut BoundGuard<'_>, queue: QueueId) {
        while let Some(used) = device.take_used(queue) {
            if let Used::Block(block) = used {
                let pages = block.bytes() >> kernel::page::PAGE_SHIFT;
                self.queued_pages.fetch_sub(pages, Relaxed);
                self.blocks.lock().push(block);
                self.held_pages.add(pages, Relaxed);
            }
        }
    }

    /// Frees every block handed back. Blocks still in the queue stay the
    /// queue's (they come back later, or are freed when it is torn down).
    fn free_blocks(&self) {
        let mut blocks = self.blocks.lock();
        blocks.clear();
        self.held_pages.store(0, Relaxed);
    }

    /// Forgets the command: after a reset, the next one starts afresh (the
    /// reset gave the queue's blocks back to the allocator).
    fn reset(&self) {
        self.free_blocks();
        self.queued_pages.store(0, Relaxed);
        self.active.store(uapi::CMD_ID_STOP, Relaxed);
        self.stale.store(true, Relaxed);
    }
}

/// One balloon device.
#[pin_data]
struct Balloon {
    /// First field: dropped first, while everything it may call back into
    /// is still there.
    #[pin]
    pages: BalloonPages<State>,
    #[pin]
    inflating: Mutex<Inflating>,
    binding: Arc<Binding>,
    queues: Queues,
    /// What the balloon has done, for debugfs (shared with [`State`]).
    counters: Arc<Counters>,
    /// PFN buffers a step keeps in flight: [`BUFFERS_IN_FLIGHT`], or fewer
    /// if the device's rings are smaller.
    depth: usize,
    /// Guest pages in one PFN buffer (see [`pfns_per_buffer`]).
    pages_per_buffer: usize,
    /// Set on remove and shutdown: no more work may start.
    stopping: Atomic<bool>,
    /// The resize work's next pause if it cannot move (milliseconds).
    backoff_ms: Atomic<u32>,
    /// Resize requests so far (config changes, `ready`): a run lets the
    /// system sleep again only if none came since it read the target.
    resize_requests: Atomic<u32>,
    #[pin]
    resize_work: Work<Balloon, 0>,
    #[pin]
    stats_work: Work<Balloon, 1>,
    #[pin]
    hint_work: Work<Balloon, 2>,
    #[pin]
    hints: Hints,
    /// The stats buffer between two host requests.
    #[pin]
    stats: Mutex<Option<KBox<Buffer>>>,
    /// Registrations that hold a reference on the balloon: dropped in
    /// `remove` and `shutdown`, which breaks the cycle.
    #[pin]
    hooks: Mutex<Hooks>,
}

#[derive(Default)]
struct Hooks {
    /// The debugfs directory (it reads the balloon's figures).
    view: Option<Pin<KBox<debugfs::View>>>,
    oom: Option<Pin<KBox<OomNotifier<Balloon>>>>,
    #[cfg(CONFIG_PAGE_REPORTING)]
    reporting: Option<Pin<KBox<PageReporting<Balloon>>>>,
    shrinker: Option<Shrinker<Balloon>>,
}

impl_has_work! {
    impl HasWork<Self, 0> for Balloon { self.resize_work }
    impl HasWork<Self, 1> for Balloon { self.stats_work }
    impl HasWork<Self, 2> for Balloon { self.hint_work }
}

impl WorkItem<2> for Balloon {
    type Pointer = Arc<Balloon>;

    /// The host's hint command id changed.
    fn run(this: Arc<Balloon>) {
        this.run_once("free page hinting", Self::answer_hint_command);
    }
}

impl WorkItem<0> for Balloon {
    type Pointer = Arc<Balloon>;

    fn run(this: Arc<Balloon>) {
        // Requests up to here are served by this run (it reads the target
        // after this).
        let served = this.resize_requests.load(Relaxed);
        for _ in 0..STEPS_PER_RUN {
            if this.stopping.load(Relaxed) {
                this.binding.relax();
                return;
            }
            match this.step() {
                Ok(Step::Done) => {
                    this.settle(served);
                    return;
                }
                Ok(Step::Moved(_)) => this.backoff_ms.store(BACKOFF_MIN_MS, Relaxed),
                Ok(Step::Stalled) => {
                    Counters::count(&this.counters.stalls, 1);
                    this.back_off();
                    break;
                }
                Err(ENODEV) => {
                    // The device is gone: nothing more to wait for.
                    this.binding.relax();
                    return;
                }
                Err(e) => {
                    pr_err!("resize failed: {:?}\n", e);
                    this.back_off();
                    break;
                }
            }
        }
        Balloon::requeue_resize(&this);
    }
}

impl WorkItem<1> for Balloon {
    type Pointer = Arc<Balloon>;

    /// The host took the stats buffer: answer with fresh figures.
    fn run(this: Arc<Balloon>) {
        this.run_once("sending stats", Self::send_stats);
    }
}

impl Balloon {
    /// Pauses the resize work after a step that moved nothing, and doubles
    /// the next pause (see [`BACKOFF_MIN_MS`]).
    fn back_off(&self) {
        let ms = self.backoff_ms.load(Relaxed);
        self.backoff_ms.store(next_backoff_ms(ms), Relaxed);
        fsleep(Delta::from_millis(ms.into()));
    }

    /// Runs one piece of deferred work unless the device is going away; a
    /// device that went away meanwhile (`ENODEV`) is not an error.
    fn run_once(&self, what: &str, work: impl FnOnce(&Self) -> Result) {
        if self.stopping.load(Relaxed) {
            return;
        }
        match work(self) {
            Ok(()) | Err(ENODEV) => {}
            Err(e) => pr_err!("{} failed: {:?}\n", what, e),
        }
    }

    /// The host asked for a new size (or the device became ready): keep
    /// the system awake (no autosleep) until the balloon has reached it, as
    /// the C driver does, and queue a resize. Callable from atomic context.
    fn request_resize(this: &Arc<Self>) {
        if this.stopping.load(Relaxed) {
            return;
        }
        // Counted before staying awake: see `settle`.
        this.resize_requests.fetch_add(1, Full);
        this.binding.stay_awake();
        // Already queued is fine: that run will read the new target.
        let _ = workqueue::system_freezable().enqueue::<_, 0>(this.clone());
    }

    /// Queues the resize work again to go on where a run stopped, or lets
    /// the system sleep if the device is going away.
    fn requeue_resize(this: &Arc<Self>) {
        if this.stopping.load(Relaxed) {
            this.binding.relax();
            return;
        }
        let _ = workqueue::system_freezable().enqueue::<_, 0>(this.clone());
    }

    /// The balloon reached the target a run read after `served` requests:
    /// let the system sleep again, unless a request came since. Its stay
    /// awake may have come before this relax (and been undone by it), so
    /// stay awake again for it; if it came after, the count read here
    /// misses it but its own stay awake comes after the relax.
    fn settle(self: &Arc<Self>, served: u32) {
        self.binding.relax();
        // A fully ordered read, after the relax.
        if self.resize_requests.fetch_add(0, Full) != served {
            self.binding.stay_awake();
            Self::requeue_resize(self);
        }
    }

    /// The host's target, in 4 KiB pages, rounded up to whole guest pages so
    /// the balloon never oscillates around a target it cannot hit.
    fn target(&self) -> Result<u32> {
        let target = self
            .binding
            .lock()?
            .read_config_le32(uapi::CONFIG_NUM_PAGES)?;
        self.counters.target.store(target, Relaxed);
        Ok(virtio::round_target(target, virtio::PAGE_SHIFT))
    }

    /// Moves the balloon one batch towards the target.
    fn step(&self) -> Result<Step> {
        let target = self.target()?;
        let current = self.pages.lock().num_pages;
        let step = if target > current {
            self.inflate((target - current) as usize)?
        } else if target < current {
            self.deflate((current - target) as usize)?
        } else {
            Step::Done
        };
        self.report_actual()?;
        Ok(step)
    }

    /// The most 4 KiB frames one step moves: its buffers, all full.
    fn step_pfns(&self) -> usize {
        self.depth * self.pages_per_buffer * PFNS_PER_PAGE
    }

    /// Tells the host how large the balloon is.
    fn report_actual(&self) -> Result {
        let actual = self.pages.lock().num_pages;
        self.binding
            .lock()?
            .write_config_le32(uapi::CONFIG_ACTUAL, actual)?;
        self.counters.actual.store(actual, Relaxed);
        Ok(())
    }

    /// Adds up to [`BUFFERS_IN_FLIGHT`] buffers' worth of the `wanted` 4 KiB
    /// pages.
    ///
    /// Unlike the C driver, it stops short of the guest's last
    /// `min_available_mib`: a target larger than the guest can give would
    /// otherwise leave nothing for anyone else and end in the OOM killer.
    /// It takes free huge blocks first (whole host huge pages, one
    /// allocation for 512 pages) and single pages once they run out.
    ///
    /// The pages are allocated before the balloon's lock is taken, as in C:
    /// the allocation may reclaim and compact, and both may call back into
    /// the driver (the OOM notifier deflates, compaction migrates balloon
    /// pages), which must not wait for an allocation to finish.
    fn inflate(&self, wanted: usize) -> Result<Step> {
        let spare = guest_available_pages().saturating_sub(reserve_pages()) * PFNS_PER_PAGE;
        let wanted = wanted.min(spare).min(self.step_pfns());
        let pages = virtio::whole_pages(wanted, virtio::PAGE_SHIFT);
        let mut guard = self.inflating.lock();
        let new = &mut *guard;
        let mut huge = pages >= HUGE_BLOCK_PAGES;
        let (got, blocks) = new.pages.alloc_balloon_pages(pages, &mut huge);
        if got < pages {
            Counters::count(&self.counters.alloc_failures, 1);
        }
        if new.pages.is_empty() {
            if !new.out_of_puff {
                pr_info!(
                    "out of puff: no page to spare (keeping {} MiB available), backing off\n",
                    *module_parameters::min_available_mib.value()
                );
                new.out_of_puff = true;
            }
            return Ok(Step::Stalled);
        }
        new.out_of_puff = false;

        let mut state = self.pages.lock();
        let state = &mut *state;
        let mut in_flight = 0;
        let mut sent = Ok(());
        while !new.pages.is_empty() && in_flight < self.depth {
            // Blocks come first on the list, so each buffer holds whole
            // blocks or halves of one.
            new.pages.move_to(&mut state.batch, self.pages_per_buffer);
            in_flight += 1;
            // The host starts on each huge block's worth while the next
            // buffers are filled; never on half a block (see
            // `pfns_per_buffer`).
            let kick =
                new.pages.is_empty() || (in_flight * self.pages_per_buffer) % HUGE_BLOCK_PAGES == 0;
            sent = state.send_batch(INFLATE_QUEUE, kick);
            if sent.is_err() {
                in_flight -= 1;
                break;
            }
        }
        // Pages not sent (only after an error) go back.
        state.batch.clear();
        new.pages.clear();
        drop(guard);
        if let Err(e) = state.wait_sent(INFLATE_QUEUE, in_flight) {
            // The device broke: it cannot use the pages any more, so they
            // go back to the guest.
            state.sent.clear();
            return Err(e);
        }
        let moved = state.sent.len() * PFNS_PER_PAGE;
        // Every buffer sent was acknowledged: those pages are the host's.
        while !state.sent.is_empty() {
            state.sent.move_to(&mut state.batch, LIST_BATCH_PAGES);
            self.pages.enqueue(&mut state.batch);
        }
        state.num_pages += moved as u32;
        Counters::count(&self.counters.inflated, moved);
        if sent.is_ok() {
            // Blocks go first: all of them went in whole.
            Counters::count(&self.counters.blocks_inflated, blocks);
        }
        if moved == 0 {
            sent?;
            return Ok(Step::Stalled);
        }
        Ok(Step::Moved(moved))
    }

    /// Gives back up to [`BUFFERS_IN_FLIGHT`] buffers' worth of the `wanted`
    /// 4 KiB pages.
    ///
    /// With VIRTIO_BALLOON_F_MUST_TELL_HOST the pages are freed once the
    /// host has acknowledged them, as in C. Without it (QEMU does not offer
    /// it) the spec lets the guest reuse them right away, so they are freed
    /// while the host works on the buffers.
    fn deflate(&self, wanted: usize) -> Result<Step> {
        let mut state = self.pages.lock();
        let state = &mut *state;
        let wanted = wanted.min(self.step_pfns()).min(state.num_pages as usize);
        let pages = virtio::whole_pages(wanted, virtio::PAGE_SHIFT);
        while state.unsent.len() < pages {
            let chunk = (pages - state.unsent.len()).min(LIST_BATCH_PAGES);
            if self.pages.dequeue(&mut state.unsent, chunk) == 0 {
                break;
            }
        }
        if state.unsent.is_empty() {
            return Ok(Step::Stalled);
        }
        // From here on the pages are out of the balloon, whatever happens.
        let moved = state.unsent.len() * PFNS_PER_PAGE;
        state.num_pages -= moved as u32;
        let mut in_flight = 0;
        let mut sent = Ok(());
        while !state.unsent.is_empty() && in_flight < self.depth {
            state
                .unsent
                .move_to(&mut state.batch, self.pages_per_buffer);
            sent = state.send_batch(DEFLATE_QUEUE, false);
            if sent.is_err() {
                break;
            }
            in_flight += 1;
        }
        let mut blocks = 0;
        if !state.binding.has_feature(uapi::F_MUST_TELL_HOST) {
            blocks += state.sent.clear();
        }
        let acked = state.wait_sent(DEFLATE_QUEUE, in_flight);
        // A host that is gone cannot object: the pages are freed either way.
        blocks += state.sent.clear() + state.batch.clear() + state.unsent.clear();
        Counters::count(&self.counters.deflated, moved);
        Counters::count(&self.counters.blocks_deflated, blocks);
        sent.and(acked).map(|()| Step::Moved(moved))
    }

    /// Waits until no work item is queued or running (with `stopping` set,
    /// none queues itself again).
    fn flush_works(&self) {
        while virtio::flush_work(&self.resize_work)
            | virtio::flush_work(&self.stats_work)
            | virtio::flush_work(&self.hint_work)
        {}
    }

    /// Empties the balloon: used on remove, with work stopped.
    fn deflate_all(&self) {
        loop {
            let left = self.pages.lock().num_pages as usize;
            if left == 0 {
                break;
            }
            match self.deflate(left) {
                Ok(Step::Stalled) => fsleep(Delta::from_millis(10)),
                Ok(_) => {}
                Err(e) => {
                    pr_err!("deflate on remove failed: {:?}\n", e);
                    break;
                }
            }
        }
        let _ = self.report_actual();
    }

    /// Stops everything that may use the device: the hooks first (their
    /// callbacks may be waiting for the host, which still answers), then
    /// the work items, none of which queues itself again afterwards.
    fn quiesce(&self) {
        self.unregister_hooks();
        self.stopping.store(true, Relaxed);
        self.flush_works();
    }

    /// Refills the stats buffer the host handed back, and queues it again.
    fn send_stats(&self) -> Result {
        let Some(queue) = self.queues.stats else {
            return Ok(());
        };
        // Read before taking the device lock: reading the event counters
        // takes the CPU hotplug lock, which memory offlining holds while it
        // migrates balloon pages, which takes the device lock.
        let counters = virtio::memory_counters();
        let mut device = self.binding.lock()?;
        let mut spare = self.stats.lock();
        // The host returns the buffer to ask for stats; before the first
        // request the spare one is used.
        let Some(mut buf) = device.get_buf(queue).or_else(|| spare.take()) else {
            return Ok(());
        };
        buf.clear();
        fill_stats(&mut buf, &counters)?;
        device.add_outbuf(queue, buf).map_err(|(e, buf)| {
            *spare = Some(buf);
            e
        })?;
        device.kick(queue)
    }

    /// Answers the host's free page hint command: hand it every free block
    /// while the command stands, then STOP; on DONE give the blocks back.
    fn answer_hint_command(&self) -> Result {
        let Some(queue) = self.queues.hint else {
            return Ok(());
        };
        let hints = &self.hints;
        let cmd = hints.command(&self.binding)?;
        match hint_action(cmd, hints.active.load(Relaxed)) {
            HintAction::Wait => return Ok(()),
            HintAction::Answer => {}
            HintAction::GiveBack => {
                if let Ok(mut device) = self.binding.lock() {
                    hints.collect(&mut device, queue);
                }
                let blocks = hints.blocks.lock().len();
                hints.free_blocks();
                // DONE stands until the next migration and every config change
                // reads it again: say it once.
                if hints.active.xchg(cmd, Relaxed) != cmd || blocks != 0 {
                    pr_info!("free page hint done: {} blocks back\n", blocks);
                }
                return Ok(());
            }
        }
        hints.active.store(cmd, Relaxed);
        self.send_hint_cmd(queue, cmd)?;
        let run = self.send_free_blocks(queue, cmd);
        // The spec asks for STOP at the end of a run, however it ended.
        let stop = self.send_hint_cmd(queue, uapi::CMD_ID_STOP);
        let sent = run?;
        stop?;
        pr_info!("free page hint {:#x}: {} blocks sent\n", cmd, sent);
        Ok(())
    }

    /// Hands the host free blocks for command `cmd` until they run out, a
    /// new command comes, or DONE; returns how many it sent.
    ///
    /// Not on STOP: QEMU's config space reads STOP while it accepts hints
    /// for `cmd`, and two config interrupts close together (QEMU sends STOP
    /// and the new id back to back) make us read it then. A host ignores
    /// hints for a stopped command, so going on costs only the blocks,
    /// which the shrinker and DONE give back.
    fn send_free_blocks(&self, queue: QueueId, cmd: u32) -> Result<usize> {
        let hints = &self.hints;
        let mut sent = 0;
        while !self.stopping.load(Relaxed) && still_hinting(hints.command(&self.binding)?, cmd) {
            let room = {
                let mut device = self.binding.lock()?;
                hints.collect(&mut device, queue);
                // One slot stays free for the stop command.
                device.free_slots(queue)? > 1
            };
            if !room {
                // Wait for room before taking a block: allocating 4 MiB only
                // to free it again (as the C driver does when the ring is
                // full) is wasted work.
                fsleep(Delta::from_millis(1));
                continue;
            }
            // Only what is free right now, without reclaim.
            let Some(block) = Page::alloc_hint_block() else {
                break;
            };
            let mut device = self.binding.lock()?;
            hints.send(&mut device, queue, block)?;
            device.kick(queue)?;
            Counters::count(&self.counters.hinted_blocks, 1);
            sent += 1;
        }
        Ok(sent)
    }

    /// Sends a hint command id (start or stop) on the hint queue.
    fn send_hint_cmd(&self, queue: QueueId, cmd: u32) -> Result {
        let mut buf = Buffer::new(core::mem::size_of::<u32>())?;
        buf.push_le32(cmd)?;
        let mut device = self.binding.lock()?;
        self.hints.collect(&mut device, queue);
        device.add_outbuf(queue, buf).map_err(|(e, _)| e)?;
        device.kick(queue)
    }

    /// Tells the host which value free pages hold, if it was negotiated.
    /// The device forgets it on reset, and the spec wants it set before
    /// DRIVER_OK: at probe and at every restore.
    fn write_poison_val(binding: &Binding) -> Result {
        if !binding.has_feature(uapi::F_PAGE_POISON) {
            return Ok(());
        }
        // What free pages hold, in every byte of the value.
        let fill = virtio::free_page_fill().unwrap_or(0);
        binding
            .lock()?
            .write_config_le32(uapi::CONFIG_POISON_VAL, u32::from_ne_bytes([fill; 4]))
    }

    /// Registers the debugfs view, the OOM notifier, the hint shrinker and
    /// page reporting, as negotiated.
    fn register_hooks(this: &Arc<Self>, dev: &Device, debugfs: &Dir) -> Result {
        let mut hooks = this.hooks.lock();
        hooks.view = Some(debugfs::view(debugfs, dev.as_dev().name(), this.clone())?);
        if this.binding.has_feature(uapi::F_DEFLATE_ON_OOM) {
            hooks.oom = Some(OomNotifier::register(this.clone(), OOM_NOTIFY_PRIORITY)?);
        }
        if this.queues.hint.is_some() {
            hooks.shrinker = Some(Shrinker::register(this.clone(), c"rust-balloon")?);
        }
        #[cfg(CONFIG_PAGE_REPORTING)]
        if let Some(queue) = this.queues.reporting {
            let capacity = this.binding.lock()?.vring_size(queue)?;
            hooks.reporting = Some(PageReporting::register(
                this.clone(),
                capacity,
                REPORTING_ORDER,
            )?);
        }
        Ok(())
    }

    /// Unregisters them; waits for a notification or report in progress.
    fn unregister_hooks(&self) {
        let hooks = core::mem::take(&mut *self.hooks.lock());
        drop(hooks);
    }
}

impl OomHandler for Balloon {
    /// Deflate on OOM: give back a batch (telling the host first) instead of
    /// letting the OOM killer take a process.
    fn release_on_oom(&self) -> usize {
        let released = match self.deflate(OOM_RELEASE_PFNS) {
            Ok(Step::Moved(pfns)) => pfns / PFNS_PER_PAGE,
            _ => 0,
        };
        let _ = self.report_actual();
        Counters::count(&self.counters.oom_released, released * PFNS_PER_PAGE);
        if released > 0 {
            pr_info!("out of memory: released {} pages\n", released);
        }
        released
    }
}

impl ShrinkHandler for Balloon {
    fn count(&self) -> usize {
        self.hints.held_pages.load(Relaxed) + self.hints.queued_pages.load(Relaxed)
    }

    /// Hinted blocks may be reused at any time (the host only skips sending
    /// them if they stay untouched), so give back those the host has
    /// handed back under pressure. Blocks still in the queue are the
    /// device's until it hands them back.
    fn scan(&self, pages: usize) -> Option<usize> {
        // Never wait in reclaim: whoever holds a lock is quick, so ask
        // reclaim to move on rather than to come back at once.
        if let (Some(queue), Some(Ok(mut device))) = (self.queues.hint, self.binding.try_lock()) {
            self.hints.collect(&mut device, queue);
        }
        let mut blocks = self.hints.blocks.try_lock()?;
        let mut freed = 0;
        while freed < pages {
            let Some(block) = blocks.pop() else {
                break;
            };
            freed += block.bytes() >> kernel::page::PAGE_SHIFT;
        }
        self.hints.held_pages.fetch_sub(freed, Relaxed);
        Some(freed)
    }
}

#[cfg(CONFIG_PAGE_REPORTING)]
impl ReportHandler for Balloon {
    fn report(&self, pages: &ReportedPages) -> Result {
        let queue = self.queues.reporting.ok_or(EINVAL)?;
        self.binding.lock()?.report_pages(queue, pages)?;
        Counters::count(&self.counters.reported_blocks, pages.blocks());
        Ok(())
    }
}

/// What the hint work does about the host's command id `cmd`, `active`
/// being the one it last answered.
#[derive(Debug, PartialEq)]
enum HintAction {
    /// DONE: the host has what it needs; the blocks go back to the guest.
    GiveBack,
    /// A new id: hand the host free blocks for it.
    Answer,
    /// STOP, or the id being answered already: nothing new.
    Wait,
}

fn hint_action(cmd: u32, active: u32) -> HintAction {
    match cmd {
        uapi::CMD_ID_DONE => HintAction::GiveBack,
        uapi::CMD_ID_STOP => HintAction::Wait,
        cmd if cmd == active => HintAction::Wait,
        _ => HintAction::Answer,
    }
}

/// Whether blocks still go to the host for `cmd` while config space reads
/// `current` (see [`Balloon::send_free_blocks`] for why STOP does not end
/// it).
fn still_hinting(current: u32, cmd: u32) -> bool {
    current == cmd || current == uapi::CMD_ID_STOP
}

/// Writes one statistic: a little-endian `u16` tag and `u64` value (the
/// packed `struct virtio_balloon_stat`).
fn push_stat(buf: &mut Buffer, tag: u16, value: u64) -> Result {
    buf.push_le16(tag)?;
    buf.push_le64(value)
}

/// The statistics, with the same tags in the same order as the C driver.
fn fill_stats(buf: &mut Buffer, c: &MemoryCounters) -> Result {
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

/// Bytes of a stats buffer holding every tag.
const STATS_BYTES: usize = stat::NR * (2 + 8);

/// Guest pages inflation leaves to the guest (`min_available_mib`).
fn reserve_pages() -> usize {
    let mib = *module_parameters::min_available_mib.value() as usize;
    mib << (20 - kernel::page::PAGE_SHIFT)
}

/// Refuses module parameters the driver cannot honour, at load.
fn check_parameters() -> Result {
    let pfns = *module_parameters::buffer_pfns.value() as usize;
    if ![0, uapi::C_PFNS_PER_BUFFER, BLOCK_PFNS].contains(&pfns) {
        pr_err!(
            "buffer_pfns={}: must be 0 (by transport), {} or {}\n",
            pfns,
            uapi::C_PFNS_PER_BUFFER,
            BLOCK_PFNS
        );
        return Err(EINVAL);
    }
    Ok(())
}

impl virtio::Driver for Balloon {
    const NAME: &'static CStr = c"rust_balloon";
    const DEVICE_ID: u32 = uapi::DEVICE_ID;
    const FEATURES: &'static [u32] = &[
        uapi::F_MUST_TELL_HOST,
        uapi::F_STATS_VQ,
        uapi::F_DEFLATE_ON_OOM,
        uapi::F_FREE_PAGE_HINT,
        uapi::F_PAGE_POISON,
        uapi::F_REPORTING,
    ];

    /// As the C driver: tell the host about poisoned (or zeroed) free pages
    /// or do not report them at all, and keep page reporting free of memory
    /// allocation (no indirect descriptors). No page reporting either in a
    /// kernel built without it (see `Kbuild`).
    fn validate(dev: &Device) -> Result {
        if !cfg!(CONFIG_PAGE_REPORTING) {
            dev.clear_feature(uapi::F_REPORTING);
        }
        if virtio::free_page_fill().is_none() {
            dev.clear_feature(uapi::F_PAGE_POISON);
        } else if !dev.has_feature(uapi::F_PAGE_POISON) {
            dev.clear_feature(uapi::F_REPORTING);
        }
        dev.clear_feature(uapi::F_RING_INDIRECT_DESC);
        dev.clear_feature(uapi::F_ACCESS_PLATFORM);
        Ok(())
    }

    fn probe(dev: &Device, binding: Arc<Binding>, debugfs: &Dir) -> Result<Arc<Self>> {
        let queues = Queues::find(&binding)?;
        let deflate_on_oom = binding.has_feature(uapi::F_DEFLATE_ON_OOM);
        let depth = {
            let device = binding.lock()?;
            let ring = device
                .vring_size(INFLATE_QUEUE)?
                .min(device.vring_size(DEFLATE_QUEUE)?);
            BUFFERS_IN_FLIGHT.min(ring as usize)
        };
        if depth == 0 {
            return Err(ENOSPC);
        }
        let transport = dev.transport();
        let pfns_per_buffer = pfns_per_buffer(transport);
        let counters = Arc::new(Counters::new(), GFP_KERNEL)?;
        let state = State {
            binding: binding.clone(),
            counters: counters.clone(),
            num_pages: 0,
            pfns: {
                let mut pool = KVec::with_capacity(depth, GFP_KERNEL)?;
                for _ in 0..depth {
                    give_back(
                        &mut pool,
                        Buffer::new(pfns_per_buffer * core::mem::size_of::<u32>())?,
                    );
                }
                pool
            },
            unsent: PageList::new()?,
            batch: PageList::new()?,
            sent: PageList::new()?,
        };
        let inflating = Inflating {
            pages: PageList::new()?,
            out_of_puff: false,
        };
        let stats = match queues.stats {
            Some(_) => Some(Buffer::new(STATS_BYTES)?),
            None => None,
        };
        Self::write_poison_val(&binding)?;
        if let Some(queue) = queues.hint {
            // One entry always stays free for the stop command.
            if binding.lock()?.vring_size(queue)? < 2 {
                return Err(ENOSPC);
            }
        }
        let hints = Hints::new()?;
        // The balloon cannot wake the system, but it handles the wakeup
        // events its transport passes up.
        binding.set_wakeup_capable();
        let balloon = Arc::pin_init(
            pin_init!(Balloon {
                // With deflate-on-OOM the guest may take ballooned memory
                // back at any time, so it stays in MemTotal (as in C).
                pages <- BalloonPages::new(!deflate_on_oom, new_mutex!(state)),
                inflating <- new_mutex!(inflating),
                binding,
                queues,
                counters,
                depth,
                pages_per_buffer: virtio::whole_pages(pfns_per_buffer, virtio::PAGE_SHIFT),
                stopping: Atomic::new(false),
                backoff_ms: Atomic::new(BACKOFF_MIN_MS),
                resize_requests: Atomic::new(0),
                resize_work <- new_work!("Balloon::resize_work"),
                stats_work <- new_work!("Balloon::stats_work"),
                hint_work <- new_work!("Balloon::hint_work"),
                hints <- hints,
                stats <- new_mutex!(stats),
                hooks <- new_mutex!(Hooks::default()),
            }),
            GFP_KERNEL,
        )?;
        // Prime the stats queue with one buffer, so the host can ask.
        balloon.send_stats()?;
        if let Err(e) = Self::register_hooks(&balloon, dev, debugfs) {
            balloon.unregister_hooks();
            return Err(e);
        }
        dev_info!(
            dev.as_dev(),
            "rust_balloon bound: stats {}, deflate-on-oom {}, hint {}, reporting {}, poison {}, {:?} with {} PFNs per buffer\n",
            balloon.queues.stats.is_some(),
            deflate_on_oom,
            balloon.queues.hint.is_some(),
            balloon.queues.reporting.is_some(),
            dev.has_feature(uapi::F_PAGE_POISON),
            transport,
            pfns_per_buffer,
        );
        Ok(balloon)
    }

    fn ready(this: &Arc<Self>) {
        Self::request_resize(this);
    }

    fn config_changed(this: &Arc<Self>) {
        Self::request_resize(this);
        if this.queues.hint.is_some() && !this.stopping.load(Relaxed) {
            this.hints.stale.store(true, Relaxed);
            let _ = workqueue::system_freezable().enqueue::<_, 2>(this.clone());
        }
    }

    fn queue_event(this: &Arc<Self>, queue: QueueId) {
        if Some(queue) == this.queues.stats && !this.stopping.load(Relaxed) {
            let _ = workqueue::system_freezable().enqueue::<_, 1>(this.clone());
        }
    }

    /// Suspend: as the C driver, give every page back (the host may not
    /// keep its side of the balloon across the suspend). Nothing here
    /// allocates: a failure after the reset below would leave the device
    /// dead while the system resumes.
    fn freeze(this: &Arc<Self>, dev: &Device) -> Result {
        let pages = this.pages.lock().num_pages;
        this.deflate_all();
        // Hinted blocks are free once the device is reset.
        this.binding.teardown();
        this.hints.reset();
        this.binding.relax();
        dev_info!(dev.as_dev(), "suspend: {} pages returned\n", pages);
        Ok(())
    }

    /// Resume: the same queues again, the poison value again (the reset
    /// cleared it), and a fresh stats buffer (the old one went with the
    /// reset); `ready` then moves back towards the target.
    fn restore(this: &Arc<Self>, _dev: &Device) -> Result {
        let stats = match this.queues.stats {
            Some(_) => Some(Buffer::new(STATS_BYTES)?),
            None => None,
        };
        // Same features, same queues; anything else would be a device bug.
        if Queues::find(&this.binding)? != this.queues {
            return Err(EINVAL);
        }
        Self::write_poison_val(&this.binding)?;
        if stats.is_some() {
            *this.stats.lock() = stats;
            this.send_stats()?;
        }
        Ok(())
    }

    fn remove(this: &Arc<Self>, dev: &Device) {
        this.quiesce();
        let pages = this.pages.lock().num_pages;
        this.deflate_all();
        // Reset the device now (the bus would right after): once no queue
        // interrupt can come, no stats work can be queued either, and a
        // last flush leaves nothing behind to run after unload.
        this.binding.teardown();
        this.flush_works();
        this.hints.reset();
        this.binding.relax();
        dev_info!(
            dev.as_dev(),
            "rust_balloon removed, {} pages returned\n",
            pages
        );
    }

    /// Power off, reboot or kexec: stop every user of the device while the
    /// host still answers (a step waiting for it would otherwise wait for
    /// ever once the core resets the device, holding the locks the OOM
    /// notifier takes). The pages stay ballooned: the host keeps its side
    /// until its reset, and the memory is the next kernel's anyway.
    fn shutdown(this: &Arc<Self>, dev: &Device) {
        this.quiesce();
        this.binding.relax();
        dev_info!(
            dev.as_dev(),
            "shutdown with {} pages ballooned\n",
            this.pages.lock().num_pages
        );
    }
}

struct BalloonModule {
    _registration: Pin<KBox<virtio::Registration<Balloon>>>,
}

impl kernel::Module for BalloonModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        check_parameters()?;
        let registration = KBox::pin_init(virtio::Registration::new(module), GFP_KERNEL)?;
        Ok(Self {
            _registration: registration,
        })
    }
}

/// The driver's pure logic, run by KUnit in a kernel with `CONFIG_KUNIT`:
/// `insmod` registers the suite and
/// `/sys/kernel/debug/kunit/rust_balloon/run` runs it.
#[kunit_tests(rust_balloon)]
mod tests {
    use super::*;

    /// Frames per guest page of this kernel (1 with 4 KiB pages).
    const PER_PAGE: u32 = PFNS_PER_PAGE as u32;

    #[test]
    fn target_rounds_up_to_whole_pages() {
        for frames in [0, 1, PER_PAGE - 1, PER_PAGE, 1001, 262_143] {
            let rounded = virtio::round_target(frames, virtio::PAGE_SHIFT);
            assert!(rounded >= frames);
            assert!(rounded - frames < PER_PAGE);
            assert!(rounded.is_multiple_of(PER_PAGE));
        }
        // Near the top rounding down keeps it whole instead of wrapping.
        let top = virtio::round_target(u32::MAX, virtio::PAGE_SHIFT);
        assert!(top.is_multiple_of(PER_PAGE));
        assert!(u32::MAX - top < PER_PAGE);
    }

    #[test]
    fn buffers_hold_whole_pages() {
        for pfns in [uapi::C_PFNS_PER_BUFFER, BLOCK_PFNS] {
            let pages = virtio::whole_pages(pfns, virtio::PAGE_SHIFT);
            assert_eq!(pages * PFNS_PER_PAGE, pfns);
        }
        assert_eq!(BLOCK_PFNS, HUGE_BLOCK_PAGES * PFNS_PER_PAGE);
    }

    #[test]
    fn a_page_packs_its_frames_little_endian() -> Result {
        let mut buf = Buffer::new(2 * PFNS_PER_PAGE * 4)?;
        push_page_pfns(&mut buf, 0x1234_5670)?;
        push_page_pfns(&mut buf, 0x10)?;
        let bytes = buf.as_slice();
        assert_eq!(bytes.len(), 2 * PFNS_PER_PAGE * 4);
        let frame = |i: usize| {
            u32::from_le_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ])
        };
        for i in 0..PFNS_PER_PAGE {
            assert_eq!(frame(i), 0x1234_5670 + i as u32);
            assert_eq!(frame(PFNS_PER_PAGE + i), 0x10 + i as u32);
        }
        // A buffer has room for exactly its frames.
        assert!(push_le32_fails_when_full(&mut buf));
        Ok(())
    }

    fn push_le32_fails_when_full(buf: &mut Buffer) -> bool {
        buf.push_le32(0) == Err(ENOSPC)
    }

    #[test]
    fn frames_past_16_tib_are_refused() -> Result {
        let mut buf = Buffer::new(PFNS_PER_PAGE * 4)?;
        assert_eq!(push_page_pfns(&mut buf, 1 << 32), Err(ERANGE));
        Ok(())
    }

    /// Counters numbered 1 to 16 in the order the stats send them (11 and
    /// 12 being hugetlb's, when given).
    fn numbered_counters(hugetlb: Option<(u64, u64)>) -> MemoryCounters {
        MemoryCounters {
            swap_in: 1,
            swap_out: 2,
            major_faults: 3,
            minor_faults: 4,
            oom_kills: 5,
            alloc_stalls: 6,
            scanned_async: 7,
            scanned_direct: 8,
            reclaimed_async: 9,
            reclaimed_direct: 10,
            hugetlb,
            free: 13,
            total: 14,
            available: 15,
            caches: 16,
        }
    }

    #[test]
    fn stats_have_the_c_drivers_tags_and_byte_values() -> Result {
        let counters = numbered_counters(Some((11, 12)));
        let mut buf = Buffer::new(STATS_BYTES)?;
        fill_stats(&mut buf, &counters)?;
        // Every tag fits: the buffer is exactly full.
        assert_eq!(buf.len(), STATS_BYTES);
        let bytes = buf.as_slice();
        let page = 1u64 << kernel::page::PAGE_SHIFT;
        let expected = [
            (stat::SWAP_IN, page),
            (stat::SWAP_OUT, 2 * page),
            (stat::MAJFLT, 3),
            (stat::MINFLT, 4),
            (stat::OOM_KILL, 5),
            (stat::ALLOC_STALL, 6),
            (stat::ASYNC_SCAN, 7 * page),
            (stat::DIRECT_SCAN, 8 * page),
            (stat::ASYNC_RECLAIM, 9 * page),
            (stat::DIRECT_RECLAIM, 10 * page),
            (stat::HTLB_PGALLOC, 11),
            (stat::HTLB_PGFAIL, 12),
            (stat::MEMFREE, 13 * page),
            (stat::MEMTOT, 14 * page),
            (stat::AVAIL, 15 * page),
            (stat::CACHES, 16 * page),
        ];
        assert_eq!(expected.len(), stat::NR);
        for (i, (tag, value)) in expected.into_iter().enumerate() {
            let at = i * 10;
            assert_eq!(u16::from_le_bytes([bytes[at], bytes[at + 1]]), tag);
            let mut le = [0u8; 8];
            le.copy_from_slice(&bytes[at + 2..at + 10]);
            assert_eq!(u64::from_le_bytes(le), value);
        }
        Ok(())
    }

    #[test]
    fn stats_without_hugetlb_leave_out_its_tags() -> Result {
        let counters = numbered_counters(None);
        let mut buf = Buffer::new(STATS_BYTES)?;
        fill_stats(&mut buf, &counters)?;
        assert_eq!(buf.len(), STATS_BYTES - 2 * 10);
        Ok(())
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut ms = BACKOFF_MIN_MS;
        let mut pauses = 0;
        while ms < BACKOFF_MAX_MS {
            let next = next_backoff_ms(ms);
            assert_eq!(next, ms * 2);
            ms = next;
            pauses += 1;
        }
        // From 1 ms to the cap in eight doublings; it stays there.
        assert_eq!(pauses, 8);
        assert_eq!(next_backoff_ms(BACKOFF_MAX_MS), BACKOFF_MAX_MS);
        assert_eq!(next_backoff_ms(u32::MAX), BACKOFF_MAX_MS);
        assert_eq!(next_backoff_ms(0), BACKOFF_MIN_MS);
    }

    #[test]
    fn hint_commands_move_through_their_states() {
        let (stop, done) = (uapi::CMD_ID_STOP, uapi::CMD_ID_DONE);
        // Nothing answered yet: a new id is answered, STOP waits.
        assert_eq!(hint_action(stop, stop), HintAction::Wait);
        assert_eq!(hint_action(7, stop), HintAction::Answer);
        // While 7 is answered, 7 again waits and 8 is answered afresh.
        assert_eq!(hint_action(7, 7), HintAction::Wait);
        assert_eq!(hint_action(8, 7), HintAction::Answer);
        // DONE gives the blocks back, whatever came before, every time.
        assert_eq!(hint_action(done, 7), HintAction::GiveBack);
        assert_eq!(hint_action(done, done), HintAction::GiveBack);
        // Blocks keep going for 7 while config space reads 7 or STOP.
        assert!(still_hinting(7, 7));
        assert!(still_hinting(stop, 7));
        assert!(!still_hinting(8, 7));
        assert!(!still_hinting(done, 7));
    }
}
