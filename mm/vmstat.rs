// SPDX-License-Identifier: GPL-2.0

//! Guest memory figures, read from the kernel's counters the way
//! `/proc/meminfo` and `/proc/vmstat` read them, and whether the CPU is
//! contended (what inflation paces itself by besides reclaim).

use crate::bindings as b;

/// Memory the guest could use right now without swapping (MemAvailable in
/// /proc/meminfo), in guest pages.
///
/// # Examples
///
/// ```
/// use kernel::mm::vmstat::available_pages;
///
/// assert!(available_pages() > 0);
/// ```
pub fn available_pages() -> usize {
    // SAFETY: FFI call without preconditions.
    let pages = unsafe { b::si_mem_available() };
    usize::try_from(pages).unwrap_or(0)
}

/// A snapshot of the counters the balloon's statistics report. Amounts of
/// memory are in guest pages; events are counts.
pub struct MemoryCounters {
    /// Pages swapped in (`pswpin`).
    pub swap_in: u64,
    /// Pages swapped out (`pswpout`).
    pub swap_out: u64,
    /// Major page faults (`pgmajfault`).
    pub major_faults: u64,
    /// Page faults, all of them (`pgfault`), which C reports as minor.
    pub minor_faults: u64,
    /// Processes the OOM killer killed (`oom_kill`).
    pub oom_kills: u64,
    /// Allocations that stalled in direct reclaim (`allocstall_*`).
    pub alloc_stalls: u64,
    /// Pages kswapd scanned (`pgscan_kswapd`).
    pub scanned_async: u64,
    /// Pages direct reclaim scanned (`pgscan_direct`).
    pub scanned_direct: u64,
    /// Pages kswapd reclaimed (`pgsteal_kswapd`).
    pub reclaimed_async: u64,
    /// Pages direct reclaim reclaimed (`pgsteal_direct`).
    pub reclaimed_direct: u64,
    /// Huge page allocations and failures; `None` without hugetlb.
    pub hugetlb: Option<(u64, u64)>,
    /// Free memory (`MemFree`).
    pub free: u64,
    /// All memory the kernel manages (`MemTotal`).
    pub total: u64,
    /// Memory available without swapping (`MemAvailable`).
    pub available: u64,
    /// File pages (`nr_file_pages`): the page cache.
    pub caches: u64,
}

/// A node counter summed over all nodes (C's `global_node_page_state()`,
/// which reads a negative sum of per-CPU deltas as 0).
fn node_state(item: b::node_stat_item) -> u64 {
    // SAFETY: FFI call without preconditions; `item` is a valid item.
    unsafe { b::global_node_page_state(item) as u64 }
}

/// Reads the counters now. The event counters exist only with
/// `CONFIG_VM_EVENT_COUNTERS`, as for C's `all_vm_events()`.
///
/// # Examples
///
/// ```
/// use kernel::mm::vmstat::memory_counters;
///
/// let now = memory_counters();
/// assert!(now.total > 0);
/// assert!(now.free <= now.total);
/// ```
#[cfg(CONFIG_VM_EVENT_COUNTERS)]
pub fn memory_counters() -> MemoryCounters {
    let mut events = [0usize; b::vm_event_item_NR_VM_EVENT_ITEMS as usize];
    // SAFETY: `events` has room for every event item.
    unsafe { b::all_vm_events(events.as_mut_ptr().cast()) };
    let event = |item: b::vm_event_item| events[item as usize] as u64;

    // Stalls are counted per zone, in zone order; sum them all.
    let first_stall = (b::vm_event_item_ALLOCSTALL_NORMAL - b::zone_type_ZONE_NORMAL) as usize;
    let after_stalls = (b::vm_event_item_PGSCAN_SKIP_NORMAL - b::zone_type_ZONE_NORMAL) as usize;
    let alloc_stalls = events[first_stall..after_stalls]
        .iter()
        .map(|&n| n as u64)
        .sum();

    #[cfg(CONFIG_HUGETLB_PAGE)]
    let hugetlb = Some((
        event(b::vm_event_item_HTLB_BUDDY_PGALLOC),
        event(b::vm_event_item_HTLB_BUDDY_PGALLOC_FAIL),
    ));
    #[cfg(not(CONFIG_HUGETLB_PAGE))]
    let hugetlb = None;

    let mut info = core::mem::MaybeUninit::<b::sysinfo>::zeroed();
    // SAFETY: `info` is valid for writes.
    unsafe { b::si_meminfo(info.as_mut_ptr()) };
    // SAFETY: Zeroed, then filled in by `si_meminfo`.
    let info = unsafe { info.assume_init() };
    // `si_meminfo` counts in units of `mem_unit`, which is the page size.
    MemoryCounters {
        swap_in: event(b::vm_event_item_PSWPIN),
        swap_out: event(b::vm_event_item_PSWPOUT),
        major_faults: event(b::vm_event_item_PGMAJFAULT),
        minor_faults: event(b::vm_event_item_PGFAULT),
        oom_kills: event(b::vm_event_item_OOM_KILL),
        alloc_stalls,
        scanned_async: node_state(b::node_stat_item_PGSCAN_KSWAPD),
        scanned_direct: node_state(b::node_stat_item_PGSCAN_DIRECT),
        reclaimed_async: node_state(b::node_stat_item_PGSTEAL_KSWAPD),
        reclaimed_direct: node_state(b::node_stat_item_PGSTEAL_DIRECT),
        hugetlb,
        free: info.freeram as u64,
        total: info.totalram as u64,
        available: available_pages() as u64,
        caches: node_state(b::node_stat_item_NR_FILE_PAGES),
    }
}

/// What the guest's page reclaim has done so far, for pacing inflation: the
/// pages it scanned and reclaimed (kswapd's and direct reclaim's, as
/// `pgscan` and `pgsteal` in /proc/vmstat) and the refaults of pages it
/// had evicted recently enough to be working set (`workingset_activate_anon`
/// and `_file`: the kernel activates a refaulting page whose refault
/// distance says it would have stayed had it been active; a page read again
/// long after, as by a stream larger than the cache, counts in
/// `workingset_refault_*` only). Node counters: each may lag by a per-CPU
/// threshold of pages (`global_node_page_state()`).
#[derive(Clone, Copy, Default)]
pub struct ReclaimCounters {
    /// Pages reclaim scanned, kswapd's and direct.
    pub scanned: u64,
    /// Pages reclaim freed, kswapd's and direct.
    pub stolen: u64,
    /// Refaults that activated: pages reclaim took while in use.
    pub refaults: u64,
}

impl ReclaimCounters {
    /// What reclaim did between `earlier` and `self`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            scanned: self.scanned.saturating_sub(earlier.scanned),
            stolen: self.stolen.saturating_sub(earlier.stolen),
            refaults: self.refaults.saturating_sub(earlier.refaults),
        }
    }
}

/// Reads the reclaim counters now (cheaper than [`memory_counters`]: no
/// per-CPU event sums).
pub fn reclaim_counters() -> ReclaimCounters {
    ReclaimCounters {
        scanned: node_state(b::node_stat_item_PGSCAN_KSWAPD)
            + node_state(b::node_stat_item_PGSCAN_DIRECT),
        stolen: node_state(b::node_stat_item_PGSTEAL_KSWAPD)
            + node_state(b::node_stat_item_PGSTEAL_DIRECT),
        refaults: node_state(b::node_stat_item_WORKINGSET_ACTIVATE_ANON)
            + node_state(b::node_stat_item_WORKINGSET_ACTIVATE_FILE),
    }
}

/// Whether the kernel fills freed pages with a value (`init_on_free` zeroes
/// them, page poisoning writes `PAGE_POISON`): the host must then hand
/// back reported or ballooned pages with that content.
pub fn free_page_fill() -> Option<u8> {
    // SAFETY: FFI calls without preconditions.
    let (zero, poison) = unsafe { (b::want_init_on_free(), b::page_poisoning_enabled_static()) };
    if zero {
        Some(0)
    } else if poison {
        Some(b::PAGE_POISON as u8)
    } else {
        None
    }
}

/// Whether another task is runnable on the CPU the caller runs on
/// (`!single_task_running()`): a workload the caller's work takes the CPU
/// from. For task context (in an interrupt on an idle CPU it says true); a
/// hint, read without locks: the caller may be moved to another CPU right
/// after.
///
/// # Examples
///
/// ```
/// use kernel::mm::vmstat::cpu_contended;
///
/// // Whatever it says, it says it without blocking.
/// let _ = cpu_contended();
/// ```
pub fn cpu_contended() -> bool {
    // SAFETY: FFI call without preconditions: it reads the run queue
    // length of whatever CPU the caller is on, with no lock and no
    // reference kept.
    !unsafe { b::single_task_running() }
}
