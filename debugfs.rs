// SPDX-License-Identifier: GPL-2.0

//! The balloon as debugfs shows it: `/sys/kernel/debug/rust_balloon/<device>/`.
//!
//! One file per figure, one value per file, in the spirit of `vmw_balloon`
//! and `hv_balloon`: what the host asked for, what the balloon holds, what
//! it did to get there and how long the host took to answer. Every figure
//! is read without taking a lock, so reading never waits for a step that
//! waits for the host. docs/tools.md lists the fields.

use crate::resize::Resizer;
use core::fmt::{Formatter, Result as FmtResult, Write};
use kernel::{
    debugfs::{Dir, Scope, ScopedDir},
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc,
    },
    time::Delta,
};

/// What the balloon has done since the device was bound, for debugfs.
///
/// Counters only go up; `target` and `actual` are the last values read and
/// written, `hint_held_pages` what hinting holds now, `oom_hold_pages` what
/// inflation waits for now. Counts of memory are in 4 KiB pages (the protocol's unit)
/// whatever the guest's page size.
pub(crate) struct Counters {
    /// The host's target as last read (by the resize work or the OOM
    /// notifier).
    pub(crate) target: Atomic<u32>,
    /// The balloon's size as last written to the config's `actual`.
    pub(crate) actual: Atomic<u32>,
    /// Pages inflated and deflated (with those released on OOM).
    pub(crate) inflated: Atomic<u64>,
    pub(crate) deflated: Atomic<u64>,
    /// Huge blocks (2 MiB on x86-64) inflated whole, and deflated whole
    /// (freed as one block). Migration may split one, so their difference
    /// is at most the blocks the balloon holds whole.
    pub(crate) blocks_inflated: Atomic<u64>,
    pub(crate) blocks_deflated: Atomic<u64>,
    /// Pages given back by the OOM notifier, its calls, and the episodes
    /// they made (calls in close succession; see `resize::Rescue`).
    pub(crate) oom_released: Atomic<u64>,
    pub(crate) oom_notifications: Atomic<u64>,
    pub(crate) oom_episodes: Atomic<u64>,
    /// The longest episode that has ended, from its first call to the end
    /// of its last release, in milliseconds.
    pub(crate) oom_longest_episode_ms: Atomic<u64>,
    /// While inflation waits after deflate on OOM: the available memory it
    /// waits for, in 4 KiB pages; else 0. Written by the resize work.
    pub(crate) oom_hold_pages: Atomic<u64>,
    /// Inflation paced by the guest's pressure (see `resize::Pace`): the
    /// time the resize work rested after steps that needed reclaim or
    /// took free memory while another task waited for the CPU, or were
    /// pressed, with the looks at such a step's ends that found another
    /// task still waiting (see
    /// `resize::cpu_wanted`; each step's looks rounded up to a whole
    /// millisecond) (milliseconds), the stops for pressure, and while stopped for this
    /// target the available memory inflation waits for (4 KiB pages; else
    /// 0).
    pub(crate) paced_ms: Atomic<u64>,
    pub(crate) pressure_stops: Atomic<u64>,
    pub(crate) pressure_floor_pages: Atomic<u64>,
    /// Balloon pages compaction migrated.
    pub(crate) migrated: Atomic<u64>,
    /// Free page hint blocks handed to the host.
    pub(crate) hinted_blocks: Atomic<u64>,
    /// Pages in hint blocks the host has handed back and hinting still
    /// holds: what its shrinker counts, so in guest pages (not 4 KiB ones).
    /// Changed only under the hint blocks' lock.
    pub(crate) hint_held_pages: Atomic<usize>,
    /// Free blocks reported (page reporting), each at least a pageblock.
    pub(crate) reported_blocks: Atomic<u64>,
    /// Inflate steps in which the page allocator failed.
    pub(crate) alloc_failures: Atomic<u64>,
    /// Resize steps that moved nothing (and backed off), but those that
    /// waited after deflate on OOM.
    pub(crate) stalls: Atomic<u64>,
    /// How long a step waited for the host to hand back its buffers after
    /// the last kick: the last step's and the longest, in microseconds.
    /// Written under the balloon's lock only.
    pub(crate) host_wait_last_us: Atomic<u64>,
    pub(crate) host_wait_max_us: Atomic<u64>,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            target: Atomic::new(0),
            actual: Atomic::new(0),
            inflated: Atomic::new(0),
            deflated: Atomic::new(0),
            blocks_inflated: Atomic::new(0),
            blocks_deflated: Atomic::new(0),
            oom_released: Atomic::new(0),
            oom_notifications: Atomic::new(0),
            oom_episodes: Atomic::new(0),
            oom_longest_episode_ms: Atomic::new(0),
            oom_hold_pages: Atomic::new(0),
            paced_ms: Atomic::new(0),
            pressure_stops: Atomic::new(0),
            pressure_floor_pages: Atomic::new(0),
            migrated: Atomic::new(0),
            hinted_blocks: Atomic::new(0),
            hint_held_pages: Atomic::new(0),
            reported_blocks: Atomic::new(0),
            alloc_failures: Atomic::new(0),
            stalls: Atomic::new(0),
            host_wait_last_us: Atomic::new(0),
            host_wait_max_us: Atomic::new(0),
        }
    }

    /// Counts `n` more of `counter`.
    pub(crate) fn count(counter: &Atomic<u64>, n: usize) {
        counter.add(n as u64, Relaxed);
    }

    /// Records one wait for the host. Callers hold the balloon's lock, so
    /// the maximum needs no compare-and-swap.
    pub(crate) fn host_waited(&self, waited: Delta) {
        let us = waited.as_micros_ceil().max(0) as u64;
        self.host_wait_last_us.store(us, Relaxed);
        if us > self.host_wait_max_us.load(Relaxed) {
            self.host_wait_max_us.store(us, Relaxed);
        }
    }
}

/// The balloon's debugfs directory; removed when dropped (in `unbind`,
/// `shutdown` or a failed probe, before the balloon goes).
pub(crate) type View = Scope<Arc<Resizer>>;

/// A file showing `u64` counter `$field` of the balloon's counters.
macro_rules! counter_file {
    ($dir:expr, $balloon:expr, $name:literal, $field:ident) => {
        $dir.read_callback_file(
            $name,
            $balloon,
            &|b: &Arc<Resizer>, f: &mut Formatter<'_>| {
                writeln!(f, "{}", b.counters.$field.load(Relaxed))
            },
        )
    };
}

fn write_features(b: &Arc<Resizer>, f: &mut Formatter<'_>) -> FmtResult {
    let mut first = true;
    for (feature, name) in crate::uapi::FEATURE_NAMES {
        if b.binding.has_feature(feature) {
            f.write_str(if first { "" } else { " " })?;
            f.write_str(name)?;
            first = false;
        }
    }
    f.write_char('\n')
}

fn populate<'data>(b: &'data Arc<Resizer>, dir: &ScopedDir<'data, '_>) {
    dir.read_callback_file(c"features", b, &write_features);
    dir.read_callback_file(
        c"target_pages",
        b,
        &|b: &Arc<Resizer>, f: &mut Formatter<'_>| {
            writeln!(f, "{}", b.counters.target.load(Relaxed))
        },
    );
    dir.read_callback_file(
        c"actual_pages",
        b,
        &|b: &Arc<Resizer>, f: &mut Formatter<'_>| {
            writeln!(f, "{}", b.counters.actual.load(Relaxed))
        },
    );
    dir.read_callback_file(
        c"buffer_pfns",
        b,
        &|b: &Arc<Resizer>, f: &mut Formatter<'_>| {
            writeln!(
                f,
                "{}",
                b.pages_per_buffer * crate::mm::balloon::PFNS_PER_PAGE
            )
        },
    );
    dir.read_callback_file(
        c"backoff_ms",
        b,
        &|b: &Arc<Resizer>, f: &mut Formatter<'_>| writeln!(f, "{}", b.backoff_ms.load(Relaxed)),
    );
    counter_file!(dir, b, c"inflated_pages", inflated);
    counter_file!(dir, b, c"deflated_pages", deflated);
    counter_file!(dir, b, c"huge_blocks_inflated", blocks_inflated);
    counter_file!(dir, b, c"huge_blocks_deflated", blocks_deflated);
    counter_file!(dir, b, c"oom_released_pages", oom_released);
    counter_file!(dir, b, c"oom_notifications", oom_notifications);
    counter_file!(dir, b, c"oom_episodes", oom_episodes);
    counter_file!(dir, b, c"oom_longest_episode_ms", oom_longest_episode_ms);
    counter_file!(dir, b, c"oom_hold_pages", oom_hold_pages);
    counter_file!(dir, b, c"paced_ms", paced_ms);
    counter_file!(dir, b, c"pressure_stops", pressure_stops);
    counter_file!(dir, b, c"pressure_floor_pages", pressure_floor_pages);
    counter_file!(dir, b, c"migrated_pages", migrated);
    counter_file!(dir, b, c"hinted_blocks", hinted_blocks);
    counter_file!(dir, b, c"hint_held_pages", hint_held_pages);
    counter_file!(dir, b, c"reported_blocks", reported_blocks);
    counter_file!(dir, b, c"alloc_failures", alloc_failures);
    counter_file!(dir, b, c"stalls", stalls);
    counter_file!(dir, b, c"host_wait_last_us", host_wait_last_us);
    counter_file!(dir, b, c"host_wait_max_us", host_wait_max_us);
}

/// Creates `name` (the device's name) under `root` with the balloon's
/// figures. The view holds a reference on the balloon: drop it with the
/// other hooks.
pub(crate) fn view(root: &Dir, name: &CStr, balloon: Arc<Resizer>) -> Result<Pin<KBox<View>>> {
    KBox::pin_init(
        root.scope(Ok::<_, Error>(balloon), name, populate),
        GFP_KERNEL,
    )
}
