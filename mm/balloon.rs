// SPDX-License-Identifier: GPL-2.0

//! Balloon pages: the kernel's balloon page list (`struct balloon_dev_info`)
//! and lists of pages on their way into or out of it.
//!
//! The kernel keeps inflated pages on the balloon's list, linked through
//! `page->lru`, so the driver needs no bookkeeping memory of its own per page;
//! the list also lets compaction migrate balloon pages.

use crate::bindings as b;
use core::ptr::NonNull;
use kernel::{
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Mutex, MutexGuard,
    },
    types::Opaque,
};

mod pfn;

pub use pfn::{round_target, whole_pages};

/// The guest's page shift.
pub const PAGE_SHIFT: u32 = b::PAGE_SIZE.trailing_zeros();

/// Protocol (4 KiB) frames per guest page: 1 with 4 KiB pages, 16 with
/// 64 KiB pages. Evaluated at build time: pages smaller than a frame fail
/// the build.
pub const PFNS_PER_PAGE: usize = pfn::pfns_per_page(PAGE_SHIFT);

/// The largest block the page allocator hands out (`MAX_PAGE_ORDER`, 4 MiB
/// on x86-64).
pub const MAX_PAGE_ORDER: u32 = b::MAX_PAGE_ORDER;

/// Which pageblocks a block is taken from ([`Page::alloc_free_block`]).
#[derive(Clone, Copy)]
pub enum Mobility {
    /// Movable, as balloon pages are (compaction may migrate them).
    Movable,
    /// Unmovable: for blocks the driver never lets compaction move.
    Unmovable,
}

/// Order of the blocks inflation takes first: what the host maps with one
/// PMD (2 MiB; the bindings' `BALLOON_HUGE_ORDER`). Ballooning a whole
/// such block lets the host free a whole transparent huge page, and costs
/// one allocation instead of 512.
pub const HUGE_ORDER: u32 = b::BALLOON_HUGE_ORDER;

// The host's unit and ours agree.
const _: () = assert!(pfn::BALLOON_PFN_SHIFT == b::VIRTIO_BALLOON_PFN_SHIFT);

/// A block of `1 << order` pages the driver owns and that is on no list.
/// Dropping it frees it.
///
/// # Invariants
///
/// `page` heads a block of `1 << order` pages allocated with a single
/// reference that this value owns, and its `lru` is not linked into any
/// list. The block is not a compound page (no `__GFP_COMP`), so it can be
/// split.
pub struct Page {
    page: NonNull<b::page>,
    order: u32,
}

// SAFETY: A page the driver owns may be freed or listed from any thread.
unsafe impl Send for Page {}

impl Page {
    /// Allocates a page for the balloon the way the kernel wants balloon
    /// pages allocated (`balloon_page_alloc()`: movable, no retries, no
    /// warning, no emergency reserves). `None` when memory is short.
    pub fn alloc() -> Option<Self> {
        // SAFETY: FFI call without preconditions.
        let page = unsafe { b::balloon_page_alloc() };
        // INVARIANT: A fresh single page with one reference, on no list.
        NonNull::new(page).map(|page| Self { page, order: 0 })
    }

    /// Like [`Page::alloc`], but without waking kswapd: reclaim, if any, is
    /// direct, in the caller's time.
    pub fn alloc_direct() -> Option<Self> {
        Self::alloc_gfp(b::BALLOON_PACED_GFP, 0)
    }

    /// Allocates a block of `1 << order` pages, only if one is free right
    /// now: no reclaim, compaction or kswapd, no warning, no emergency
    /// reserves. `None` otherwise. Movable blocks get the migrate type
    /// balloon pages get.
    pub fn alloc_free_block(order: u32, mobility: Mobility) -> Option<Self> {
        let flags = match mobility {
            Mobility::Movable => b::BALLOON_FREE_MOVABLE_GFP,
            Mobility::Unmovable => b::BALLOON_FREE_GFP,
        };
        Self::alloc_gfp(flags, order)
    }

    /// A block of `1 << order` pages from `alloc_pages()` with `gfp`, which
    /// holds no `__GFP_COMP` (the flags above).
    fn alloc_gfp(gfp: b::gfp_t, order: u32) -> Option<Self> {
        let page = NonNull::new(alloc_pages(gfp, order))?;
        // INVARIANT: A fresh, non-compound block of `order` with one
        // reference, on no list (the callers' flags have no `__GFP_COMP`).
        Some(Self { page, order })
    }

    /// Takes ownership of a block from a raw pointer.
    ///
    /// # Safety
    ///
    /// `page` heads a block of `1 << order` pages that satisfies the type
    /// invariant and whose ownership the caller hands over (it came from
    /// [`Page::into_raw`] of a block of that order).
    pub unsafe fn from_raw(page: *mut b::page, order: u32) -> Self {
        // INVARIANT: As the caller guarantees; `into_raw` never yields null.
        Self {
            // SAFETY: As above.
            page: unsafe { NonNull::new_unchecked(page) },
            order,
        }
    }

    /// Gives up ownership of the block without freeing it; see
    /// [`Page::from_raw`].
    pub fn into_raw(self) -> NonNull<b::page> {
        core::mem::ManuallyDrop::new(self).page
    }

    /// The block's order.
    pub fn order(&self) -> u32 {
        self.order
    }

    /// Size of the block in bytes.
    pub fn bytes(&self) -> usize {
        b::PAGE_SIZE << self.order
    }

    /// The block's address in the kernel's linear map (C's
    /// `page_address()`, for a guest without highmem): for a bus to hand
    /// to its device.
    pub fn address(&self) -> *mut u8 {
        // SAFETY: `self.page` is a valid page (type invariant).
        unsafe { b::page_address(self.page.as_ptr()) }.cast()
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: The block is owned and on no list (type invariant).
        unsafe { b::__free_pages(self.page.as_ptr(), self.order) };
    }
}

/// Allocates a block of `1 << order` pages through the kernel's own Rust
/// helper for `alloc_pages()`, which sets the allocation tag the page
/// allocator expects (`CONFIG_MEM_ALLOC_PROFILING`): calling
/// `alloc_pages_noprof()` directly would leave it unset, which
/// `MEM_ALLOC_PROFILING_DEBUG` reports with a warning.
fn alloc_pages(gfp: b::gfp_t, order: u32) -> *mut b::page {
    // SAFETY: FFI call without preconditions.
    unsafe { kernel::bindings::alloc_pages(gfp, order) }
}

/// The guest frame number of `page`, in guest pages.
fn guest_pfn(page: NonNull<b::page>) -> u64 {
    // SAFETY: Callers pass a page they own or hold on a list they lock.
    unsafe { b::page_to_pfn(page.as_ptr()) as u64 }
}

/// The frame number of `page`, in 4 KiB protocol units.
fn balloon_pfn(page: NonNull<b::page>) -> u64 {
    pfn::balloon_pfns(guest_pfn(page), PAGE_SHIFT).start
}

fn page_of_lru(lru: *mut b::list_head) -> NonNull<b::page> {
    // SAFETY: Callers pass the `lru` field of a `struct page`; going back by
    // its offset stays within that page struct.
    let page = unsafe { lru.cast::<u8>().sub(b::PAGE_LRU_OFFSET) }.cast::<b::page>();
    // SAFETY: `page` is derived from a non-null field pointer.
    unsafe { NonNull::new_unchecked(page) }
}

fn lru_of_page(page: NonNull<b::page>) -> *mut b::list_head {
    // SAFETY: `lru` lies within the page struct.
    unsafe { page.as_ptr().cast::<u8>().add(b::PAGE_LRU_OFFSET) }.cast()
}

/// A list of pages the driver owns, linked through `page->lru`: pages on
/// their way into the balloon, or just taken out of it. Dropping the list
/// frees its pages.
///
/// # Invariants
///
/// `head` is an initialised list head at a stable address (boxed); every
/// entry on it is the `lru` of a page owned by this list, and `len` counts
/// them.
pub struct PageList {
    head: KBox<Opaque<b::list_head>>,
    len: usize,
    order: u32,
}

// SAFETY: The list and its pages are owned; nothing else links into it.
unsafe impl Send for PageList {}

impl PageList {
    /// Creates an empty list of single pages.
    pub fn new() -> Result<Self> {
        Self::with_order(0)
    }

    /// Creates an empty list of blocks of `1 << order` pages.
    pub fn with_order(order: u32) -> Result<Self> {
        let head = KBox::new(Opaque::<b::list_head>::uninit(), GFP_KERNEL)?;
        // SAFETY: `head.get()` is valid for writes; `INIT_LIST_HEAD`.
        unsafe { b::INIT_LIST_HEAD(head.get()) };
        // INVARIANT: An initialised, empty list in its own allocation.
        Ok(Self {
            head,
            len: 0,
            order,
        })
    }

    fn raw(&self) -> *mut b::list_head {
        self.head.get()
    }

    /// Number of pages on the list.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `page` at the front of the list, which then owns it. A block of
    /// another order is refused (and freed).
    pub fn push(&mut self, page: Page) {
        self.link(page, false);
    }

    /// Adds `page` at the back of the list, as [`PageList::push`] does at
    /// the front.
    pub fn push_back(&mut self, page: Page) {
        self.link(page, true);
    }

    fn link(&mut self, page: Page, back: bool) {
        if page.order != self.order {
            pr_warn!(
                "order {} block on an order {} list\n",
                page.order,
                self.order
            );
            return;
        }
        let page = core::mem::ManuallyDrop::new(page);
        let entry = lru_of_page(page.page);
        let head = self.raw();
        // SAFETY: `head` is a valid list (type invariant) and `entry` the
        // unlinked `lru` of an owned page (`Page` invariant), which the list
        // owns from here on.
        unsafe {
            match back {
                true => b::list_add_tail(entry, head),
                false => b::list_add(entry, head),
            }
        }
        self.len += 1;
    }

    /// Takes the first page off the list.
    pub fn pop(&mut self) -> Option<Page> {
        let head = self.raw();
        // SAFETY: `head` is a valid list (type invariant).
        let entry = unsafe { (*head).next };
        if entry == head {
            return None;
        }
        // SAFETY: `entry` is linked into this list.
        unsafe { b::list_del_init(entry) };
        self.len -= 1;
        // INVARIANT: The block was owned by the list and is now unlinked;
        // every block on the list has the list's order.
        Some(Page {
            page: page_of_lru(entry),
            order: self.order,
        })
    }

    /// Splits `block` into single pages and puts them at the front of this
    /// list of single pages, in ascending order, so that a buffer taken
    /// from the front holds them together. Gives the block back on a list
    /// of blocks.
    pub fn push_split(&mut self, block: Page) -> core::result::Result<(), Page> {
        if self.order != 0 {
            return Err(block);
        }
        let order = block.order;
        let head = block.into_raw();
        // SAFETY: `head` is an owned, non-compound block of `order` with one
        // reference (type invariant of `Page`); afterwards each of its pages
        // has its own reference.
        unsafe { b::split_page(head.as_ptr(), order) };
        // Pushing adds at the front: last page first gives ascending order.
        for i in (0..1usize << order).rev() {
            // SAFETY: The `struct page`s of a block of the buddy allocator
            // are consecutive (it walks them the same way), so `head + i`
            // stays in the block.
            let page = unsafe { NonNull::new_unchecked(head.as_ptr().add(i)) };
            // INVARIANT: After `split_page` each page is a block of order 0
            // with one reference, owned here and on no list.
            self.push(Page { page, order: 0 });
        }
        Ok(())
    }

    /// Moves up to `n` pages from the front of this list to the front of
    /// `other`, which must have the same order, keeping their order;
    /// returns how many. It walks to the `n`th page and moves the run in
    /// one cut and splice (`list_cut_position()`, `list_splice()`), rather
    /// than unlinking and linking each page.
    pub fn move_to(&mut self, other: &mut PageList, n: usize) -> usize {
        let moved = n.min(self.len);
        if self.order != other.order || moved == 0 {
            return 0;
        }
        let (head, to) = (self.raw(), other.raw());
        // The run in between: a list head of its own, on the stack, which
        // stays where it is until the run is spliced off it.
        let cut = Opaque::<b::list_head>::uninit();
        // SAFETY: `head` and `to` are valid, distinct lists (type invariant;
        // `&mut` to both) and this list has at least `moved` entries, so the
        // walk stays on it and `last` is one of its entries; `cut` is
        // initialised empty before the run up to `last` is cut onto it, and
        // the run is spliced as a whole onto the front of `to` before `cut`
        // goes out of scope (nothing links to it afterwards).
        unsafe {
            let mut last = (*head).next;
            for _ in 1..moved {
                last = (*last).next;
            }
            b::INIT_LIST_HEAD(cut.get());
            b::list_cut_position(cut.get(), head, last);
            b::list_splice(cut.get(), to);
        }
        // INVARIANT: The `moved` pages, owned and of `other`'s order, are now
        // on `other` and counted there instead of here.
        self.len -= moved;
        other.len += moved;
        moved
    }

    /// Moves every page of `other` (of the same order) to this list, in
    /// constant time: C's `list_splice()`.
    pub fn append(&mut self, other: &mut PageList) {
        if self.order != other.order || other.is_empty() {
            return;
        }
        let (head, from) = (self.raw(), other.raw());
        // SAFETY: Both are valid, distinct lists (type invariant; `&mut` to
        // both); `other`'s entries move to the front of `head`, and `other`
        // is left empty. Ownership of the pages moves with them.
        unsafe { b::list_splice_init(from, head) };
        self.len += other.len;
        other.len = 0;
    }

    /// Frees every page on the list; returns how many whole, aligned
    /// [`HUGE_ORDER`] blocks of single pages went back as one block.
    pub fn clear(&mut self) -> usize {
        if self.order != 0 {
            while self.pop().is_some() {}
            return 0;
        }
        self.free_single_pages()
    }

    /// Frees single pages in runs of physically contiguous ones, one call
    /// per run (`free_contig_range()`). Pages of a huge block inflation
    /// split come back out of the balloon side by side, so a deflated
    /// 2 MiB block goes back to the allocator as one free block instead of
    /// 512 single pages that it merges again one by one.
    #[cfg(CONFIG_CONTIG_ALLOC)]
    fn free_single_pages(&mut self) -> usize {
        /// Frees `len` pages from guest frame `first` on; returns how many
        /// whole aligned huge blocks they held.
        fn free_run(first: u64, len: u64) -> usize {
            // SAFETY: Each page of the run is a single page (order 0, not
            // part of a compound page: the `Page` invariant, and `link`
            // lists only this list's order, 0 here) that this list owned,
            // with the one reference that it hands over here.
            unsafe { b::free_contig_range(first as usize, len as usize) };
            let block = 1u64 << HUGE_ORDER;
            ((first + len) / block).saturating_sub(first.div_ceil(block)) as usize
        }
        let mut blocks = 0;
        // Pages popped and not yet freed: one run, never across zones
        // (see `extend_run`).
        let mut run = None;
        while let Some(page) = self.pop() {
            let page = core::mem::ManuallyDrop::new(page).page;
            // SAFETY: `page` is a valid page this list owned.
            let zone = unsafe { b::page_zone(page.as_ptr()) };
            let (next, done) = pfn::extend_run(run, guest_pfn(page), zone);
            if let Some(done) = done {
                blocks += free_run(done.first, done.len);
            }
            run = Some(next);
        }
        if let Some(last) = run {
            blocks += free_run(last.first, last.len);
        }
        blocks
    }

    /// Frees single pages in batches (`release_pages()`: one per-CPU list
    /// lock per batch), which is cheaper than one by one. No block goes
    /// back whole this way: returns 0.
    #[cfg(not(CONFIG_CONTIG_ALLOC))]
    fn free_single_pages(&mut self) -> usize {
        /// Pages freed at a time (the kernel's folio batch).
        const FREE_BATCH: usize = 31;
        let mut batch = [core::ptr::null_mut::<b::page>(); FREE_BATCH];
        loop {
            let mut n = 0;
            while n < FREE_BATCH {
                let Some(page) = self.pop() else {
                    break;
                };
                batch[n] = core::mem::ManuallyDrop::new(page).page.as_ptr();
                n += 1;
            }
            if n == 0 {
                return 0;
            }
            let pages = b::release_pages_arg {
                pages: batch.as_mut_ptr(),
            };
            // SAFETY: The first `n` entries are single pages (order 0) whose
            // only reference this list owned and hands over here.
            unsafe { b::release_pages(pages, n as i32) };
        }
    }

    /// Calls `f` with each page's first 4 KiB frame number, in list order.
    pub fn for_each_pfn(&self, mut f: impl FnMut(u64)) {
        let head = self.raw();
        // SAFETY: `head` is a valid list whose entries are page `lru`s.
        let mut entry = unsafe { (*head).next };
        while entry != head {
            f(balloon_pfn(page_of_lru(entry)));
            // SAFETY: As above.
            entry = unsafe { (*entry).next };
        }
    }
}

impl Drop for PageList {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Talks to the host when compaction migrates a balloon page.
pub trait Migrate: Send + Unpin {
    /// Tells the host that the page at `new_pfn` is now ballooned and the
    /// one at `old_pfn` no longer is (both in 4 KiB frames, each
    /// [`PFNS_PER_PAGE`] long). On error the page is not migrated.
    fn migrate(&mut self, new_pfn: u64, old_pfn: u64) -> Result;
}

/// The balloon: the kernel's list of inflated pages (`struct
/// balloon_dev_info`) and the driver state `S` that inflates and deflates
/// them, under one lock.
///
/// The lock serialises everything that changes what the host knows:
/// inflating, deflating, and compaction migrating a balloon page, which
/// calls [`Migrate::migrate`] on the locked state (or retries later if it is
/// busy, as the C driver does).
///
/// # Examples
///
/// Four pages into a balloon and out again, with no host to tell:
///
/// ```
/// use kernel::{
///     mm::balloon::{BalloonPages, Migrate, Page, PageList},
///     new_mutex,
///     prelude::*,
/// };
///
/// struct NoHost;
///
/// impl Migrate for NoHost {
///     fn migrate(&mut self, _new_pfn: u64, _old_pfn: u64) -> Result {
///         // Compaction may try to move a ballooned page: with no host to
///         // tell, the page stays where it is.
///         Err(EBUSY)
///     }
/// }
///
/// let balloon = KBox::pin_init(BalloonPages::new(false, new_mutex!(NoHost)), GFP_KERNEL)?;
/// let mut list = PageList::new()?;
/// for _ in 0..4 {
///     list.push(Page::alloc().ok_or(ENOMEM)?);
/// }
/// assert_eq!(balloon.enqueue(&mut list), 4);
/// assert!(list.is_empty());
/// assert_eq!(balloon.len(), 4);
/// assert_eq!(balloon.dequeue(&mut list, 4), 4);
/// assert!(balloon.is_empty());
/// assert_eq!(list.len(), 4);
/// // Dropping the list frees its pages.
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// `info` is initialised, pinned and the first field (`repr(C)`): the list
/// head and, with balloon migration, every listed page's `page->private`
/// point to it, and the migration callback finds `Self` from it. `held`
/// counts the pages in the balloon: on its list or isolated by compaction
/// (migration swaps one page for another, and the driver's callback never
/// returns `-ENOENT`, the one outcome that would drop a page).
#[pin_data(PinnedDrop)]
#[repr(C)]
pub struct BalloonPages<S: Migrate> {
    #[pin]
    info: Opaque<b::balloon_dev_info>,
    held: Atomic<usize>,
    #[pin]
    state: Mutex<S>,
}

// SAFETY: `balloon_dev_info` is protected by the kernel's
// `balloon_pages_lock`, every method goes through the locked C helpers, and
// the state is behind a mutex.
unsafe impl<S: Migrate> Send for BalloonPages<S> {}
// SAFETY: See above.
unsafe impl<S: Migrate> Sync for BalloonPages<S> {}

impl<S: Migrate> BalloonPages<S> {
    /// An empty balloon. `adjust_managed_page_count`: whether ballooned pages
    /// leave the guest's managed page counts (and so its MemTotal).
    pub fn new(
        adjust_managed_page_count: bool,
        state: impl PinInit<Mutex<S>>,
    ) -> impl PinInit<Self> {
        // INVARIANT: `info` is initialised in place (pinned, first field)
        // and the balloon holds no page.
        pin_init!(Self {
            // SAFETY: `ptr` is valid for writes; this is C's
            // `balloon_devinfo_init()` plus the two settings.
            info <- Opaque::ffi_init(move |ptr: *mut b::balloon_dev_info| unsafe {
                core::ptr::write_bytes(ptr, 0, 1);
                b::INIT_LIST_HEAD(core::ptr::addr_of_mut!((*ptr).pages));
                (*ptr).adjust_managed_page_count = adjust_managed_page_count;
                (*ptr).migratepage = Some(Self::migrate_callback);
            }),
            held: Atomic::new(0),
            state <- state,
        })
    }

    /// Locks the driver state.
    pub fn lock(&self) -> MutexGuard<'_, S> {
        self.state.lock()
    }

    /// Pages in the balloon, including those compaction has isolated.
    pub fn len(&self) -> usize {
        self.held.load(Relaxed)
    }

    /// Whether the balloon holds no page, counting those compaction has
    /// isolated.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves every page of `list` into the balloon; returns how many.
    /// Only single pages can be ballooned: a list of blocks is left alone.
    pub fn enqueue(&self, list: &mut PageList) -> usize {
        if list.order != 0 {
            return 0;
        }
        // SAFETY: `info` is initialised and pinned; the pages on `list` are
        // owned (list invariant) and handed over to the balloon.
        let n = unsafe { b::balloon_page_list_enqueue(self.info.get(), list.raw()) };
        list.len = 0;
        // INVARIANT: `n` more pages in the balloon.
        self.held.add(n, Relaxed);
        n
    }

    /// Moves up to `n` pages out of the balloon onto `list`; returns how
    /// many. May return fewer while compaction has pages isolated.
    pub fn dequeue(&self, list: &mut PageList, n: usize) -> usize {
        if list.order != 0 {
            return 0;
        }
        // SAFETY: `info` is initialised; dequeued pages become owned by
        // `list`.
        let got = unsafe { b::balloon_page_list_dequeue(self.info.get(), list.raw(), n) };
        list.len += got;
        // INVARIANT: `got` pages fewer in the balloon.
        self.held.fetch_sub(got, Relaxed);
        got
    }

    /// Migration callback, from compaction (page lock held).
    ///
    /// # Safety
    ///
    /// Called by the balloon core with the `info` of a live `Self` and two
    /// valid pages.
    unsafe extern "C" fn migrate_callback(
        info: *mut b::balloon_dev_info,
        newpage: *mut b::page,
        page: *mut b::page,
        _mode: b::migrate_mode,
    ) -> kernel::ffi::c_int {
        // SAFETY: `info` is the first field of a live `Self` (type
        // invariant): `page` is isolated, so it counts in `held`, and drop
        // waits until `held` is 0.
        let this = unsafe { &*info.cast::<Self>() };
        let (Some(new), Some(old)) = (NonNull::new(newpage), NonNull::new(page)) else {
            return EINVAL.to_errno();
        };
        // Never wait here: inflate may be the one compacting.
        let Some(mut state) = this.state.try_lock() else {
            return EAGAIN.to_errno();
        };
        match state.migrate(balloon_pfn(new), balloon_pfn(old)) {
            Ok(()) => 0,
            // Anything but -ENOENT leaves the old page in the balloon.
            Err(ENOENT) => EAGAIN.to_errno(),
            Err(e) => e.to_errno(),
        }
    }
}

#[pinned_drop]
impl<S: Migrate> PinnedDrop for BalloonPages<S> {
    fn drop(self: Pin<&mut Self>) {
        // Drivers empty the balloon, telling the host, before dropping it.
        // If one did not, free the pages anyway rather than leave pages
        // pointing at a freed `balloon_dev_info`. Pages compaction has
        // isolated are off the list, and point here until it puts them
        // back or migrates them (onto the list again): so dequeue until
        // every page the balloon held has come off it, not merely until
        // the list is empty.
        // A list head is 16 bytes: should it not come at once, wait for
        // it rather than free what compaction may still use.
        let mut list = loop {
            match PageList::new() {
                Ok(list) => break list,
                Err(_) => kernel::time::delay::fsleep(kernel::time::Delta::from_millis(10)),
            }
        };
        let mut left_over = 0;
        while !self.is_empty() {
            let got = self.dequeue(&mut list, usize::MAX);
            left_over += got;
            list.clear();
            if got == 0 {
                kernel::time::delay::fsleep(kernel::time::Delta::from_millis(1));
            }
        }
        if left_over > 0 {
            pr_warn!("{} pages still ballooned at teardown\n", left_over);
        }
    }
}
