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
//! This file holds the driver's data for a device ([`Balloon`]), probe and
//! the bus callbacks; each feature lives in a module of its own:
//! [`resize`] (inflate, deflate, OOM, migration), [`stats`], [`hinting`]
//! and `reporting`, the last three only instantiated when negotiated;
//! [`debugfs`] shows the counters. Every operation the compiler cannot
//! check lives in the [`virtio`] layer.
//!
//! # Lock order
//!
//! Taken in this order, never the other way round:
//!
//! 1. `Resizer::inflating`: pages allocated for the next inflate step. Only
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
//!    taken under the device lock or alone. The shrinker only tries locks:
//!    the hint blocks, then the device (the other way round, which a
//!    try-lock cannot deadlock on).
//!
//! `Resizer::rescue` (deflate on OOM as it goes) is taken alone, never with
//! another of these held nor while taking one.
//!
//! The OOM notifier takes locks 2 and 3 (and reads the config under 3), so
//! nothing may allocate with reclaim under them. On virtio-ccw (s390; not
//! built or tested here) a config access may allocate (its
//! `ccw_device_dma_zalloc` can fall back to `dma_alloc_coherent`), which
//! under lock 3 could enter the OOM path and wait for lock 3: a known
//! limitation there, as the C driver holds no lock across `virtio_cread`.

mod debugfs;
mod hinting;
#[cfg(CONFIG_PAGE_REPORTING)]
mod reporting;
mod resize;
mod stats;
mod uapi;

// rust-balloon: out of tree, for `use kernel::{mm, virtio, workqueue};` {
// What this driver adds to the kernel crate, which the upstream series
// (scripts/patches.sh) moves there and puts this line's `use` in place of
// this block. Public, as it will be there: the lints see out of tree what
// they will see in tree (missing docs, `pub` items nothing outside
// reaches).
mod bindings;
pub mod mm;
pub mod virtio;
pub mod workqueue;
// } rust-balloon: out of tree

#[cfg(CONFIG_VIRTIO_HARDEN_NOTIFICATION)]
compile_error!("rust_balloon is not tested with CONFIG_VIRTIO_HARDEN_NOTIFICATION");
#[cfg(not(CONFIG_VM_EVENT_COUNTERS))]
compile_error!("rust_balloon's memory statistics need CONFIG_VM_EVENT_COUNTERS");

use debugfs::Counters;
use hinting::Hinting;
use kernel::{
    debugfs::Dir,
    device::{Bound, Core},
    new_mutex,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, Mutex,
    },
    workqueue::{HasWork, WorkItem},
};
#[cfg(CONFIG_PAGE_REPORTING)]
use mm::page_reporting::PageReporting;
use mm::{oom::OomNotifier, shrinker::Shrinker};
use resize::{Resizer, BLOCK_PFNS};
use stats::Stats;
use virtio::{Binding, Device, Feature, QueueId, QueueInfo, Transport, Validating};

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
        pace_inflation: u32 {
            default: 1,
            description: "1: pace inflation by reclaim and CPU use, stop on thrashing; 0: no",
        },
        buffer_pfns: u32 {
            default: 0,
            description: "PFNs per inflate/deflate buffer: 256, 512, or 0 (by transport)",
        },
    },
}

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

/// OOM notifier priority, as in the C driver.
const OOM_NOTIFY_PRIORITY: i32 = 80;

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
        let mut add = |name, page_order| -> Result<QueueId> {
            infos.push(
                QueueInfo {
                    name,
                    callback: true,
                    page_order,
                },
                GFP_KERNEL,
            )?;
            Ok(QueueId(infos.len() - 1))
        };
        add(c"inflate", None)?;
        add(c"deflate", None)?;
        let stats = binding
            .has_feature(uapi::F_STATS_VQ)
            .then(|| add(c"stats", None))
            .transpose()?;
        // The host hands free page hint blocks back whole.
        let hint = binding
            .has_feature(uapi::F_FREE_PAGE_HINT)
            .then(|| add(c"free_page_vq", Some(hinting::HINT_BLOCK_ORDER)))
            .transpose()?;
        let reporting = binding
            .has_feature(uapi::F_REPORTING)
            .then(|| add(c"reporting_vq", None))
            .transpose()?;
        binding.find_vqs(&infos)?;
        Ok(Self {
            stats,
            hint,
            reporting,
        })
    }
}

/// One bound balloon device: the driver's data, which the bus keeps from
/// probe until the device is unbound. Each feature is an object of its own,
/// there only if negotiated; what they share is the [`Binding`].
#[pin_data]
struct Balloon {
    /// Inflate, deflate, OOM and migration (always there).
    resizer: Arc<Resizer>,
    queues: Queues,
    /// Free page hinting, if negotiated.
    hinting: Option<Arc<Hinting>>,
    /// The statistics queue, if negotiated.
    stats: Option<Arc<Stats>>,
    /// Registrations that call into the features: dropped (unregistered)
    /// in `unbind` and `shutdown`, while the device still answers.
    #[pin]
    hooks: Mutex<Hooks>,
}

/// What the balloon registered with the rest of the kernel, held only to
/// be unregistered by dropping it.
#[derive(Default)]
struct Hooks {
    /// The debugfs directory (it reads the resizer's figures).
    _view: Option<Pin<KBox<debugfs::View>>>,
    _oom: Option<Pin<KBox<OomNotifier<Resizer>>>>,
    #[cfg(CONFIG_PAGE_REPORTING)]
    _reporting: Option<Pin<KBox<PageReporting<reporting::Reporting>>>>,
    _shrinker: Option<Shrinker<Hinting>>,
}

impl Balloon {
    /// Sets the balloon up on a device whose features are negotiated: finds
    /// the queues, makes one object per negotiated feature, and registers
    /// the hooks that call into them; what is left is to pin it.
    fn new(
        dev: &Device<Core<'_>>,
        binding: Arc<Binding>,
        debugfs: &Dir,
    ) -> Result<impl PinInit<Self, Error>> {
        let queues = Queues::find(&binding)?;
        let transport = dev.transport();
        let pfns_per_buffer = pfns_per_buffer(transport);
        let counters = Arc::new(Counters::new(), GFP_KERNEL)?;
        let resizer = Resizer::new(binding.clone(), pfns_per_buffer, counters.clone())?;
        write_poison_val(&binding)?;
        // The balloon cannot wake the system, but it handles the wakeup
        // events its transport passes up.
        dev.set_wakeup_capable();
        let stats = queues
            .stats
            .map(|queue| Stats::new(binding.clone(), queue))
            .transpose()?;
        let hinting = queues
            .hint
            .map(|queue| Hinting::new(binding.clone(), queue, counters.clone()))
            .transpose()?;
        let deflate_on_oom = dev.has_feature(uapi::F_DEFLATE_ON_OOM);
        let hooks = Hooks {
            _view: Some(debugfs::view(
                debugfs,
                dev.as_ref().name(),
                resizer.clone(),
            )?),
            _oom: deflate_on_oom
                .then(|| OomNotifier::register(resizer.clone(), OOM_NOTIFY_PRIORITY))
                .transpose()?,
            _shrinker: hinting
                .as_ref()
                .map(|hinting| Shrinker::register(hinting.clone(), c"rust-balloon"))
                .transpose()?,
            #[cfg(CONFIG_PAGE_REPORTING)]
            _reporting: queues
                .reporting
                .map(|queue| reporting::Reporting::register(binding.clone(), queue, counters))
                .transpose()?,
        };
        dev_info!(
            dev,
            "bound: stats={} oom={} hint={} report={} poison={}, {:?} with {} PFNs per buffer\n",
            stats.is_some(),
            deflate_on_oom,
            hinting.is_some(),
            queues.reporting.is_some(),
            dev.has_feature(uapi::F_PAGE_POISON),
            transport,
            pfns_per_buffer,
        );
        Ok(try_pin_init!(Self {
            resizer,
            queues,
            hinting,
            stats,
            hooks <- new_mutex!(hooks),
        }))
    }

    /// Waits until no work item is queued or running (with `stopping` set,
    /// none queues itself again).
    fn stop_works(&self) {
        self.resizer.stop();
        if let Some(stats) = &self.stats {
            stats.stop();
        }
        if let Some(hinting) = &self.hinting {
            hinting.stop();
        }
    }

    /// Stops everything that may use the device: the hooks first (their
    /// callbacks may be waiting for the host, which still answers), then
    /// the work items, none of which queues itself again afterwards.
    fn quiesce(&self) {
        self.unregister_hooks();
        self.stop_works();
    }

    /// Unregisters the hooks; waits for a notification or report in
    /// progress.
    fn unregister_hooks(&self) {
        let hooks = core::mem::take(&mut *self.hooks.lock());
        drop(hooks);
    }

    /// Gives every page back and resets the device: the end of a binding
    /// (unbind) or of its first half (freeze). Hinted blocks are free once
    /// the device is reset. Returns the pages the balloon held.
    fn deflate_and_reset(&self) -> u32 {
        let pages = self.resizer.pages.lock().num_pages;
        self.resizer.deflate_all();
        self.resizer.binding.teardown();
        let kept = self.resizer.release_after_reset();
        if kept > 0 {
            dev_warn!(
                self.resizer.binding.device(),
                "{} pages the host could not be told about freed after the reset\n",
                kept
            );
        }
        if let Some(hinting) = &self.hinting {
            hinting.reset();
        }
        self.resizer.binding.relax();
        pages
    }
}

/// Tells the host which value free pages hold, if it was negotiated. The
/// device forgets it on reset, and the spec wants it set before DRIVER_OK:
/// at probe and at every restore.
fn write_poison_val(binding: &Binding) -> Result {
    if !binding.has_feature(uapi::F_PAGE_POISON) {
        return Ok(());
    }
    // What free pages hold, in every byte of the value.
    let fill = mm::vmstat::free_page_fill().unwrap_or(0);
    binding
        .lock()?
        .write_config_le32(uapi::CONFIG_POISON_VAL, u32::from_ne_bytes([fill; 4]))
}

/// Runs one piece of a feature's deferred work unless the feature is
/// stopping; a device that went away meanwhile (`ENODEV`) is not an error.
fn run_once(stopping: &Atomic<bool>, what: &str, work: impl FnOnce() -> Result) {
    if stopping.load(Relaxed) {
        return;
    }
    match work() {
        Ok(()) | Err(ENODEV) => {}
        Err(e) => pr_err!("{} failed: {:?}\n", what, e),
    }
}

/// Stops a feature's work item: with `stopping` set none queues itself
/// again, and none is queued or running when this returns. A caller that
/// read `stopping` before it was set may still queue one afterwards: that
/// run only sees `stopping` and returns, and `unbind` stops the work again
/// once the device is reset and no callback can queue any more.
///
/// A queued instance is cancelled, not waited for: from the hibernation
/// snapshot to power-off the freezable workqueues stay frozen, so a flush
/// in `shutdown` would wait for ever behind work `restore` queued (the C
/// driver cancels too). Run now, it would only see `stopping` and return.
fn stop_work<T>(stopping: &Atomic<bool>, this: &Arc<T>)
where
    T: WorkItem<Pointer = Arc<T>> + HasWork<T>,
{
    stopping.store(true, Relaxed);
    // A run under way that requeues itself meanwhile is refused: the core
    // keeps a work item it is cancelling from being queued.
    workqueue::cancel(this);
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
    let pace = *module_parameters::pace_inflation.value();
    if pace > 1 {
        pr_err!("pace_inflation={}: must be 0 or 1\n", pace);
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
    type IdInfo = ();
    type Data<'bound> = Self;
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
    fn validate(dev: &Validating<'_>) -> Result {
        if !cfg!(CONFIG_PAGE_REPORTING) {
            dev.clear_feature(uapi::F_REPORTING);
        }
        if mm::vmstat::free_page_fill().is_none() {
            dev.clear_feature(uapi::F_PAGE_POISON);
        } else if !dev.has_feature(uapi::F_PAGE_POISON) {
            dev.clear_feature(uapi::F_REPORTING);
        }
        dev.clear_feature(uapi::F_RING_INDIRECT_DESC);
        dev.clear_feature(uapi::F_ACCESS_PLATFORM);
        Ok(())
    }

    fn probe<'bound>(
        dev: &'bound Device<Core<'_>>,
        _id_info: &'bound (),
        binding: Arc<Binding>,
        debugfs: &'bound Dir,
    ) -> impl PinInit<Self, Error> + 'bound {
        let balloon = Balloon::new(dev, binding, debugfs);
        pin_init::pin_init_scope(move || balloon)
    }

    fn ready(_dev: &Device<Bound>, this: Pin<&Self>) {
        Resizer::request_resize(&this.resizer);
    }

    fn config_changed(_dev: &Device<Bound>, this: Pin<&Self>) {
        Resizer::request_resize(&this.resizer);
        if let Some(hinting) = &this.hinting {
            Hinting::config_changed(hinting);
        }
    }

    fn queue_event(_dev: &Device<Bound>, this: Pin<&Self>, queue: QueueId) {
        if let Some(stats) = this.stats.as_ref().filter(|stats| stats.owns(queue)) {
            Stats::host_asked(stats);
        }
    }

    /// Suspend: as the C driver, give every page back (the host may not
    /// keep its side of the balloon across the suspend). Nothing here
    /// allocates: a failure after the reset would leave the device dead
    /// while the system resumes.
    fn freeze(dev: &Device<Core<'_>>, this: Pin<&Self>) -> Result {
        let pages = this.deflate_and_reset();
        dev_info!(dev, "suspend: {} pages returned\n", pages);
        Ok(())
    }

    /// Resume: the same queues again, the poison value again (the reset
    /// cleared it), and a fresh stats buffer (the old one went with the
    /// reset); `ready` then moves back towards the target.
    fn restore(dev: &Device<Core<'_>>, this: Pin<&Self>) -> Result {
        let binding = &this.resizer.binding;
        // Same features, same queues; anything else would be a device bug.
        if Queues::find(binding)? != this.queues {
            return Err(EINVAL);
        }
        write_poison_val(binding)?;
        if let Some(stats) = &this.stats {
            stats.restore()?;
        }
        this.resizer.forget_pacing();
        // Not worth failing a resume over (a failed restore stops the
        // balloon until the next one): steps make do with the buffers the
        // pool has.
        if let Err(e) = this.resizer.refill_pfn_buffers() {
            dev_warn!(
                dev,
                "restore: PFN buffers not replaced ({:?}); smaller steps until the next restore\n",
                e
            );
        }
        Ok(())
    }

    /// Reset the device here (the bus would right after): once no queue
    /// interrupt can come, no stats work can be queued either, and a last
    /// flush leaves nothing behind to run after unload.
    fn unbind(dev: &Device<Core<'_>>, this: Pin<&Self>) {
        this.quiesce();
        let pages = this.deflate_and_reset();
        this.stop_works();
        dev_info!(dev, "removed, {} pages returned\n", pages);
    }

    /// Power off, reboot or kexec: stop every user of the device while the
    /// host still answers (a step waiting for it would otherwise wait for
    /// ever once the core resets the device, holding the locks the OOM
    /// notifier takes). The pages stay ballooned: the host keeps its side
    /// until its reset, and the memory is the next kernel's anyway.
    fn shutdown(dev: &Device<Core<'_>>, this: Pin<&Self>) {
        this.quiesce();
        this.resizer.binding.relax();
        dev_info!(
            dev,
            "shutdown with {} pages ballooned\n",
            this.resizer.pages.lock().num_pages
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
                virtio::Registration::new(<Self as kernel::ModuleMetadata>::NAME, module)
            },
        })
    }
}

/// The driver's pure logic, run by KUnit in a kernel with `CONFIG_KUNIT`:
/// `insmod` registers the suite and
/// `/sys/kernel/debug/kunit/rust_balloon/run` runs it.
#[kunit_tests(rust_balloon)]
mod tests {
    use super::resize::{
        alloc_balloon_pages, deflated_may_be_freed, inflated_stay_ballooned, next_backoff_ms, pace,
        push_page_pfns, still_pressed, Cpu, Look, Pace, Pacing, Pressure, Rescue, Step, Told,
        BACKOFF_MAX_MS, BACKOFF_MIN_MS, CONTENDED_REST_PCT, HUGE_BLOCK_PAGES, OOM_EPISODE_GAP_MS,
        OOM_RELEASE_MAX_PFNS, OOM_RELEASE_PFNS, PACED_STEP_PFNS, PACE_REST_MAX_MS, PACE_WINDOW_MS,
        PRESSED_LOOKS, PRESSED_REST_MS, PRESSURE_MIN_PAGES, PRESSURE_NOISE_MS,
    };
    use super::*;
    use kernel::time::{Delta, Instant, Monotonic};
    use mm::balloon::{self, PFNS_PER_PAGE};
    use mm::vmstat::{MemoryCounters, ReclaimCounters};
    use uapi::stat;
    use virtio::Buffer;

    /// Frames per guest page of this kernel (1 with 4 KiB pages).
    const PER_PAGE: u32 = PFNS_PER_PAGE as u32;

    #[test]
    fn target_rounds_up_to_whole_pages() {
        for frames in [0, 1, PER_PAGE - 1, PER_PAGE, 1001, 262_143] {
            let rounded = balloon::round_target(frames, balloon::PAGE_SHIFT);
            assert!(rounded >= frames);
            assert!(rounded - frames < PER_PAGE);
            assert!(rounded.is_multiple_of(PER_PAGE));
        }
        // Near the top rounding down keeps it whole instead of wrapping.
        let top = balloon::round_target(u32::MAX, balloon::PAGE_SHIFT);
        assert!(top.is_multiple_of(PER_PAGE));
        assert!(u32::MAX - top < PER_PAGE);
    }

    #[test]
    fn oom_releases_double_within_an_episode_and_hold_inflation() {
        let mut rescue = Rescue::new();
        let t0 = Instant::<Monotonic>::now();
        let at = |ms: i64| t0 + Delta::from_millis(ms);
        let (target, floor) = (100_000, 1000);
        let (first, started) = rescue.next_release(at(0), target);
        assert_eq!(first, OOM_RELEASE_PFNS);
        assert!(matches!(started, Some(None)));
        // Held while releasing, whatever the guest has.
        assert!(rescue.holds(target, usize::MAX, floor));
        rescue.released(first, at(10));
        let mut total = first;
        // Notifications 4 s apart: one episode, releases doubling to the
        // cap.
        let gap = OOM_EPISODE_GAP_MS - 1000;
        for i in 1..10i64 {
            let (wanted, started) = rescue.next_release(at(gap * i), target);
            assert!(started.is_none());
            assert_eq!(wanted, (OOM_RELEASE_PFNS << i).min(OOM_RELEASE_MAX_PFNS));
            rescue.released(wanted, at(gap * i + 10));
            total += wanted;
        }
        // Inflation waits for the floor and half of what was released.
        let room = floor + total / PFNS_PER_PAGE / 2;
        assert!(rescue.holds(target, room - 1, floor));
        // Not over before the gap has passed without a notification; then
        // it is.
        let last = gap * 9 + 10;
        assert!(rescue.take_ended(at(last + OOM_EPISODE_GAP_MS)).is_none());
        assert!(matches!(
            rescue.take_ended(at(last + OOM_EPISODE_GAP_MS + 1)),
            Some(episode) if episode.notifications == 10 && episode.released_pfns == total
        ));
        assert_eq!(rescue.longest_ms, last as u64);
        // The next notification starts again from 1 MiB.
        let (wanted, started) = rescue.next_release(at(100_000), target);
        assert_eq!(wanted, OOM_RELEASE_PFNS);
        assert!(matches!(started, Some(None)));
        rescue.released(wanted, at(100_010));
        // What is released adds up while the target stays; room ends the
        // hold.
        let room = floor + (total + wanted) / PFNS_PER_PAGE / 2;
        assert!(rescue.holds(target, room - 1, floor));
        assert!(!rescue.holds(target, room, floor));
        assert!(!rescue.holds(target, 0, floor));
        // A new target ends it too.
        let _ = rescue.next_release(at(100_020), target);
        rescue.released(wanted, at(100_030));
        assert!(rescue.holds(target, 0, floor));
        assert!(!rescue.holds(target + 1, 0, floor));
        assert!(!rescue.holds(target, 0, floor));
        // Nothing released (an empty balloon): nothing to wait for.
        let _ = rescue.next_release(at(200_000), target);
        rescue.released(0, at(200_010));
        assert!(!rescue.holds(target, 0, floor));
    }

    #[test]
    fn inflation_waits_through_an_episode_then_for_room() {
        let mut rescue = Rescue::new();
        let t0 = Instant::<Monotonic>::now();
        let at = |ms: i64| t0 + Delta::from_millis(ms);
        let (target, floor) = (100_000, 1000);
        let (wanted, _) = rescue.next_release(at(0), target);
        rescue.released(wanted, at(10));
        // During the episode: held with room to spare, and for a new target.
        assert!(rescue.inflation_held(target, usize::MAX, floor));
        assert!(rescue.inflation_held(target + 1, usize::MAX, floor));
        // Once it is over, the new target is not held.
        assert!(rescue.take_ended(at(10 + OOM_EPISODE_GAP_MS + 1)).is_some());
        assert!(!rescue.inflation_held(target + 1, usize::MAX, floor));
        // A release of nothing after one of something, same target: the
        // hold stays, for what the first released.
        let (wanted, _) = rescue.next_release(at(20_000), target);
        rescue.released(wanted, at(20_010));
        let _ = rescue.next_release(at(20_100), target);
        rescue.released(0, at(20_110));
        assert!(rescue
            .take_ended(at(20_110 + OOM_EPISODE_GAP_MS + 1))
            .is_some());
        let room = floor + wanted / PFNS_PER_PAGE / 2;
        assert_eq!(rescue.room_pages(floor), room);
        assert!(rescue.inflation_held(target, room - 1, floor));
        assert!(!rescue.inflation_held(target, room, floor));
    }

    #[test]
    fn reclaim_shrinks_steps_and_churn_stops_inflation() {
        let cost = |scanned, stolen, refaults| ReclaimCounters {
            scanned,
            stolen,
            refaults,
        };
        // No reclaim: full steps.
        assert_eq!(pace(&cost(0, 0, 0), 4096), Pace::Go);
        // Reclaim that freed what it scanned (cold cache).
        assert_eq!(pace(&cost(5000, 4500, 0), 4096), Pace::Reclaimed);
        // A few working-set refaults: noise, not pressed; nor is reclaim
        // that scans more than it frees (dirty pages), by itself.
        let noise = PRESSURE_MIN_PAGES;
        assert_eq!(pace(&cost(0, 0, noise), 4096), Pace::Go);
        assert_eq!(pace(&cost(4000, 100, 0), 4096), Pace::Reclaimed);
        // More than the noise refaulted, with nothing or little freed.
        assert_eq!(pace(&cost(0, 0, noise + 1), 4096), Pace::Pressed);
        assert_eq!(pace(&cost(0, 0, noise + 1), 0), Pace::Pressed);
        // Refaults of a quarter of what reclaim freed, or less: the
        // readaround of a few hot pages, not pressed.
        assert_eq!(pace(&cost(8000, 8000, 2000), 4096), Pace::Reclaimed);
        assert_eq!(pace(&cost(8000, 8000, 2001), 4096), Pace::Pressed);
        // The noise grows with the step: 1/16 of it.
        let big = 16 * noise as usize * 4;
        assert_eq!(pace(&cost(0, 0, 4 * noise), big), Pace::Go);
        assert_eq!(pace(&cost(0, 0, 4 * noise + 1), big), Pace::Pressed);

        // A stop's floor holds for its target only, and never below the
        // reserve.
        let stop = Some(Pressure {
            target: 100,
            floor_pages: 5000,
        });
        assert_eq!(Pressure::floor(stop, 100, 1000), 5000);
        assert_eq!(Pressure::floor(stop, 100, 6000), 6000);
        assert_eq!(Pressure::floor(stop, 101, 1000), 1000);
        assert_eq!(Pressure::floor(None, 100, 1000), 1000);
    }

    #[test]
    fn pressed_inflation_stops_only_if_the_guest_stays_pressed() {
        let t0 = Instant::<Monotonic>::now();
        let at = |ms: i64| t0 + Delta::from_millis(ms);
        // Counters that reclaim has reached: `freed` pages stolen (and
        // scanned), `refaults` working-set refaults.
        let seen = |freed: u64, refaults: u64| ReclaimCounters {
            scanned: freed,
            stolen: freed,
            refaults,
        };
        let burst = 8 * PRESSURE_MIN_PAGES;
        let step = 4096;
        // A step that moved `step` pages from `began` to `ended` (each a
        // time in ms and the counters then).
        let moved =
            |pacing: &mut Pacing, began: (i64, ReclaimCounters), ended: (i64, ReclaimCounters)| {
                pacing.after_step(
                    Step::Moved,
                    step,
                    (at(began.0), began.1),
                    (at(ended.0), ended.1),
                    Delta::ZERO,
                    Delta::ZERO,
                    Cpu::Alone,
                )
            };
        let stays_pressed = |pacing: &mut Pacing| {
            assert!(matches!(
                moved(pacing, (0, seen(0, 0)), (20, seen(burst, burst))),
                Step::Paced(PRESSED_REST_MS)
            ));
        };

        // A look asks for the refault rate a step does, whatever its
        // length: PRESSURE_MIN_PAGES per PRESSURE_NOISE_MS, pro rata.
        let look_noise = (PRESSURE_MIN_PAGES * PRESSED_REST_MS).div_ceil(PRESSURE_NOISE_MS);
        assert!(look_noise < PRESSURE_MIN_PAGES);
        assert!(still_pressed(&seen(0, look_noise + 1), PRESSED_REST_MS));
        assert!(!still_pressed(&seen(0, look_noise), PRESSED_REST_MS));
        assert!(still_pressed(
            &seen(0, PRESSURE_MIN_PAGES + 1),
            PRESSURE_NOISE_MS
        ));
        assert!(!still_pressed(
            &seen(0, PRESSURE_MIN_PAGES),
            PRESSURE_NOISE_MS
        ));
        // Refaults below a quarter of what reclaim freed are not pressure.
        assert!(!still_pressed(&seen(4000, 1000), PRESSED_REST_MS));

        // A burst of refaults that is over at the first look: inflation
        // goes on (a quiet look leaves the last step's counters, so the
        // next step's cost counts from that step, within the window).
        let mut pacing = Pacing::default();
        assert!(matches!(pacing.before_step(at(0), seen(0, 0)), Look::Step));
        stays_pressed(&mut pacing);
        assert!(matches!(
            pacing.before_step(at(20 + PRESSED_REST_MS as i64), seen(burst, burst)),
            Look::Step
        ));
        assert!(matches!(
            moved(
                &mut pacing,
                (20 + PRESSED_REST_MS as i64, seen(2 * burst, burst)),
                (40 + PRESSED_REST_MS as i64, seen(2 * burst, burst))
            ),
            Step::Moved
        ));
        // Reclaimed, not Go: the cost counted from the pressed step (from
        // its own start, reclaim did nothing).
        assert_eq!(pacing.step_pfns(step), PACED_STEP_PFNS);

        // A guest that goes on refaulting with the balloon still: it looks
        // PRESSED_LOOKS times, the last stops inflation and says what
        // reclaim did since the look before, and what the step took.
        let mut pacing = Pacing::default();
        stays_pressed(&mut pacing);
        let mut refaults = burst;
        for look in 1..=PRESSED_LOOKS {
            let now = at(20 + PRESSED_REST_MS as i64 * i64::from(look));
            refaults += burst;
            let result = pacing.before_step(now, seen(burst, refaults));
            // No look lets a pressed guest inflate.
            assert!(!matches!(result, Look::Step));
            match result {
                Look::Again(ms) => {
                    assert!(look < PRESSED_LOOKS);
                    assert_eq!(ms, PRESSED_REST_MS);
                }
                Look::Stop {
                    pressed_pfns,
                    rested,
                    rested_for,
                } => {
                    assert_eq!(look, PRESSED_LOOKS);
                    assert_eq!(pressed_pfns, step);
                    assert_eq!(rested.refaults, burst);
                    assert_eq!(rested_for.as_millis(), PRESSED_REST_MS as i64);
                }
                Look::Step => {}
            }
        }
        // Stopped: the stop is said once; the next step is taken (and
        // finds the floor the stop set), and is not charged with what
        // reclaim did before the stop.
        let stopped = 20 + PRESSED_REST_MS as i64 * i64::from(PRESSED_LOOKS);
        assert!(matches!(
            pacing.before_step(at(stopped + 5), seen(burst, refaults)),
            Look::Step
        ));
        assert!(matches!(
            moved(
                &mut pacing,
                (stopped + 5, seen(burst, refaults)),
                (stopped + 25, seen(burst, refaults))
            ),
            Step::Moved
        ));

        // Refaults between a step and the next (while the work rested)
        // count against the next: what the one before evicted comes back.
        // A step that needed reclaim makes the next a small one (and
        // rests only if contended: see below).
        let mut pacing = Pacing::default();
        assert_eq!(pacing.step_pfns(step), step);
        assert!(matches!(
            moved(&mut pacing, (0, seen(0, 0)), (20, seen(burst, 0))),
            Step::Moved
        ));
        assert_eq!(pacing.step_pfns(step), PACED_STEP_PFNS);
        assert_eq!(pacing.step_pfns(PACED_STEP_PFNS / 2), PACED_STEP_PFNS / 2);
        assert!(matches!(
            moved(
                &mut pacing,
                (30, seen(burst, burst)),
                (50, seen(2 * burst, burst))
            ),
            Step::Paced(PRESSED_REST_MS)
        ));

        // A step reclaim had no part in: full steps again.
        let mut pacing = Pacing::default();
        moved(&mut pacing, (0, seen(0, 0)), (20, seen(burst, 0)));
        assert!(matches!(
            moved(&mut pacing, (1100, seen(burst, 0)), (1120, seen(burst, 0))),
            Step::Moved
        ));
        assert_eq!(pacing.step_pfns(step), step);

        // A look long after its step (the work was held): what reclaim did
        // meanwhile is not the balloon's doing.
        let mut pacing = Pacing::default();
        stays_pressed(&mut pacing);
        let late = at(20 + PACE_WINDOW_MS + 1);
        assert!(matches!(
            pacing.before_step(late, seen(burst, 10 * burst)),
            Look::Step
        ));
        let mut pacing = Pacing::default();
        stays_pressed(&mut pacing);
        let last_in_window = at(20 + PACE_WINDOW_MS);
        assert!(matches!(
            pacing.before_step(last_in_window, seen(burst, 10 * burst)),
            Look::Again(_)
        ));

        // A step goes on at once, reclaim or not, unless another task
        // waited for the CPU: then it rests CONTENDED_REST_PCT of its time
        // (at most PACE_REST_MAX_MS; at least 1 ms if no look gave the CPU
        // already, below). Resting with the CPU
        // free after reclaim, as until 2026-12-07, gave the CPU to no one.
        let quiet = |pacing: &mut Pacing, ms: i64, contended: bool| {
            pacing.after_step(
                Step::Moved,
                step,
                (at(0), seen(0, 0)),
                (at(ms), seen(0, 0)),
                Delta::ZERO,
                Delta::ZERO,
                if contended { Cpu::Workload } else { Cpu::Alone },
            )
        };
        assert!(matches!(
            quiet(&mut Pacing::default(), 20, false),
            Step::Moved
        ));
        assert!(matches!(
            quiet(&mut Pacing::default(), 20, true),
            Step::Paced(ms) if ms == (20 * CONTENDED_REST_PCT).div_ceil(100)
        ));
        assert!(matches!(
            quiet(&mut Pacing::default(), 0, true),
            Step::Paced(1)
        ));
        assert!(matches!(
            quiet(&mut Pacing::default(), 10_000, true),
            Step::Paced(PACE_REST_MAX_MS)
        ));
        // The time the step waited for the host is not the step's: the
        // workload had the CPU meanwhile. A 20 ms step that waited 16 ms
        // rests as a 4 ms one if contended, and goes on at once otherwise.
        let waited = |wait_ms: i64, reclaim: ReclaimCounters, contended: bool| {
            Pacing::default().after_step(
                Step::Moved,
                step,
                (at(0), seen(0, 0)),
                (at(20), reclaim),
                Delta::from_millis(wait_ms),
                Delta::ZERO,
                if contended { Cpu::Workload } else { Cpu::Alone },
            )
        };
        assert!(matches!(
            waited(16, seen(0, 0), true),
            Step::Paced(ms) if ms == (4 * CONTENDED_REST_PCT).div_ceil(100)
        ));
        assert!(matches!(waited(16, seen(burst, 0), true), Step::Paced(2)));
        assert!(matches!(waited(16, seen(burst, 0), false), Step::Moved));
        assert!(matches!(waited(16, seen(0, 0), false), Step::Moved));
        // A wait longer than the step (clocks read apart) leaves the least
        // rest, not a negative one.
        assert!(matches!(waited(25, seen(0, 0), true), Step::Paced(1)));
        assert!(matches!(waited(25, seen(burst, 0), true), Step::Paced(1)));
        // The CPU the work gave at the step's ends to a task still runnable
        // after (cpu_wanted) is part of the rest: a 20 ms contended step
        // rests 10 ms, 9 after a 1 ms look, 1 after 9.5 ms (rounded up),
        // and 0 (no sleep, but a rest: the run ends) after 10 ms or more.
        // The cap holds for the rest, looks included.
        let looked = |ms: i64, given_us: i64| {
            Pacing::default().after_step(
                Step::Moved,
                step,
                (at(0), seen(0, 0)),
                (at(ms), seen(0, 0)),
                Delta::ZERO,
                Delta::from_micros(given_us),
                Cpu::Workload,
            )
        };
        assert!(matches!(looked(20, 0), Step::Paced(10)));
        assert!(matches!(looked(20, 1000), Step::Paced(9)));
        assert!(matches!(looked(20, 9500), Step::Paced(1)));
        assert!(matches!(looked(20, 10_000), Step::Paced(0)));
        assert!(matches!(looked(20, 12_000), Step::Paced(0)));
        assert!(matches!(looked(10_000, 1000), Step::Paced(ms) if ms == PACE_REST_MAX_MS - 1));
        // A step that took no time rests 1 ms at least if contended,
        // unless looks gave the CPU already.
        assert!(matches!(looked(0, 0), Step::Paced(1)));
        assert!(matches!(looked(0, 600), Step::Paced(0)));
        // A 3 ms step that needed reclaim: no rest alone, 2 ms
        // (CONTENDED_REST_PCT of it, rounded up) contended, or with the CPU
        // shared at either end; a step of free memory does not rest for a
        // shared CPU.
        let reclaimed = |pacing: &mut Pacing, contended: bool| {
            pacing.after_step(
                Step::Moved,
                step,
                (at(0), seen(0, 0)),
                (at(3), seen(burst, 0)),
                Delta::ZERO,
                Delta::ZERO,
                if contended { Cpu::Workload } else { Cpu::Alone },
            )
        };
        assert_eq!(CONTENDED_REST_PCT, 50);
        assert!(matches!(
            reclaimed(&mut Pacing::default(), false),
            Step::Moved
        ));
        assert!(matches!(
            reclaimed(&mut Pacing::default(), true),
            Step::Paced(2)
        ));
        let shared = |reclaim: ReclaimCounters| {
            Pacing::default().after_step(
                Step::Moved,
                step,
                (at(0), seen(0, 0)),
                (at(3), reclaim),
                Delta::ZERO,
                Delta::ZERO,
                Cpu::Shared,
            )
        };
        assert!(matches!(shared(seen(burst, 0)), Step::Paced(2)));
        assert!(matches!(shared(seen(0, 0)), Step::Moved));
        // Pressed, or stalled, the CPU shared: as with it alone.
        assert!(matches!(
            shared(seen(burst, burst)),
            Step::Paced(PRESSED_REST_MS)
        ));
        assert!(matches!(
            Pacing::default().after_step(
                Step::Stalled,
                0,
                (at(0), seen(0, 0)),
                (at(3), seen(burst, 0)),
                Delta::ZERO,
                Delta::ZERO,
                Cpu::Shared,
            ),
            Step::Stalled
        ));
        // A contended step that needed no reclaim ends the small steps; a
        // stalled one that saw reclaim starts them.
        let mut pacing = Pacing::default();
        reclaimed(&mut pacing, true);
        assert_eq!(pacing.step_pfns(step), PACED_STEP_PFNS);
        assert!(matches!(
            pacing.after_step(
                Step::Moved,
                step,
                (at(1100), seen(burst, 0)),
                (at(1120), seen(burst, 0)),
                Delta::ZERO,
                Delta::ZERO,
                Cpu::Workload,
            ),
            Step::Paced(10)
        ));
        assert_eq!(pacing.step_pfns(step), step);
        // A step that moved nothing in 5 ms, while reclaim reached `reached`.
        let stalled = |pacing: &mut Pacing, reached: ReclaimCounters| {
            pacing.after_step(
                Step::Stalled,
                0,
                (at(0), seen(0, 0)),
                (at(5), reached),
                Delta::ZERO,
                Delta::ZERO,
                Cpu::Alone,
            )
        };
        let mut pacing = Pacing::default();
        assert!(matches!(
            stalled(&mut pacing, seen(burst, 0)),
            Step::Stalled
        ));
        assert_eq!(pacing.step_pfns(step), PACED_STEP_PFNS);

        // A step that found nothing to spare while the guest refaulted:
        // it looks again before trying.
        let mut pacing = Pacing::default();
        assert!(matches!(
            stalled(&mut pacing, seen(0, burst)),
            Step::Looking(PRESSED_REST_MS)
        ));
        assert!(matches!(
            pacing.before_step(at(5 + PRESSED_REST_MS as i64), seen(0, 2 * burst)),
            Look::Again(_)
        ));
    }

    #[test]
    fn only_a_workload_on_the_cpu_through_steps_is_contention() {
        let t0 = Instant::<Monotonic>::now();
        let at = |ms: i64| t0 + Delta::from_millis(ms);
        let mut pacing = Pacing::default();
        // The first step: what was runnable when the work began may be what
        // the same interrupt woke.
        assert!(!pacing.contended(at(0), true, at(5), true));
        // A step between two contended ends: a workload.
        assert!(pacing.contended(at(5), true, at(10), true));
        assert!(pacing.contended(at(20), true, at(25), true));
        // Alone at either end: no workload, and the next step asks again.
        assert!(!pacing.contended(at(25), true, at(30), false));
        assert!(!pacing.contended(at(30), true, at(35), true));
        assert!(!pacing.contended(at(35), false, at(40), true));
        assert!(pacing.contended(at(40), true, at(45), true));
        // The step before ended too long ago (a stall, a held balloon).
        assert!(!pacing.contended(at(45 + PACE_WINDOW_MS + 1), true, at(2000), true));
        assert!(pacing.contended(at(2000 + PACE_WINDOW_MS), true, at(3500), true));
        // Who else wanted the CPU, for the rests: a workload through the
        // steps, another task at the start or the end, or none.
        assert_eq!(Pacing::default().cpu(at(0), true, at(5), true), Cpu::Shared);
        let mut pacing = Pacing::default();
        assert_eq!(pacing.cpu(at(0), false, at(5), false), Cpu::Alone);
        assert_eq!(pacing.cpu(at(5), true, at(10), false), Cpu::Shared);
        assert_eq!(pacing.cpu(at(10), false, at(15), true), Cpu::Shared);
        assert_eq!(pacing.cpu(at(15), true, at(20), true), Cpu::Workload);
    }

    #[test]
    fn buffers_hold_whole_pages() {
        for pfns in [uapi::C_PFNS_PER_BUFFER, BLOCK_PFNS] {
            let pages = balloon::whole_pages(pfns, balloon::PAGE_SHIFT);
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

    /// VIRTIO_BALLOON_F_MUST_TELL_HOST: no page leaves the balloon before
    /// the host has answered for it, however the step failed (QEMU does not
    /// offer the feature, so no guest test can show it; a host that did
    /// would also see `actual` stay above the target after a broken queue).
    #[test]
    fn must_tell_host_frees_only_acknowledged_pages() {
        for told in [Told::NotSent, Told::Unanswered] {
            assert!(!deflated_may_be_freed(true, told));
            // Without the feature the guest may reuse them at once.
            assert!(deflated_may_be_freed(false, told));
        }
        assert!(deflated_may_be_freed(true, Told::Acked));
        assert!(deflated_may_be_freed(false, Told::Acked));
    }

    /// With memory free, a paced step takes all it is asked for, as an
    /// unpaced one does: its cap ([`PACED_STEP_PFNS`]) is on the pages
    /// that need reclaim, not on free ones (a review found the cap on all
    /// single pages, which made steps 4 MiB where free memory is in holes).
    /// From the page allocator of the KUnit guest, which has that much free.
    #[test]
    fn paced_steps_take_free_single_pages_uncapped() -> Result {
        let wanted = 3 * balloon::whole_pages(PACED_STEP_PFNS, balloon::PAGE_SHIFT);
        for paced in [true, false] {
            let mut pages = balloon::PageList::new()?;
            let mut huge = false;
            assert_eq!(
                alloc_balloon_pages(&mut pages, wanted, &mut huge, paced),
                (0, false)
            );
            assert_eq!(pages.len(), wanted);
        }
        Ok(())
    }

    /// Inflated pages the host may have taken stay in the balloon, even
    /// when its answer never came; only pages never sent go back.
    #[test]
    fn inflated_pages_stay_once_sent() {
        assert!(!inflated_stay_ballooned(Told::NotSent));
        assert!(inflated_stay_ballooned(Told::Unanswered));
        assert!(inflated_stay_ballooned(Told::Acked));
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
        // Blocks keep going for 7 only while config space reads 7: STOP
        // ends the run at once, as in the C driver.
        assert!(hinting::still_hinting(7, 7));
        assert!(!hinting::still_hinting(stop, 7));
        assert!(!hinting::still_hinting(8, 7));
        assert!(!hinting::still_hinting(done, 7));
    }
}
