// SPDX-License-Identifier: GPL-2.0

//! Resizing: inflate and deflate towards the host's target, the backoff
//! when memory is short, deflate on OOM, and balloon page migration.
//!
//! Always there (the inflate and deflate queues are not optional): the
//! [`Resizer`] holds the balloon's pages and the work that moves them.

use super::module_parameters;
use crate::mm::balloon::{self, BalloonPages, Migrate, Mobility, Page, PageList, PFNS_PER_PAGE};
use crate::mm::oom::OomHandler;
use crate::mm::vmstat::{
    available_pages as guest_available_pages, cpu_contended, reclaim_counters, ReclaimCounters,
};
use crate::virtio::{Binding, BoundGuard, Buffer, QueueId};
use crate::{debugfs::Counters, uapi};
use kernel::{
    new_mutex,
    prelude::*,
    sync::{
        atomic::{Atomic, Full, Relaxed},
        Arc, Mutex,
    },
    time::{delay::fsleep, Delta, Instant, Monotonic},
    workqueue::{self, impl_has_work, new_work, Work, WorkItem},
};

/// Inflate queue: PFNs of pages the guest gives up.
pub(super) const INFLATE_QUEUE: QueueId = QueueId(0);
/// Deflate queue: PFNs of pages the guest takes back.
pub(super) const DEFLATE_QUEUE: QueueId = QueueId(1);

/// PFN buffers one step keeps in flight on a queue. The C driver waits for
/// the host after each buffer; here the next buffer is filled while the
/// host works on the previous ones (with a host that handles the queue in
/// a thread of its own, through an ioeventfd).
pub(super) const BUFFERS_IN_FLIGHT: usize = 8;

/// Guest pages in one huge block (512 on x86-64).
pub(super) const HUGE_BLOCK_PAGES: usize = 1 << balloon::HUGE_ORDER;

/// 4 KiB frames in one huge block: a whole 2 MiB host huge page.
pub(super) const BLOCK_PFNS: usize = HUGE_BLOCK_PAGES * PFNS_PER_PAGE;

/// Pages moved into or out of the kernel's balloon list under one hold of
/// its lock: one huge block, which then stays side by side in the list (so
/// deflate frees it as one run). `balloon_page_list_enqueue()` and
/// `_dequeue()` keep interrupts off for the whole list they are given: a
/// step's 4096 pages at once held them off for tens of milliseconds under
/// TCG, a stall for whatever ran on that CPU (the busy-guest bench).
const LIST_BATCH_PAGES: usize = HUGE_BLOCK_PAGES;

/// The least an inflate step takes (4 MiB), unless less is left to the
/// target: see [`Resizer::inflate`].
const MIN_STEP_PFNS: usize = 1024;

/// Steps one work run may take before it yields the worker, so a large
/// target does not hold up the freezer or other work (16 steps of up to
/// 16 MiB).
const STEPS_PER_RUN: usize = 16;

/// Pause after a step that moved nothing: short at first (an allocation
/// failure is often over once reclaim has run), doubling while nothing
/// moves, up to the C driver's fixed 200 ms (and a bit more), back to the
/// shortest as soon as a step moves pages again.
pub(super) const BACKOFF_MIN_MS: u32 = 1;
pub(super) const BACKOFF_MAX_MS: u32 = 256;

/// The pause after one of `ms` that did not help either.
pub(super) fn next_backoff_ms(ms: u32) -> u32 {
    ms.saturating_mul(2).clamp(BACKOFF_MIN_MS, BACKOFF_MAX_MS)
}

/// 4 KiB pages the first OOM notification of an episode releases: what
/// the C driver releases at every one (1 MiB).
pub(super) const OOM_RELEASE_PFNS: usize = 256;

/// The most one OOM notification releases (64 MiB). Each notification of
/// an episode releases twice what the one before did, up to this: a
/// workload that needs 500 MiB the balloon holds goes through the OOM path
/// 13 times, not 500 as with C, and is left with at most one release more
/// than it needed. A workload that grows slowly ends its episodes before
/// the releases grow (see [`OOM_EPISODE_GAP_MS`]): they stay near what it
/// uses in that time. Each release is made with the kernel's `oom_lock`
/// held, as C's is: up to 64 MiB (four deflate steps with virtio-pci's
/// 512-frame buffers, eight with 256), against C's 1 MiB.
pub(super) const OOM_RELEASE_MAX_PFNS: usize = 64 << 8;

/// An OOM notification within this many milliseconds of the last one of
/// an episode (from the end of its release) belongs to it. Under TCG a
/// guest's tmpfs write uses up a 64 MiB release in 1 to 3 s, so 2 s split
/// one workload's need into several episodes.
pub(super) const OOM_EPISODE_GAP_MS: i64 = 5000;

/// Deflate on OOM as it goes: the episode under way, and the hold it puts
/// on inflation, so that the resize work does not take memory back into
/// the pressure that just had it released.
pub(super) struct Rescue {
    episode: Option<Episode>,
    hold: Option<Hold>,
    /// A notification is releasing: inflation waits whatever the guest has
    /// available.
    releasing: bool,
    /// The longest episode that has ended, in milliseconds.
    pub(super) longest_ms: u64,
}

/// OOM notifications that followed each other closely.
pub(super) struct Episode {
    start: Instant<Monotonic>,
    /// When the last notification came or its release ended.
    last: Instant<Monotonic>,
    pub(super) notifications: u32,
    /// 4 KiB pages released so far.
    pub(super) released_pfns: usize,
    /// What the next notification releases (4 KiB pages).
    next_pfns: usize,
}

impl Episode {
    pub(super) fn ms(&self) -> u64 {
        (self.last - self.start).as_millis().max(0) as u64
    }
}

/// Inflation waits while the host's target is still `target` (as the
/// device's config has it) and the guest has less available than the
/// floor and half of `released_pfns`, what the rescues released since.
/// Half: the workload gave back at least about that much, or the guest
/// found the room elsewhere; requiring all of it would hold for ever when
/// the guest had less than the floor available before the rescue. A new
/// target is the host deciding again, having seen `actual` fall.
#[derive(Clone, Copy)]
struct Hold {
    target: u32,
    released_pfns: usize,
}

impl Hold {
    /// Guest pages the guest must have available to end the hold.
    fn room_pages(&self, floor_pages: usize) -> usize {
        floor_pages + self.released_pfns / PFNS_PER_PAGE / 2
    }
}

impl Rescue {
    pub(super) fn new() -> Self {
        Self {
            episode: None,
            hold: None,
            releasing: false,
            longest_ms: 0,
        }
    }

    /// A notification at `now`, the host's target being `target`: how many
    /// 4 KiB pages to release, and whether it starts an episode, with the
    /// one that ended before it if the resize work has not taken that one
    /// yet. Inflation waits from here.
    pub(super) fn next_release(
        &mut self,
        now: Instant<Monotonic>,
        target: u32,
    ) -> (usize, Option<Option<Episode>>) {
        self.releasing = true;
        if !matches!(self.hold, Some(hold) if hold.target == target) {
            self.hold = Some(Hold {
                target,
                released_pfns: 0,
            });
        }
        match &mut self.episode {
            Some(episode) if (now - episode.last).as_millis() <= OOM_EPISODE_GAP_MS => {
                episode.last = now;
                episode.next_pfns = (episode.next_pfns * 2).min(OOM_RELEASE_MAX_PFNS);
                (episode.next_pfns, None)
            }
            _ => {
                let started = Episode {
                    start: now,
                    last: now,
                    notifications: 0,
                    released_pfns: 0,
                    next_pfns: OOM_RELEASE_PFNS,
                };
                let ended = self.episode.replace(started);
                if let Some(episode) = &ended {
                    self.longest_ms = self.longest_ms.max(episode.ms());
                }
                (OOM_RELEASE_PFNS, Some(ended))
            }
        }
    }

    /// The notification's release ended at `now`, with `pfns` 4 KiB pages
    /// released.
    pub(super) fn released(&mut self, pfns: usize, now: Instant<Monotonic>) {
        self.releasing = false;
        if let Some(episode) = &mut self.episode {
            episode.notifications = episode.notifications.saturating_add(1);
            episode.released_pfns += pfns;
            episode.last = now;
        }
        if let Some(hold) = &mut self.hold {
            hold.released_pfns += pfns;
            if hold.released_pfns == 0 {
                // Nothing to wait for (an empty balloon).
                self.hold = None;
            }
        }
    }

    /// The episode, if one is open, no notification is releasing and none
    /// came in the last [`OOM_EPISODE_GAP_MS`] before `now`.
    pub(super) fn take_ended(&mut self, now: Instant<Monotonic>) -> Option<Episode> {
        match &self.episode {
            Some(episode)
                if !self.releasing && (now - episode.last).as_millis() > OOM_EPISODE_GAP_MS =>
            {
                let ended = self.episode.take();
                if let Some(episode) = &ended {
                    self.longest_ms = self.longest_ms.max(episode.ms());
                }
                ended
            }
            _ => None,
        }
    }

    /// Whether the hold makes inflation wait, the host's target being
    /// `target` and the guest having `available` pages with a floor of
    /// `floor_pages` (or a release is running); ends the hold if not.
    /// [`Rescue::inflation_held`] adds the episode.
    pub(super) fn holds(&mut self, target: u32, available: usize, floor_pages: usize) -> bool {
        if self.releasing {
            return true;
        }
        match self.hold {
            Some(hold) if hold.target == target && available < hold.room_pages(floor_pages) => true,
            _ => {
                self.hold = None;
                false
            }
        }
    }

    /// Whether inflation must wait, the host's target being `target` and
    /// the guest having `available` pages with a floor of `floor_pages`:
    /// all through an episode, whatever the target (between two of its
    /// notifications the guest has only the last release to spare, and a
    /// host that sets a new target then has not seen the episode end:
    /// unlike C, which inflates towards a new target at once), then while
    /// the hold lasts (see [`Rescue::holds`]).
    pub(super) fn inflation_held(
        &mut self,
        target: u32,
        available: usize,
        floor_pages: usize,
    ) -> bool {
        // First: it ends a hold whose target the host has changed.
        let held = self.holds(target, available, floor_pages);
        held || self.in_episode()
    }

    /// What [`Rescue::holds`] waits for, in guest pages: 0 if nothing.
    pub(super) fn room_pages(&self, floor_pages: usize) -> usize {
        self.hold.map_or(0, |hold| hold.room_pages(floor_pages))
    }

    /// Whether an episode is open.
    fn in_episode(&self) -> bool {
        self.episode.is_some()
    }
}

/// Inflation paced by what it costs the guest.
///
/// Taking a page the guest has free costs it nothing; taking one that
/// reclaim must free first costs whatever waits for that CPU meanwhile
/// (one vCPU: the workload); and once reclaim evicts pages that are needed
/// again soon (working-set refaults), every further page costs the
/// workload more than it gives the host. So after each inflate step, by what reclaim did
/// during it (see [`pace`]):
/// - nothing: the next step follows at once (an idle guest inflates as fast
///   as without pacing);
/// - it reclaimed what it scanned (cold page cache): the next step takes at
///   most [`PACED_STEP_PFNS`], so that reclaim's cost comes in pieces;
/// - either way, if another task waited for the CPU at the step's start
///   and end and at the end of the step before (see
///   [`Pacing::contended`]; after a step that reclaimed, at its start or
///   its end is enough: see [`Cpu`]; each time still runnable after the
///   work gave it the CPU for a moment: see [`cpu_wanted`]), the work
///   rests half as long as the step took, those moments included,
///   less its wait for the host (see [`CONTENDED_REST_PCT`] and
///   [`Pacing::after_step`]), so that it takes at most about two thirds of
///   a CPU the workload wants (resting as long as the step made the busy
///   guest's balloon slower to its target than C's, for little less work
///   lost). With nothing else wanting the CPU a rest gives it to no one:
///   until 2026-12-07 a step that needed reclaim rested whether or not,
///   and the bench's busy guest with its workload stopped took 1.47 s to
///   its target (C 1.00), 0.84 s with pacing off (`busy-alone`, 5 rounds
///   each, docs/benchmark.md);
/// - the working set refaulted: the guest is pressed. The work
///   stands still and looks again, and stops inflation if the pressure goes
///   on (see [`Resizer::inflate_paced`] and [`Pressure`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pace {
    Go,
    Reclaimed,
    Pressed,
}

/// A step's cost is what reclaim did since the step before if that ended
/// at most this long ago (milliseconds; longer than the longest backoff
/// and rest), else since the step began: what one step evicts comes back
/// while the work rests, and a step after a long quiet must not be blamed
/// for what reclaim did meanwhile.
pub(super) const PACE_WINDOW_MS: i64 = 1000;

/// The least a stop for pressure gives back (16 MiB, 4 KiB pages): the
/// pressed steps may have taken nothing (found nothing to spare while the
/// guest thrashed below the balloon), and the guest needs room to stop.
pub(super) const PRESSURE_GIVE_BACK_PFNS: usize = 4096;

/// The rest after a pressed step (milliseconds), before the work looks
/// again. A pressed step alone does not stop inflation: the first reclaim
/// in a guest whose page cache was read once evicts some of a working set
/// that reclaim has not yet seen referenced (under TCG an x86 guest sets no
/// accessed bit again until the TLB entry goes), which comes back in one
/// burst (the bench's busy guest: 8192 pages refaulted within 0.2 s, then
/// none, in a probe of /proc/vmstat every 0.1 s) and is active from then
/// on. A guest thrashing below the balloon goes on refaulting while the
/// balloon stands still. Short, so that inflation goes on soon after such a
/// burst: with 150 ms the balloon stood still 300 ms (two looks) in a busy
/// bench round, a quarter of its time to the target. A look asks for the
/// refault rate a 150 ms one did (see [`still_pressed`]).
pub(super) const PRESSED_REST_MS: u64 = 50;

/// Looks, [`PRESSED_REST_MS`] apart with the balloon standing still, that
/// must all find the guest pressed to stop inflation (0.9 s): the busy
/// guest's burst went on through one look of 250 ms (16 to 79 MiB
/// refaulted) in three runs of three, and was over within 750 ms.
pub(super) const PRESSED_LOOKS: u32 = 18;

/// The look length [`PRESSURE_MIN_PAGES`] is the noise of (milliseconds):
/// a look of another length scales it (see [`still_pressed`]).
pub(super) const PRESSURE_NOISE_MS: u64 = 150;

/// The longest rest after a step (milliseconds; see [`Cpu`]): a long step
/// (a slow reclaim, a preempted work) does not stop inflation for as long
/// again.
pub(super) const PACE_REST_MAX_MS: u64 = 100;

/// The most a step takes after one that needed reclaim, and the most pages
/// that may need reclaim a paced step takes after the free ones (see
/// `alloc_balloon_pages`) (4 MiB in 4 KiB pages; a full step is 8 or
/// 16 MiB, by transport): reclaim's cost comes in smaller pieces, with a
/// rest after each if another task wants the CPU (see [`Cpu`]). Without
/// the second, the first step that had to reclaim took 16 MiB in 29 ms in
/// a busy bench round with a debug log. Without the first, the busy
/// bench's longest stall had a worse median (0.66 of
/// C's against 0.46), in nine rounds each that do not separate the two
/// (docs/benchmark.md, "the 4 MiB cap after reclaim measured apart").
pub(super) const PACED_STEP_PFNS: usize = 1024;
const _: () = assert!(PACED_STEP_PFNS >= MIN_STEP_PFNS);

/// The rest after a step (of free memory or reclaim) while another task
/// waited for the CPU, in percent of the step's time less its wait for the host
/// (at most [`PACE_REST_MAX_MS`]; the looks at the step's ends that found
/// the task still runnable are part of it, see [`cpu_wanted`], so in the
/// driver a rest is never less than they were). The work then takes at most about two thirds of
/// a CPU a workload wants (less: the scheduler shares it during the step),
/// where without it the busy bench's workload ran at 0.35 to 0.47 of its
/// rate while the balloon took free memory (three rounds at 0.86 s to the
/// target); with it, 0.44 to 0.67 (1.02 to 1.07 s). An idle guest, or one
/// whose workload runs on other CPUs, inflates without it (after reclaim,
/// unless another task was runnable at the step's start or end: see
/// [`Cpu`]).
pub(super) const CONTENDED_REST_PCT: u64 = 50;

/// How long the work gives its CPU away (microseconds) when another task
/// is runnable on it, before it asks again, up to [`CPU_LOOKS`] times (see
/// [`cpu_wanted`]). Traced
/// with the CPUs idle (`selftests/host/probe_idle_pacing.py`, two guests
/// at once as in `make check`), the task found was most often a worker of
/// the CPU's own workqueue pool that the step itself had woken (for the
/// `vmpressure` work its direct reclaim queues, or for the resize work
/// queued again after a rest) and that had not had the CPU yet (likely
/// lazy preemption: a woken task waits for the next tick). Such workers ran
/// 63 to 550 us (5th to 95th percentile of 402 runs) and then slept. A
/// longer one, or a task whose timer expires with the work's at each
/// look, is still taken for a workload: the looks lower the odds, they do
/// not know what the task wants.
pub(super) const CPU_LOOK_US: i64 = 250;

/// The looks ([`CPU_LOOK_US`] each) that must all find another task
/// runnable for the work to count its CPU as wanted. One look of 500 us
/// left an idle guest with a task waking every millisecond on each vCPU
/// (`rb-tick`) resting up to 6.5% of its time to the target (12 cycles of
/// the pacing test's part 2 in `probe_idle_pacing.py`, two guests at
/// once; two of 250 us, up to 2.3%). Likely, not traced: a sleep's timer
/// fires with others' within its slack (`fsleep` has a quarter), so the
/// look woke with such a task, which had not run yet.
pub(super) const CPU_LOOKS: u32 = 2;

/// Whether another task wants the CPU the work runs on, and how long the
/// work gave the CPU away to find out. Runnable at once is not enough:
/// the work sleeps [`CPU_LOOK_US`] and asks again, [`CPU_LOOKS`] times,
/// so that a task woken for a moment (a workqueue worker the step woke,
/// what the host's request woke) runs and goes, while a workload (one
/// that computes) is still runnable after each look. Until 2026-12-08 the
/// run queue's first answer decided: in part 2 of the pacing test
/// (reclaim, CPUs idle) 4 of 12 inflations rested more than a tenth of
/// their time (up to 469 of 3320 ms) beside another guest, for such
/// workers at a step's start or end (see [`Cpu::Shared`]).
fn cpu_wanted() -> (bool, Delta) {
    if !cpu_contended() {
        return (false, Delta::ZERO);
    }
    let from = Instant::<Monotonic>::now();
    for _ in 0..CPU_LOOKS {
        fsleep(Delta::from_micros(CPU_LOOK_US));
        if !cpu_contended() {
            return (false, Instant::<Monotonic>::now() - from);
        }
    }
    (true, Instant::<Monotonic>::now() - from)
}

/// Working-set refaults one step or look may see without the guest being
/// pressed: the larger of this (1 MiB, in guest pages: 256 with 4 KiB pages,
/// 16 with 64 KiB ones) and 1/16 of the step's pages. Counters lag by
/// per-CPU thresholds and other work refaults too; a balloon that evicts a
/// working set makes thousands per step.
pub(super) const PRESSURE_MIN_PAGES: u64 = (256 / PFNS_PER_PAGE) as u64;

/// How inflation goes on after a step of `step_pages` guest pages during
/// which reclaim did `cost`.
///
/// Pressed: working-set refaults beyond the noise and more than a quarter
/// of what reclaim freed meanwhile (what it evicts comes back; a few come
/// from anywhere). Reclaim that scans more than it frees is not a sign by
/// itself: dirty and writeback pages are scanned and not freed, and
/// MGLRU counts scans differently.
pub(super) fn pace(cost: &ReclaimCounters, step_pages: usize) -> Pace {
    if refaulting(cost, PRESSURE_MIN_PAGES.max(step_pages as u64 / 16)) {
        Pace::Pressed
    } else if cost.scanned > 0 {
        Pace::Reclaimed
    } else {
        Pace::Go
    }
}

/// A look `rested_ms` after the one before (or after the pressed step)
/// finds the guest still pressed: refaults above the noise and above a
/// quarter of what reclaim freed, as [`pace`] asks of a step, with the
/// noise ([`PRESSURE_MIN_PAGES`] per [`PRESSURE_NOISE_MS`]) scaled to the
/// look's length: a review found that 50 ms looks held to the whole of it
/// asked three times the refault rate 150 ms ones had.
pub(super) fn still_pressed(rested: &ReclaimCounters, rested_ms: u64) -> bool {
    refaulting(
        rested,
        (PRESSURE_MIN_PAGES * rested_ms)
            .div_ceil(PRESSURE_NOISE_MS)
            .max(1),
    )
}

/// Working-set refaults beyond `noise` and more than a quarter of what
/// reclaim freed meanwhile: what reclaim evicts comes back.
fn refaulting(cost: &ReclaimCounters, noise: u64) -> bool {
    cost.refaults > noise && cost.refaults.saturating_mul(4) > cost.stolen
}

/// Where inflation stopped for the guest's pressure: while the host's
/// target is `target`, inflation leaves the guest `floor_pages` available
/// (what it had once the stop gave pages back), above `min_available_mib`
/// if that is more. A new target is the host
/// deciding again, having seen `actual` stop short; until then the balloon
/// goes on only if the guest comes to have more than that.
#[derive(Clone, Copy)]
pub(super) struct Pressure {
    pub(super) target: u32,
    pub(super) floor_pages: usize,
}

impl Pressure {
    /// The guest pages inflation leaves the guest with `target` set and a
    /// floor of `reserve_pages` (`min_available_mib`).
    pub(super) fn floor(pressure: Option<Pressure>, target: u32, reserve_pages: usize) -> usize {
        match pressure {
            Some(p) if p.target == target => p.floor_pages.max(reserve_pages),
            _ => reserve_pages,
        }
    }
}

/// The pressed steps of paced inflation and the looks after them (see
/// [`Resizer::inflate_paced`]): the decisions alone, apart from the pages
/// and the kernel's counters, so that KUnit can drive them with made-up
/// counters and times.
#[derive(Default)]
pub(super) struct Pacing {
    /// After a pressed step: the 4 KiB pages it took, and how many looks
    /// since found the guest still pressed.
    pressed: Option<(usize, u32)>,
    /// When the last paced step, or the last look that found the guest
    /// still pressed, ended, with the reclaim counters then (none after a
    /// stop).
    last: Option<(Instant<Monotonic>, ReclaimCounters)>,
    /// The last step needed reclaim: the next is a small one (see
    /// [`PACED_STEP_PFNS`]). Until a step needs none, or a new target
    /// (`forget`).
    reclaiming: bool,
    /// When the last step ended with another task runnable on its CPU (see
    /// [`Pacing::contended`]).
    contended_end: Option<Instant<Monotonic>>,
}

/// Who else wanted the CPU of a step (see [`Pacing::cpu`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cpu {
    /// No other task was runnable at the step's start or end (after a
    /// look: see [`cpu_wanted`]).
    Alone,
    /// Another task was, at its start or end, but not at both and at the
    /// end of the step before (as at a first step, whose step before is
    /// none): what an interrupt woke with the work, or a workload that
    /// blocked meanwhile. A step that reclaimed rests for
    /// it: a workload's mapped page that the step reclaims makes it wait
    /// for the page (off the run queue) while the step goes on, and the
    /// step after that then finds the step before ended alone (likely: in
    /// the busy bench, resting only for [`Cpu::Workload`] after reclaim
    /// left the workload 0.28 and 0.25 of its rate in its worst 100 ms,
    /// against 0.36 resting after every reclaim step, medians of 9 rounds
    /// in runs of the same hour; docs/benchmark.md, "no rest for reclaim
    /// with the CPU free").
    Shared,
    /// A workload: see [`Pacing::contended`].
    Workload,
}

/// What to do before the next inflate step (see [`Pacing::before_step`]).
pub(super) enum Look {
    /// Take the step.
    Step,
    /// The guest is still pressed: stand still and look again in this many
    /// milliseconds.
    Again(u64),
    /// The guest went on being pressed with the balloon still: stop
    /// inflation, giving back `pressed_pfns` (4 KiB pages); `rested` is
    /// what reclaim did in the `rested_for` since the last look.
    Stop {
        pressed_pfns: usize,
        rested: ReclaimCounters,
        rested_for: Delta,
    },
}

impl Pacing {
    /// The most 4 KiB pages the next step takes: `full`, or
    /// [`PACED_STEP_PFNS`] if the last step needed reclaim.
    pub(super) fn step_pfns(&self, full: usize) -> usize {
        if self.reclaiming {
            full.min(PACED_STEP_PFNS)
        } else {
            full
        }
    }

    /// Whether a step that began at `began` and ended at `ended` took the
    /// CPU from a workload: another task was runnable on its CPU when it
    /// began (`at_start`) and when it ended (`at_end`), and when the step
    /// before it ended, at most [`PACE_WINDOW_MS`] before this one began.
    /// A workload that wants the CPU is on its run queue at each of these;
    /// the tasks an interrupt wakes with the work are there for a moment.
    /// Traced in an idle guest (`selftests/host/probe_idle_pacing.py`), the
    /// start of the first step after the host's request found such a task
    /// runnable (ksoftirqd, rcu_preempt, the shell that answered the host)
    /// in 14 of 66 fresh boots, another sample in one. Asked of two
    /// samples, an idle guest rested in one pacing test of 33: most likely
    /// such a start with an end that found another (no trace caught one).
    pub(super) fn contended(
        &mut self,
        began: Instant<Monotonic>,
        at_start: bool,
        ended: Instant<Monotonic>,
        at_end: bool,
    ) -> bool {
        let before = self
            .contended_end
            .take()
            .is_some_and(|at| (began - at).as_millis() <= PACE_WINDOW_MS);
        if at_end {
            self.contended_end = Some(ended);
        }
        before && at_start && at_end
    }

    /// Who else wanted the CPU of a step from `began` to `ended`, whose
    /// start and end found another task runnable (`at_start`, `at_end`).
    pub(super) fn cpu(
        &mut self,
        began: Instant<Monotonic>,
        at_start: bool,
        ended: Instant<Monotonic>,
        at_end: bool,
    ) -> Cpu {
        if self.contended(began, at_start, ended, at_end) {
            Cpu::Workload
        } else if at_start || at_end {
            Cpu::Shared
        } else {
            Cpu::Alone
        }
    }

    /// Before a step, at `now` with the reclaim counters `counters`: after
    /// a pressed step, look at what reclaim did while the balloon stood
    /// still. Only right after a rest: a look long after (the work was
    /// held, the target changed) would blame the balloon for whatever
    /// reclaim did meanwhile.
    pub(super) fn before_step(
        &mut self,
        now: Instant<Monotonic>,
        counters: ReclaimCounters,
    ) -> Look {
        if let (Some((pressed_pfns, looks)), Some((at, before))) = (self.pressed.take(), self.last)
        {
            let rested_for = now - at;
            let rested = counters.since(&before);
            let rested_ms = rested_for.as_millis();
            if rested_ms <= PACE_WINDOW_MS && still_pressed(&rested, rested_ms.max(0) as u64) {
                if looks + 1 >= PRESSED_LOOKS {
                    self.last = None;
                    return Look::Stop {
                        pressed_pfns,
                        rested,
                        rested_for,
                    };
                }
                self.pressed = Some((pressed_pfns, looks + 1));
                self.last = Some((now, counters));
                return Look::Again(PRESSED_REST_MS);
            }
        }
        Look::Step
    }

    /// After `step` (`Moved` or `Stalled`) took `step_pfns` 4 KiB pages
    /// between `began` and `ended` (each an instant and the reclaim
    /// counters then), of which it spent `host_wait` waiting for the host,
    /// and around which it gave the CPU for `given` to another task that
    /// was still runnable after (see [`cpu_wanted`]):
    /// what the work does next (see [`pace`]). The step's time, which the
    /// rests are a share of, leaves the wait out: the CPU was free for the
    /// workload meanwhile if the host works on the buffers in a thread of
    /// its own (ioeventfd: QEMU's current virtio-balloon-pci has an
    /// `ioeventfd` property, on by default). QEMU 7.2's has none (`-device
    /// virtio-balloon-pci,help`): the kick runs the device in the vCPU's
    /// thread, and the wait is short. The cost is
    /// counted since the last step or pressed look (see `last`) if that
    /// ended at most [`PACE_WINDOW_MS`] before: what one step evicts comes
    /// back while the work rests or backs off. A step rests
    /// [`CONTENDED_REST_PCT`] of its time if `cpu` was a workload's (see
    /// [`Pacing::contended`]), or if it reclaimed and the CPU was shared
    /// (see [`Cpu`]), at most [`PACE_REST_MAX_MS`], less what `given` gave
    /// already (a rest that covers is `Paced(0)`), and otherwise only if
    /// pressed ([`PRESSED_REST_MS`]).
    // Each is a figure of the step: a struct for them would only name them
    // again.
    #[expect(clippy::too_many_arguments)]
    pub(super) fn after_step(
        &mut self,
        step: Step,
        step_pfns: usize,
        began: (Instant<Monotonic>, ReclaimCounters),
        ended: (Instant<Monotonic>, ReclaimCounters),
        host_wait: Delta,
        given: Delta,
        cpu: Cpu,
    ) -> Step {
        let (now, counters) = ended;
        let since = match self.last {
            Some((at, before)) if (now - at).as_millis() <= PACE_WINDOW_MS => before,
            _ => began.1,
        };
        self.last = Some(ended);
        let pace = pace(&counters.since(&since), step_pfns / PFNS_PER_PAGE);
        self.reclaiming = pace != Pace::Go;
        let rests = match cpu {
            Cpu::Workload => true,
            Cpu::Shared => pace == Pace::Reclaimed,
            Cpu::Alone => false,
        };
        match (step, pace) {
            (step, Pace::Pressed) => {
                self.pressed = Some((step_pfns, 0));
                match step {
                    Step::Moved => Step::Paced(PRESSED_REST_MS),
                    _ => Step::Looking(PRESSED_REST_MS),
                }
            }
            (Step::Moved, _) if rests => {
                let step_us = (now - began.0 - host_wait).as_micros_ceil().max(0) as u64;
                let given_us = given.as_micros_ceil().max(0) as u64;
                let rest_us = (step_us * CONTENDED_REST_PCT)
                    .div_ceil(100)
                    .min(PACE_REST_MAX_MS * 1000)
                    .saturating_sub(given_us);
                if given_us == 0 {
                    Step::Paced(rest_us.div_ceil(1000).clamp(1, PACE_REST_MAX_MS))
                } else {
                    Step::Paced(rest_us.div_ceil(1000))
                }
            }
            (step, _) => step,
        }
    }
}

/// What one step towards the target achieved.
pub(super) enum Step {
    /// At the target: nothing left to do.
    Done,
    /// Moved pages; maybe more to do.
    Moved,
    /// Moved pages, at a cost to the guest (pressure, or the CPU a waiting
    /// task wanted): rest this many milliseconds before the next step (see
    /// [`Pace`]; 0 if the step's looks gave the CPU for as long already,
    /// see [`cpu_wanted`]).
    Paced(u64),
    /// Moved nothing, the guest being pressed: look again in this many
    /// milliseconds (see [`Resizer::inflate_paced`]).
    Looking(u64),
    /// Could not allocate a single page (inflate) or dequeue one (deflate,
    /// while compaction holds them): try again later.
    Stalled,
    /// Waiting after deflate on OOM (see [`Rescue`]): try again later.
    Held,
}

/// What the host knows about the balloon, under the balloon's lock (see
/// [`BalloonPages`]). Nothing here is allocated per step: the buffers are
/// made at probe and the page lists link through `page->lru`.
pub(super) struct State {
    pub(super) binding: Arc<Binding>,
    pub(super) counters: Arc<Counters>,
    /// Balloon size in 4 KiB pages: what the host has been told.
    pub(super) num_pages: u32,
    /// PFN buffers not in a queue: all of them while the lock is free
    /// (fewer only if the device broke holding some).
    pub(super) pfns: KVec<KBox<Buffer>>,
    /// Pages dequeued for deflation but not yet sent...
    pub(super) unsent: PageList,
    /// ...those of the buffer being filled...
    pub(super) batch: PageList,
    /// ...and those in buffers sent during this step.
    pub(super) sent: PageList,
}

impl State {
    /// Sends the pages of `batch` on `queue` in one buffer, kicking the host
    /// if `kick`. Returns whether the buffer was queued, and how sending
    /// went: once queued its pages are in `sent` (the host may see them,
    /// even if the kick then fails); otherwise they stay in `batch`.
    fn send_batch(&mut self, queue: QueueId, kick: bool) -> (bool, Result) {
        let mut device = match self.binding.lock() {
            Ok(device) => device,
            Err(e) => return (false, Err(e)),
        };
        if let Err(e) = queue_pfns(&mut self.pfns, &mut device, queue, |buf| {
            push_list_pfns(buf, &self.batch)
        }) {
            return (false, Err(e));
        }
        self.sent.append(&mut self.batch);
        (true, if kick { device.kick(queue) } else { Ok(()) })
    }

    /// Kicks `queue` and waits until the host has handed back the `count`
    /// buffers sent on it in this step. Returns how long it waited.
    fn wait_sent(&mut self, queue: QueueId, count: usize) -> Result<Delta> {
        if count == 0 {
            return Ok(Delta::ZERO);
        }
        let mut device = self.binding.lock()?;
        device.kick(queue)?;
        let start = Instant::<Monotonic>::now();
        for _ in 0..count {
            let buf = device.wait_buf(queue)?;
            give_back(&mut self.pfns, buf);
        }
        let waited = start.elapsed();
        self.counters.host_waited(waited);
        Ok(waited)
    }
}

/// Returns a PFN buffer to the pool (which has room for all of them).
pub(super) fn give_back(pool: &mut KVec<KBox<Buffer>>, buf: KBox<Buffer>) {
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
    kick_and_wait(pool, device, queue)
}

/// Kicks `queue`, which holds one buffer of ours, and waits until the host
/// has handed it back.
fn kick_and_wait(
    pool: &mut KVec<KBox<Buffer>>,
    device: &mut BoundGuard<'_>,
    queue: QueueId,
) -> Result {
    device.kick(queue)?;
    let buf = device.wait_buf(queue)?;
    give_back(pool, buf);
    Ok(())
}

/// How far the host got with the pages of a step that failed part way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Told {
    /// Never sent: the host knows nothing of them.
    NotSent,
    /// Sent, but the host's answer never came (the queue broke): it may
    /// have acted on them or not.
    Unanswered,
    /// The host handed their buffer back: it has acted on them.
    Acked,
}

/// Whether pages a deflate took out of the balloon may go back to the
/// guest, the host having been told `told`. With
/// VIRTIO_BALLOON_F_MUST_TELL_HOST only once the host has answered; without
/// it at once (the spec lets the guest reuse them before telling). Pages
/// that may not are put back into the balloon.
pub(super) fn deflated_may_be_freed(must_tell_host: bool, told: Told) -> bool {
    !must_tell_host || told == Told::Acked
}

/// Whether pages an inflate step sent stay in the balloon, the host having
/// been told `told`: once sent, the host may have taken them (and dropped
/// what they held), so only a deflate, which tells it, gives them back.
/// A page never sent is still the guest's.
pub(super) fn inflated_stay_ballooned(told: Told) -> bool {
    told != Told::NotSent
}

/// Appends the 4 KiB frame numbers of one guest page, starting at `first`.
pub(super) fn push_page_pfns(buf: &mut Buffer, first: u64) -> Result {
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
    ///
    /// Only a failure before the new page's buffer is queued fails the
    /// migration (the host knows nothing yet). Once it is queued the host
    /// may take the new page, even if its answer never comes, so from there
    /// the migration goes through.
    fn migrate(&mut self, new_pfn: u64, old_pfn: u64) -> Result {
        let mut device = self.binding.lock()?;
        queue_pfns(&mut self.pfns, &mut device, INFLATE_QUEUE, |buf| {
            push_page_pfns(buf, new_pfn)
        })?;
        if let Err(e) = kick_and_wait(&mut self.pfns, &mut device, INFLATE_QUEUE) {
            dev_warn!(
                self.binding.device(),
                "migration: no answer from the host about the new page: {:?}\n",
                e
            );
        }
        if let Err(e) = tell_host(&mut self.pfns, &mut device, DEFLATE_QUEUE, |buf| {
            push_page_pfns(buf, old_pfn)
        }) {
            dev_warn!(
                self.binding.device(),
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
pub(super) struct Inflating {
    pub(super) pages: PageList,
    /// The target for which inflation last found nothing to spare: it
    /// says so once per target, not at every retry along the floor.
    pub(super) out_of_puff: Option<u32>,
    /// Where inflation stopped for the guest's pressure, if it did.
    pub(super) pressure: Option<Pressure>,
    /// The pressed steps and looks (see [`Pacing`]).
    pub(super) pacing: Pacing,
    /// The host's target the above were learned for.
    pub(super) target: u32,
}

impl Inflating {
    fn forget(&mut self) {
        self.out_of_puff = None;
        self.pressure = None;
        self.pacing = Pacing::default();
    }
}

/// The balloon's pages and the work that resizes it.
#[pin_data]
pub(crate) struct Resizer {
    /// First field: dropped first, while everything it may call back into
    /// is still there.
    #[pin]
    pub(crate) pages: BalloonPages<State>,
    #[pin]
    inflating: Mutex<Inflating>,
    /// Deflate on OOM as it goes. Taken alone: never with another of the
    /// driver's locks held, nor while taking one.
    #[pin]
    rescue: Mutex<Rescue>,
    pub(crate) binding: Arc<Binding>,
    /// What the balloon has done, for debugfs (shared with [`State`]).
    pub(crate) counters: Arc<Counters>,
    /// PFN buffers a step keeps in flight: [`BUFFERS_IN_FLIGHT`], or fewer
    /// if the device's rings are smaller.
    depth: usize,
    /// Guest pages in one PFN buffer (see [`crate::pfns_per_buffer`]).
    pub(crate) pages_per_buffer: usize,
    /// Bytes of one PFN buffer: 4 per 4 KiB frame.
    buffer_bytes: usize,
    /// Set on remove and shutdown: no more work may start.
    stopping: Atomic<bool>,
    /// The resize work's next pause if it cannot move (milliseconds).
    pub(crate) backoff_ms: Atomic<u32>,
    /// Resize requests so far (config changes, `ready`): a run lets the
    /// system sleep again only if none came since it read the target.
    resize_requests: Atomic<u32>,
    #[pin]
    resize_work: Work<Resizer>,
}

impl_has_work! {
    impl HasWork<Self> for Resizer { self.resize_work }
}

impl Resizer {
    /// Sets up the balloon, empty, for a device whose inflate and deflate
    /// queues are found, with `pfns_per_buffer` 4 KiB frames per buffer.
    pub(crate) fn new(
        binding: Arc<Binding>,
        pfns_per_buffer: usize,
        counters: Arc<Counters>,
    ) -> Result<Arc<Self>> {
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
        let buffer_bytes = pfns_per_buffer * core::mem::size_of::<u32>();
        let mut pfns = KVec::with_capacity(depth, GFP_KERNEL)?;
        for _ in 0..depth {
            give_back(&mut pfns, Buffer::new(buffer_bytes)?);
        }
        let state = State {
            binding: binding.clone(),
            counters: counters.clone(),
            num_pages: 0,
            pfns,
            unsent: PageList::new()?,
            batch: PageList::new()?,
            sent: PageList::new()?,
        };
        let inflating = Inflating {
            pages: PageList::new()?,
            out_of_puff: None,
            pressure: None,
            pacing: Pacing::default(),
            target: 0,
        };
        // With deflate-on-OOM the guest may take ballooned memory back at
        // any time, so it stays in MemTotal (as in C).
        let deflate_on_oom = binding.has_feature(uapi::F_DEFLATE_ON_OOM);
        Arc::pin_init(
            pin_init!(Self {
                pages <- BalloonPages::new(!deflate_on_oom, new_mutex!(state)),
                inflating <- new_mutex!(inflating),
                rescue <- new_mutex!(Rescue::new()),
                binding,
                counters,
                depth,
                pages_per_buffer: balloon::whole_pages(pfns_per_buffer, balloon::PAGE_SHIFT),
                buffer_bytes,
                stopping: Atomic::new(false),
                backoff_ms: Atomic::new(BACKOFF_MIN_MS),
                resize_requests: Atomic::new(0),
                resize_work <- new_work!("Resizer::resize_work"),
            }),
            GFP_KERNEL,
        )
    }

    /// Stops the resize work: none is queued or running afterwards, and
    /// none queues itself again.
    pub(crate) fn stop(self: &Arc<Self>) {
        crate::stop_work(&self.stopping, self);
        // A run cancelled before it started never let the system sleep.
        self.binding.relax();
    }
}

impl WorkItem for Resizer {
    type Pointer = Arc<Resizer>;

    fn run(this: Arc<Resizer>) {
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
                Ok(step @ (Step::Moved | Step::Paced(_))) => {
                    // Moving again after a stall or an error (which let the
                    // system sleep): awake until the target.
                    if this.backoff_ms.xchg(BACKOFF_MIN_MS, Relaxed) != BACKOFF_MIN_MS {
                        this.binding.stay_awake();
                    }
                    if let Step::Paced(ms) = step {
                        // 0: the looks at the step's ends gave the CPU for
                        // as long (see Pacing::after_step).
                        if ms > 0 {
                            Counters::count(&this.counters.paced_ms, ms as usize);
                            fsleep(Delta::from_millis(ms as i64));
                        }
                        // A run that rests yields the worker after it, so
                        // that rests do not add up to hold off the freezer.
                        break;
                    }
                }
                Ok(Step::Looking(ms)) => {
                    // Nothing moved: the backoff stays, and the system may
                    // sleep meanwhile, as in a stall.
                    Counters::count(&this.counters.paced_ms, ms as usize);
                    this.binding.relax();
                    fsleep(Delta::from_millis(ms as i64));
                    break;
                }
                Ok(step @ (Step::Stalled | Step::Held)) => {
                    if matches!(step, Step::Stalled) {
                        Counters::count(&this.counters.stalls, 1);
                    }
                    // A stall can last for ever (a target below the
                    // `min_available_mib` floor): let the system sleep
                    // meanwhile; the next step that moves stays awake again.
                    this.binding.relax();
                    this.back_off();
                    break;
                }
                Err(ENODEV) => {
                    // The device is gone: nothing more to wait for.
                    this.binding.relax();
                    return;
                }
                Err(EIO) => {
                    // Usually a broken queue, the device stopped
                    // (`BoundGuard::stop_device`) until it is torn down
                    // (remove, suspend); else a PFN buffer pool a broken
                    // queue emptied. Retrying would only fill the log.
                    dev_err!(
                        this.binding.device(),
                        "resize failed: the device broke (EIO); stopped until it is removed or the system suspends and resumes\n"
                    );
                    this.binding.relax();
                    return;
                }
                Err(e) => {
                    dev_err!(this.binding.device(), "resize failed: {:?}\n", e);
                    this.binding.relax();
                    this.back_off();
                    break;
                }
            }
        }
        Resizer::requeue_resize(&this);
    }
}

impl Resizer {
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
    pub(super) fn request_resize(this: &Arc<Self>) {
        if this.stopping.load(Relaxed) {
            return;
        }
        // Counted before staying awake: see `settle`.
        this.resize_requests.fetch_add(1, Full);
        this.binding.stay_awake();
        // Already queued is fine: that run will read the new target.
        let _ = workqueue::system_freezable().enqueue(this.clone());
    }

    /// Queues the resize work again to go on where a run stopped, or lets
    /// the system sleep if the device is going away.
    fn requeue_resize(this: &Arc<Self>) {
        if this.stopping.load(Relaxed) {
            this.binding.relax();
            return;
        }
        let _ = workqueue::system_freezable().enqueue(this.clone());
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
        Ok(balloon::round_target(target, balloon::PAGE_SHIFT))
    }

    /// Moves the balloon one batch towards the target.
    fn step(&self) -> Result<Step> {
        let target = self.target()?;
        self.pacing_follows(target);
        let current = self.pages.lock().num_pages;
        // Read before the hold is: see `inflate` and `release_on_oom`.
        let notifications = self.counters.oom_notifications.load(Relaxed);
        let (in_episode, held) = self.rescue_status();
        let step = if target > current {
            if held {
                Ok(Step::Held)
            } else {
                self.inflate_paced(target, (target - current) as usize, notifications)
            }
        } else if target < current {
            self.deflate((current - target) as usize).1
        } else if in_episode {
            // Not done before the episode is logged (`rescue_status`).
            Ok(Step::Held)
        } else {
            Ok(Step::Done)
        };
        // Also after a failed step: it may have moved pages all the same.
        let reported = self.report_actual();
        let step = step?;
        reported?;
        Ok(step)
    }

    /// A new target from the host is the host deciding again: what pacing
    /// learned for the last one (a stop's floor, a pressed step, the "out
    /// of puff" line) no longer holds.
    fn pacing_follows(&self, target: u32) {
        let mut inflating = self.inflating.lock();
        if inflating.target != target {
            inflating.target = target;
            inflating.forget();
            self.counters.pressure_floor_pages.store(0, Relaxed);
        }
    }

    /// Forgets what pacing learned: on a new target, and on restore (the
    /// balloon starts again from empty, and the monotonic clock stood still
    /// through the suspend, so the counters read before it would be blamed
    /// on the first step after it).
    pub(crate) fn forget_pacing(&self) {
        self.inflating.lock().forget();
        self.counters.pressure_floor_pages.store(0, Relaxed);
    }

    /// Moves every page of `state.sent` into the balloon, a huge block's
    /// worth per hold of the list lock (see [`LIST_BATCH_PAGES`]), and counts
    /// them in `num_pages`; returns how many 4 KiB pages.
    fn balloon_sent(&self, state: &mut State) -> usize {
        let pfns = state.sent.len() * PFNS_PER_PAGE;
        while !state.sent.is_empty() {
            state.sent.move_to(&mut state.batch, LIST_BATCH_PAGES);
            self.pages.enqueue(&mut state.batch);
        }
        state.num_pages += pfns as u32;
        pfns
    }

    /// Replaces the PFN buffers a broken queue kept: the teardown that ends
    /// a broken binding drops them. Called on restore, the only way back
    /// from a teardown (not per step: every step would take the balloon's
    /// lock once more). Until then, and if this fails, steps use the
    /// buffers the pool has (see `inflate`). The new buffers are allocated
    /// without the lock (see the lock order).
    pub(crate) fn refill_pfn_buffers(&self) -> Result {
        let missing = self.depth - self.pages.lock().pfns.len();
        for _ in 0..missing {
            let buf = Buffer::new(self.buffer_bytes)?;
            let mut state = self.pages.lock();
            if state.pfns.len() < self.depth {
                give_back(&mut state.pfns, buf);
            }
        }
        Ok(())
    }

    /// The most 4 KiB frames one step moves: its buffers, all full.
    fn step_pfns(&self) -> usize {
        self.depth * self.pages_per_buffer * PFNS_PER_PAGE
    }

    /// Logs the OOM episode that has ended, if any, and tells whether one
    /// is still open and whether inflation is held (see [`Rescue`]).
    fn rescue_status(&self) -> (bool, bool) {
        let target = self.counters.target.load(Relaxed);
        let available = guest_available_pages();
        let floor = reserve_pages();
        let mut rescue = self.rescue.lock();
        let ended = rescue.take_ended(Instant::now());
        let in_episode = rescue.in_episode();
        let held = rescue.inflation_held(target, available, floor);
        // What inflation waits for (at least the floor), 0 if it does not.
        let room = if held {
            rescue.room_pages(floor).max(floor)
        } else {
            0
        };
        self.counters
            .oom_longest_episode_ms
            .store(rescue.longest_ms, Relaxed);
        drop(rescue);
        self.counters
            .oom_hold_pages
            .store((room * PFNS_PER_PAGE) as u64, Relaxed);
        if let Some(episode) = ended {
            self.log_episode(&episode, room);
        }
        (in_episode, held)
    }

    /// One line per OOM episode that released anything, once it has ended;
    /// with the available memory inflation waits for (guest pages), if it
    /// waits.
    fn log_episode(&self, episode: &Episode, room_pages: usize) {
        if episode.released_pfns == 0 {
            return;
        }
        let mib = |pfns: usize| pfns >> (20 - 12);
        let (released, notifications, ms) = (
            mib(episode.released_pfns),
            episode.notifications,
            episode.ms(),
        );
        if room_pages > 0 {
            dev_info!(
                self.binding.device(),
                "out of memory: released {} MiB in {} notifications over {} ms; inflating again once {} MiB are available or the host sets a new target\n",
                released,
                notifications,
                ms,
                mib(room_pages * PFNS_PER_PAGE)
            );
        } else {
            dev_info!(
                self.binding.device(),
                "out of memory: released {} MiB in {} notifications over {} ms\n",
                released,
                notifications,
                ms
            );
        }
    }

    /// Tells the host how large the balloon is.
    pub(super) fn report_actual(&self) -> Result {
        let actual = self.pages.lock().num_pages;
        self.binding
            .lock()?
            .write_config_le32(uapi::CONFIG_ACTUAL, actual)?;
        self.counters.actual.store(actual, Relaxed);
        Ok(())
    }

    /// [`Resizer::inflate`], paced by what reclaim did since the step before
    /// (see [`Pace`]): a step that needed reclaim makes the next a small
    /// one, and a step rests only if another task wants the CPU (see
    /// [`Cpu`]). After a
    /// pressed step (one that moved pages, or found nothing to spare, while
    /// reclaim evicted or churned the working set) the work stands still
    /// and looks again every [`PRESSED_REST_MS`] before it takes more: if
    /// the guest goes on refaulting or churning through [`PRESSED_LOOKS`]
    /// looks with the balloon still, it is thrashing below the balloon, and
    /// inflation stops for the host's `target`, gives back what the pressed
    /// step took (at least [`PRESSURE_GIVE_BACK_PFNS`]) and says so once
    /// (see [`Pressure`]). At the first quiet look, the pressure was the
    /// burst that the first reclaim of a page cache read once brings, and
    /// inflation goes on.
    fn inflate_paced(&self, target: u32, wanted: usize, notifications: u64) -> Result<Step> {
        if *module_parameters::pace_inflation.value() == 0 {
            return Ok(self.inflate(target, wanted, notifications, false)?.0);
        }
        // Bound first: a guard in the scrutinee would be held through the
        // arms, and stop_for_pressure takes this lock to set the floor.
        let look = {
            let pacing = &mut self.inflating.lock().pacing;
            (
                pacing.before_step(Instant::<Monotonic>::now(), reclaim_counters()),
                pacing.step_pfns(wanted),
            )
        };
        let wanted = match look {
            (Look::Step, wanted) => wanted,
            (Look::Again(ms), _) => return Ok(Step::Looking(ms)),
            (
                Look::Stop {
                    pressed_pfns,
                    rested,
                    rested_for,
                },
                _,
            ) => return Ok(self.stop_for_pressure(target, pressed_pfns, &rested, rested_for)),
        };
        let (contended_at_start, yielded_at_start) = cpu_wanted();
        let start = Instant::<Monotonic>::now();
        let at_start = reclaim_counters();
        let inflated = self.counters.inflated.load(Relaxed);
        let (step, host_wait) = self.inflate(target, wanted, notifications, true)?;
        if !matches!(step, Step::Moved | Step::Stalled) {
            return Ok(step);
        }
        let step_pfns = self
            .counters
            .inflated
            .load(Relaxed)
            .saturating_sub(inflated) as usize;
        let ended = (Instant::<Monotonic>::now(), reclaim_counters());
        let (contended_at_end, yielded_at_end) = cpu_wanted();
        // A look that found another task still runnable gave the CPU to
        // it, as a rest does: if the step rests, that is part of its rest
        // (see Pacing::after_step). One that found the CPU free gave it
        // to a task that wanted a moment: a look, not a rest.
        let given = [
            (contended_at_start, yielded_at_start),
            (contended_at_end, yielded_at_end),
        ]
        .iter()
        .filter(|(contended, _)| *contended)
        .fold(Delta::ZERO, |sum, (_, yielded)| sum + *yielded);
        let next = {
            let pacing = &mut self.inflating.lock().pacing;
            let cpu = pacing.cpu(start, contended_at_start, ended.0, contended_at_end);
            pacing.after_step(
                step,
                step_pfns,
                (start, at_start),
                ended,
                host_wait,
                given,
                cpu,
            )
        };
        if matches!(next, Step::Paced(_)) {
            let given_ms = (given.as_micros_ceil().max(0) as usize).div_ceil(1000);
            Counters::count(&self.counters.paced_ms, given_ms);
        }
        Ok(next)
    }

    /// Stops inflation for the guest's pressure (see
    /// [`Resizer::inflate_paced`]): gives back what the pressed step took,
    /// `pressed_pfns` (at least [`PRESSURE_GIVE_BACK_PFNS`]), sets the floor
    /// for `target` at what the guest has available then, and logs what
    /// reclaim did in the `rested` time the balloon stood still.
    fn stop_for_pressure(
        &self,
        target: u32,
        pressed_pfns: usize,
        rested: &ReclaimCounters,
        rested_for: Delta,
    ) -> Step {
        let give_back = pressed_pfns.max(PRESSURE_GIVE_BACK_PFNS);
        let mut given = 0;
        while given < give_back {
            let (freed, result) = self.deflate(give_back - given);
            given += freed;
            if freed == 0 || result.is_err() {
                break;
            }
        }
        // Only this work inflates: nothing takes the pages back before the
        // floor is set.
        let available = guest_available_pages();
        self.inflating.lock().pressure = Some(Pressure {
            target,
            floor_pages: available,
        });
        Counters::count(&self.counters.pressure_stops, 1);
        self.counters
            .pressure_floor_pages
            .store((available * PFNS_PER_PAGE) as u64, Relaxed);
        let mib = |pfns: usize| pfns >> (20 - 12);
        dev_info!(
            self.binding.device(),
            "memory pressure: pressed at {} looks in a row with the balloon still; in the last {} ms reclaim refaulted {} MiB, scanned {} MiB and freed {} MiB; gave back {} MiB and holding with {} MiB available until the guest has more or the host sets a new target\n",
            PRESSED_LOOKS,
            rested_for.as_millis().max(0),
            mib(rested.refaults as usize * PFNS_PER_PAGE),
            mib(rested.scanned as usize * PFNS_PER_PAGE),
            mib(rested.stolen as usize * PFNS_PER_PAGE),
            mib(given),
            mib(available * PFNS_PER_PAGE)
        );
        Step::Moved
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
    ///
    /// `notifications` is the count of OOM notifications read before the
    /// step found inflation not held: if one has come since, the pages
    /// allocated may be what it released, so they go back and the step
    /// waits (a release frees pages under the balloon's lock, so one that
    /// freed pages before this step took the lock is seen).
    ///
    /// `paced`: single pages come as [`alloc_balloon_pages`] takes them
    /// for paced inflation.
    ///
    /// Returns the step, and how long it waited for the host's answer.
    fn inflate(
        &self,
        target: u32,
        wanted: usize,
        notifications: u64,
        paced: bool,
    ) -> Result<(Step, Delta)> {
        let mut guard = self.inflating.lock();
        let new = &mut *guard;
        let reserve = reserve_pages();
        let floor = Pressure::floor(new.pressure, target, reserve);
        let held_for = if floor > reserve {
            floor * PFNS_PER_PAGE
        } else {
            0
        };
        self.counters
            .pressure_floor_pages
            .store(held_for as u64, Relaxed);
        let spare = guest_available_pages().saturating_sub(floor) * PFNS_PER_PAGE;
        // Less than a small step to spare (but what is left to the target)
        // is nothing: the guest's available memory moves by a few pages all
        // the time, and a balloon that took them as they came would creep
        // along its floor, reclaiming for every few pages.
        let wanted = if spare < wanted.min(MIN_STEP_PFNS) {
            0
        } else {
            wanted.min(spare).min(self.step_pfns())
        };
        let pages = balloon::whole_pages(wanted, balloon::PAGE_SHIFT);
        let mut huge = pages >= HUGE_BLOCK_PAGES;
        let (blocks, short) = alloc_balloon_pages(&mut new.pages, pages, &mut huge, paced);
        if short {
            Counters::count(&self.counters.alloc_failures, 1);
        }
        if new.pages.is_empty() {
            if floor > reserve && pages == 0 {
                // Stopped for the guest's pressure, which `inflate_paced`
                // logged: waiting for room, not out of puff.
                return Ok((Step::Held, Delta::ZERO));
            }
            if new.out_of_puff != Some(target) {
                dev_info!(
                    self.binding.device(),
                    "out of puff: no page to spare (keeping {} MiB available), backing off\n",
                    *module_parameters::min_available_mib.value()
                );
                new.out_of_puff = Some(target);
            }
            return Ok((Step::Stalled, Delta::ZERO));
        }

        let mut state = self.pages.lock();
        let state = &mut *state;
        if self.counters.oom_notifications.load(Relaxed) != notifications {
            new.pages.clear();
            return Ok((Step::Held, Delta::ZERO));
        }
        // As many buffers as the pool has: short only while a broken queue
        // holds some (see `refill_pfn_buffers`).
        let depth = self.depth.min(state.pfns.len());
        if depth == 0 {
            new.pages.clear();
            return Err(EIO);
        }
        let mut in_flight = 0;
        let mut sent = Ok(());
        while !new.pages.is_empty() && in_flight < depth {
            // Blocks come first on the list, so each buffer holds whole
            // blocks or halves of one.
            new.pages.move_to(&mut state.batch, self.pages_per_buffer);
            // The host starts on each huge block's worth while the next
            // buffers are filled; never on half a block (see
            // `pfns_per_buffer`).
            let kick = new.pages.is_empty()
                || ((in_flight + 1) * self.pages_per_buffer) % HUGE_BLOCK_PAGES == 0;
            let (queued, result) = state.send_batch(INFLATE_QUEUE, kick);
            in_flight += usize::from(queued);
            sent = result;
            if sent.is_err() {
                break;
            }
        }
        // Pages never sent (only after an error) are still the guest's
        // (`inflated_stay_ballooned(Told::NotSent)` is false).
        state.batch.clear();
        new.pages.clear();
        drop(guard);
        let acked = state.wait_sent(INFLATE_QUEUE, in_flight);
        let told = match acked {
            Ok(_) => Told::Acked,
            Err(_) => Told::Unanswered,
        };
        let mut moved = 0;
        if inflated_stay_ballooned(told) {
            moved = self.balloon_sent(state);
            Counters::count(&self.counters.inflated, moved);
        }
        if sent.is_ok() && acked.is_ok() {
            // Blocks go first: all of them went in whole.
            Counters::count(&self.counters.blocks_inflated, blocks);
        }
        // A broken queue: the pages sent stay ballooned (see
        // `inflated_stay_ballooned`); `step` still reports `actual`.
        let waited = acked?;
        if moved == 0 {
            sent?;
            return Ok((Step::Stalled, waited));
        }
        Ok((Step::Moved, waited))
    }

    /// Gives back up to [`BUFFERS_IN_FLIGHT`] buffers' worth of the `wanted`
    /// 4 KiB pages. Returns the 4 KiB pages that went back to the guest,
    /// which an error may leave above zero, and how the step went.
    ///
    /// With VIRTIO_BALLOON_F_MUST_TELL_HOST the pages are freed once the
    /// host has acknowledged them, as in C, and those it was not told about
    /// (a broken queue) go back into the balloon. Without it (QEMU does not
    /// offer it) the spec lets the guest reuse them right away, so they are
    /// freed while the host works on the buffers.
    fn deflate(&self, wanted: usize) -> (usize, Result<Step>) {
        let mut state = self.pages.lock();
        let state = &mut *state;
        // As many buffers as the pool has (see `inflate`): a short pool makes
        // the step smaller, and only an empty one fails it.
        let depth = self.depth.min(state.pfns.len());
        if depth == 0 {
            return (0, Err(EIO));
        }
        let step_pfns = depth * self.pages_per_buffer * PFNS_PER_PAGE;
        let wanted = wanted.min(step_pfns).min(state.num_pages as usize);
        let pages = balloon::whole_pages(wanted, balloon::PAGE_SHIFT);
        while state.unsent.len() < pages {
            let chunk = (pages - state.unsent.len()).min(LIST_BATCH_PAGES);
            if self.pages.dequeue(&mut state.unsent, chunk) == 0 {
                break;
            }
        }
        if state.unsent.is_empty() {
            return (0, Ok(Step::Stalled));
        }
        // Out of the balloon for now; what may not be freed comes back.
        state.num_pages -= (state.unsent.len() * PFNS_PER_PAGE) as u32;
        let mut in_flight = 0;
        let mut sent = Ok(());
        while !state.unsent.is_empty() && in_flight < depth {
            state
                .unsent
                .move_to(&mut state.batch, self.pages_per_buffer);
            let (queued, result) = state.send_batch(DEFLATE_QUEUE, false);
            in_flight += usize::from(queued);
            sent = result;
            if sent.is_err() {
                break;
            }
        }
        let must_tell = state.binding.has_feature(uapi::F_MUST_TELL_HOST);
        let (mut freed, mut blocks) = (0, 0);
        let mut free = |list: &mut PageList, told| {
            if deflated_may_be_freed(must_tell, told) {
                freed += list.len();
                blocks += list.clear();
            }
        };
        free(&mut state.sent, Told::Unanswered);
        // A queue that breaks after the host answered some of the buffers
        // leaves all of `sent` unanswered: kept, which is safe, though the
        // balloon then holds pages the host believes it gave back.
        let acked = state.wait_sent(DEFLATE_QUEUE, in_flight);
        free(
            &mut state.sent,
            if acked.is_ok() {
                Told::Acked
            } else {
                Told::Unanswered
            },
        );
        free(&mut state.batch, Told::NotSent);
        free(&mut state.unsent, Told::NotSent);
        // What the host was not (surely) told about stays ballooned.
        let kept = state.sent.len() + state.batch.len() + state.unsent.len();
        if kept > 0 {
            state.sent.append(&mut state.batch);
            state.sent.append(&mut state.unsent);
            self.balloon_sent(state);
        }
        let freed = freed * PFNS_PER_PAGE;
        Counters::count(&self.counters.deflated, freed);
        Counters::count(&self.counters.blocks_deflated, blocks);
        (freed, sent.and(acked).map(|_| Step::Moved))
    }

    /// Frees what is still in the balloon once the device has been reset,
    /// which ends the host's claim on it: the pages `deflate_all` had to
    /// keep because the host could not be told (a broken queue with
    /// VIRTIO_BALLOON_F_MUST_TELL_HOST). Returns how many 4 KiB pages.
    pub(super) fn release_after_reset(&self) -> usize {
        let mut state = self.pages.lock();
        let state = &mut *state;
        let mut freed = 0;
        while self.pages.dequeue(&mut state.unsent, LIST_BATCH_PAGES) > 0 {
            freed += state.unsent.len();
            state.unsent.clear();
        }
        let freed = freed * PFNS_PER_PAGE;
        state.num_pages = state.num_pages.saturating_sub(freed as u32);
        Counters::count(&self.counters.deflated, freed);
        freed
    }

    /// Empties the balloon: used on remove, with work stopped.
    pub(super) fn deflate_all(&self) {
        loop {
            let left = self.pages.lock().num_pages as usize;
            if left == 0 {
                break;
            }
            match self.deflate(left).1 {
                Ok(Step::Stalled) => fsleep(Delta::from_millis(10)),
                Ok(_) => {}
                Err(e) => {
                    dev_err!(self.binding.device(), "deflate on remove failed: {:?}\n", e);
                    break;
                }
            }
        }
        let _ = self.report_actual();
    }
}

impl OomHandler for Resizer {
    /// Deflate on OOM: give back memory (telling the host first) instead of
    /// letting the OOM killer take a process; more at each notification of
    /// an episode (see [`OOM_RELEASE_MAX_PFNS`]). The resize work then holds
    /// inflation until the guest has room again (see [`Rescue`]), and logs
    /// the episode once it is over.
    fn release_on_oom(this: &Arc<Self>) -> usize {
        // The target the hold is for: the host's as it is now (the resize
        // work may not have read a new one yet), else the last one read.
        let _ = this.target();
        let target = this.counters.target.load(Relaxed);
        let (available, floor) = (guest_available_pages(), reserve_pages());
        let (wanted, started, room) = {
            let mut rescue = this.rescue.lock();
            // For the log line of an episode this one ends: what inflation
            // still waits for, read before this notification holds it anew.
            let room = if rescue.holds(target, available, floor) {
                rescue.room_pages(floor)
            } else {
                0
            };
            let (wanted, started) = rescue.next_release(Instant::now(), target);
            (wanted, started, room)
        };
        // Counted once inflation is held, before anything is released: an
        // inflate step that read the count before this found it not held
        // (the rescue lock orders the two), and sees the new count under
        // the balloon's lock (see `inflate`).
        Counters::count(&this.counters.oom_notifications, 1);
        if let Some(ended) = started {
            Counters::count(&this.counters.oom_episodes, 1);
            if let Some(episode) = ended {
                // Before the resize work logged it.
                this.log_episode(&episode, room);
            }
        }
        let mut released = 0;
        while released < wanted {
            // Counted even if talking to the host failed after they were
            // freed.
            let (freed, step) = this.deflate(wanted - released);
            released += freed;
            if freed == 0 || step.is_err() {
                break;
            }
        }
        let _ = this.report_actual();
        Counters::count(&this.counters.oom_released, released);
        this.rescue.lock().released(released, Instant::now());
        if released > 0 {
            // The resize work logs the episode and keeps the hold.
            Self::requeue_resize(this);
        }
        released / PFNS_PER_PAGE
    }
}

/// Allocates up to `n` balloon pages onto `list` (of single pages);
/// returns how many whole huge blocks it took, and whether an allocation
/// failed.
///
/// While `huge` is set and a whole block is wanted, it takes free
/// [`balloon::HUGE_ORDER`] blocks (without reclaim) and splits them into
/// single pages, each block's pages together and in ascending order at the
/// front of the list, so that a buffer taken from the front holds whole
/// blocks; it clears `huge` when none is left. The rest comes one page at a
/// time, and goes to the back: in front it would shift every block across
/// two buffers.
///
/// Unless `paced`, the single pages come from [`Page::alloc`], as the C
/// driver's do: below the low watermark it wakes kswapd, and below the min
/// it reclaims. If `paced`, free single pages first, as many as are free
/// (no reclaim, no kswapd; an allocation that may not reclaim takes
/// them down to the min watermark, as the huge blocks above do: the slow
/// path of `__alloc_pages()` asks for `ALLOC_WMARK_MIN`), then at most
/// [`PACED_STEP_PFNS`] from [`Page::alloc_direct`], which reclaims in this
/// step, whose time the pacing rests after if the CPU is shared (see
/// [`Cpu`]), and does not wake kswapd. With one vCPU, kswapd, the work and
/// the workload had shared it three ways where reclaim began (see
/// docs/benchmark.md, "Issue 19: reclaim in the step"). Other allocations
/// below the low watermark still wake kswapd.
pub(super) fn alloc_balloon_pages(
    list: &mut PageList,
    n: usize,
    huge: &mut bool,
    paced: bool,
) -> (usize, bool) {
    let mut got = 0;
    while *huge && n - got >= HUGE_BLOCK_PAGES {
        let Some(block) = Page::alloc_free_block(balloon::HUGE_ORDER, Mobility::Movable) else {
            *huge = false;
            break;
        };
        if list.push_split(block).is_err() {
            break;
        }
        got += HUGE_BLOCK_PAGES;
    }
    let blocks = got / HUGE_BLOCK_PAGES;
    // Up to `max` more single pages from `alloc` to the back of the list,
    // `n` in all at most; whether `alloc` failed first.
    let mut singles = |max: usize, alloc: fn() -> Option<Page>| {
        let end = n.min(got + max);
        while got < end {
            let Some(page) = alloc() else {
                return true;
            };
            list.push_back(page);
            got += 1;
        }
        false
    };
    if !paced {
        return (blocks, singles(n, Page::alloc));
    }
    singles(n, || Page::alloc_free_block(0, Mobility::Movable));
    let reclaimable = balloon::whole_pages(PACED_STEP_PFNS, balloon::PAGE_SHIFT);
    (blocks, singles(reclaimable, Page::alloc_direct))
}

/// Guest pages inflation leaves to the guest (`min_available_mib`).
fn reserve_pages() -> usize {
    let mib = *module_parameters::min_available_mib.value() as usize;
    mib << (20 - kernel::page::PAGE_SHIFT)
}
