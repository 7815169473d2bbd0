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
//! 4. The hint blocks ([`Hinting`]) and the stats buffer ([`Stats`]):
//!    taken under the device lock or alone; the shrinker only tries the
//!    hint blocks.

mod debugfs;
mod hinting;
#[cfg(CONFIG_PAGE_REPORTING)]
mod reporting;
mod stats;
mod virtio;

use debugfs::Counters;
use hinting::Hinting;
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
use stats::Stats;
#[cfg(CONFIG_PAGE_REPORTING)]
use virtio::PageReporting;
use virtio::{
    available_pages as guest_available_pages, balloon_uapi as uapi, balloon_uapi::stat,
    BalloonPages, Binding, BoundGuard, Buffer, Device, Feature, MemoryCounters, Migrate,
    OomHandler, OomNotifier, Page, PageList, QueueId, QueueInfo, Shrinker, Transport, Validating,
    PFNS_PER_PAGE,
};

module! {
    type: BalloonModule,
    name: "rust_balloon",
    authors: ["rust-balloon developers"],
    description: "Virtio memory balloon driver, in Rust",
    license: "GPL",
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
    /// Free page hinting, if negotiated.
    hinting: Option<Arc<Hinting>>,
    /// The statistics queue, if negotiated.
    stats: Option<Arc<Stats>>,
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
    reporting: Option<Pin<KBox<PageReporting<reporting::Reporting>>>>,
    shrinker: Option<Shrinker<Hinting>>,
}

impl_has_work! {
    impl HasWork<Self, 0> for Balloon { self.resize_work }
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

impl Balloon {
    /// Pauses the resize work after a step that moved nothing, and doubles
    /// the next pause (see [`BACKOFF_MIN_MS`]).
    fn back_off(&self) {
        let ms = self.backoff_ms.load(Relaxed);
        self.backoff_ms.store(next_backoff_ms(ms), Relaxed);
        fsleep(Delta::from_millis(ms.into()));
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
        let (got, blocks) = alloc_balloon_pages(&mut new.pages, pages, &mut huge);
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
        while virtio::flush_work(&self.resize_work) {}
        if let Some(stats) = &self.stats {
            stats.stop();
        }
        if let Some(hinting) = &self.hinting {
            hinting.stop();
        }
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
        if let Some(hinting) = &this.hinting {
            hooks.shrinker = Some(Shrinker::register(hinting.clone(), c"rust-balloon")?);
        }
        #[cfg(CONFIG_PAGE_REPORTING)]
        if let Some(queue) = this.queues.reporting {
            hooks.reporting = Some(reporting::Reporting::register(
                this.binding.clone(),
                queue,
                this.counters.clone(),
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

/// Allocates up to `n` balloon pages onto `list` (of single pages); returns
/// how many it got, and how many of them came as whole huge blocks.
///
/// While `huge` is set and a whole block is wanted, it takes free
/// [`virtio::HUGE_ORDER`] blocks (without reclaim) and splits them into
/// single pages, each block's pages together and in ascending order at the
/// front of the list, so that a buffer taken from the front holds whole
/// blocks; it clears `huge` when none is left. The rest comes one page at a
/// time from [`Page::alloc`], which may reclaim, and goes to the back: in
/// front it would shift every block across two buffers.
fn alloc_balloon_pages(list: &mut PageList, n: usize, huge: &mut bool) -> (usize, usize) {
    let mut got = 0;
    while *huge && n - got >= HUGE_BLOCK_PAGES {
        let Some(block) = Page::alloc_free_block(virtio::HUGE_ORDER) else {
            *huge = false;
            break;
        };
        if list.push_split(block).is_err() {
            break;
        }
        got += HUGE_BLOCK_PAGES;
    }
    let blocks = got / HUGE_BLOCK_PAGES;
    while got < n {
        let Some(page) = Page::alloc() else {
            break;
        };
        list.push_back(page);
        got += 1;
    }
    (got, blocks)
}

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

virtio::virtio_device_table!(
    VIRTIO_ID_TABLE,
    MODULE_VIRTIO_ID_TABLE,
    (),
    [(virtio::DeviceId::new(uapi::DEVICE_ID), ())]
);

#[vtable]
impl virtio::Driver for Balloon {
    const NAME: &'static CStr = c"rust_balloon";
    type IdInfo = ();
    const ID_TABLE: virtio::IdTable<()> = &VIRTIO_ID_TABLE;
    const FEATURES: &'static [Feature] = &[
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
    fn validate(dev: &Validating) -> Result {
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
        Self::write_poison_val(&binding)?;
        // The balloon cannot wake the system, but it handles the wakeup
        // events its transport passes up.
        binding.set_wakeup_capable();
        let stats = queues
            .stats
            .map(|queue| Stats::new(binding.clone(), queue))
            .transpose()?;
        let hinting = queues
            .hint
            .map(|queue| Hinting::new(binding.clone(), queue, counters.clone()))
            .transpose()?;
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
                hinting,
                stats,
                hooks <- new_mutex!(Hooks::default()),
            }),
            GFP_KERNEL,
        )?;
        if let Err(e) = Self::register_hooks(&balloon, dev, debugfs) {
            balloon.unregister_hooks();
            return Err(e);
        }
        dev_info!(
            dev,
            "bound: stats {}, deflate-on-oom {}, hint {}, reporting {}, poison {}, {:?} with {} PFNs per buffer\n",
            balloon.stats.is_some(),
            deflate_on_oom,
            balloon.hinting.is_some(),
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
        if let Some(hinting) = &this.hinting {
            Hinting::config_changed(hinting);
        }
    }

    fn queue_event(this: &Arc<Self>, queue: QueueId) {
        if let Some(stats) = this.stats.as_ref().filter(|stats| stats.owns(queue)) {
            Stats::host_asked(stats);
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
        if let Some(hinting) = &this.hinting {
            hinting.reset();
        }
        this.binding.relax();
        dev_info!(dev, "suspend: {} pages returned\n", pages);
        Ok(())
    }

    /// Resume: the same queues again, the poison value again (the reset
    /// cleared it), and a fresh stats buffer (the old one went with the
    /// reset); `ready` then moves back towards the target.
    fn restore(this: &Arc<Self>, _dev: &Device) -> Result {
        // Same features, same queues; anything else would be a device bug.
        if Queues::find(&this.binding)? != this.queues {
            return Err(EINVAL);
        }
        Self::write_poison_val(&this.binding)?;
        if let Some(stats) = &this.stats {
            stats.restore()?;
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
        if let Some(hinting) = &this.hinting {
            hinting.reset();
        }
        this.binding.relax();
        dev_info!(dev, "removed, {} pages returned\n", pages);
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
            dev,
            "shutdown with {} pages ballooned\n",
            this.pages.lock().num_pages
        );
    }
}

#[pin_data]
struct BalloonModule {
    #[pin]
    registration: virtio::Registration<Balloon>,
}

impl kernel::InPlaceModule for BalloonModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            registration <- {
                check_parameters()?;
                virtio::Registration::new(module)
            },
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
        let mut buf = Buffer::new(stats::STATS_BYTES)?;
        stats::fill_stats(&mut buf, &counters)?;
        // Every tag fits: the buffer is exactly full.
        assert_eq!(buf.len(), stats::STATS_BYTES);
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
        let mut buf = Buffer::new(stats::STATS_BYTES)?;
        stats::fill_stats(&mut buf, &counters)?;
        assert_eq!(buf.len(), stats::STATS_BYTES - 2 * 10);
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
        assert_eq!(hinting::hint_action(stop, stop), hinting::HintAction::Wait);
        assert_eq!(hinting::hint_action(7, stop), hinting::HintAction::Answer);
        // While 7 is answered, 7 again waits and 8 is answered afresh.
        assert_eq!(hinting::hint_action(7, 7), hinting::HintAction::Wait);
        assert_eq!(hinting::hint_action(8, 7), hinting::HintAction::Answer);
        // DONE gives the blocks back, whatever came before, every time.
        assert_eq!(hinting::hint_action(done, 7), hinting::HintAction::GiveBack);
        assert_eq!(
            hinting::hint_action(done, done),
            hinting::HintAction::GiveBack
        );
        // Blocks keep going for 7 while config space reads 7 or STOP.
        assert!(hinting::still_hinting(7, 7));
        assert!(hinting::still_hinting(stop, 7));
        assert!(!hinting::still_hinting(8, 7));
        assert!(!hinting::still_hinting(done, 7));
    }
}
