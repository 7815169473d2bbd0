// SPDX-License-Identifier: GPL-2.0

//! Page frame arithmetic of the balloon protocol.
//!
//! The protocol counts in 4 KiB frames whatever the guest's page size, so a
//! guest with larger pages sends several frame numbers per page. This file
//! has no kernel dependencies: `make check` also builds it as a host test
//! (`rustc --test`) and runs the tests below for 4, 16 and 64 KiB pages.

use core::ops::Range;

/// Shift of the protocol's frame size: 4 KiB, always
/// (`VIRTIO_BALLOON_PFN_SHIFT`).
pub(crate) const BALLOON_PFN_SHIFT: u32 = 12;

/// Protocol frames per guest page of `1 << page_shift` bytes.
pub(crate) const fn pfns_per_page(page_shift: u32) -> usize {
    // Pages smaller than a frame cannot be described at all.
    assert!(page_shift >= BALLOON_PFN_SHIFT);
    1 << (page_shift - BALLOON_PFN_SHIFT)
}

/// The protocol frames of guest page `guest_pfn`.
pub(crate) fn balloon_pfns(guest_pfn: u64, page_shift: u32) -> Range<u64> {
    let per_page = pfns_per_page(page_shift) as u64;
    let first = guest_pfn * per_page;
    first..first + per_page
}

/// A host target in frames, rounded up to whole guest pages, so that the
/// balloon never oscillates around a target it cannot hit.
///
/// # Examples
///
/// ```
/// use kernel::mm::balloon::round_target;
///
/// // 4 KiB pages (shift 12): every frame is a page.
/// assert_eq!(round_target(1001, 12), 1001);
/// // 64 KiB pages (shift 16) hold 16 frames each.
/// assert_eq!(round_target(1001, 16), 1008);
/// assert_eq!(round_target(u32::MAX, 16), u32::MAX - 15);
/// ```
pub fn round_target(frames: u32, page_shift: u32) -> u32 {
    let per_page = pfns_per_page(page_shift) as u32;
    // Near `u32::MAX` rounding up would wrap: round down there instead.
    frames
        .checked_next_multiple_of(per_page)
        .unwrap_or(frames - frames % per_page)
}

/// How many whole guest pages `frames` frames make (a buffer of 256 frames
/// holds 16 pages of 64 KiB).
///
/// # Examples
///
/// ```
/// use kernel::mm::balloon::whole_pages;
///
/// assert_eq!(whole_pages(256, 12), 256);
/// assert_eq!(whole_pages(256, 16), 16);
/// assert_eq!(whole_pages(15, 16), 0);
/// ```
pub const fn whole_pages(frames: usize, page_shift: u32) -> usize {
    frames / pfns_per_page(page_shift)
}

/// Frames `[first, first + len)`, physically contiguous, all in zone
/// `zone`: what deflate frees with one `free_contig_range()` call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Run<Z> {
    pub(crate) first: u64,
    pub(crate) len: u64,
    pub(crate) zone: Z,
}

/// Adds frame `pfn` of zone `zone` to `run`. Returns the run it extends or
/// starts, and the run to free first when it cannot extend it. It extends
/// at either end (a split block may come back in either order), and never
/// across zones: `free_contig_range()` frees a run in aligned blocks of up
/// to `MAX_PAGE_ORDER`, split at memory sections only, so a run across a
/// zone boundary that is not so aligned (a NUMA node of 1025 MiB) would
/// free one buddy block in two zones.
#[cfg_attr(not(CONFIG_CONTIG_ALLOC), allow(dead_code))]
pub(crate) fn extend_run<Z: PartialEq + Copy>(
    run: Option<Run<Z>>,
    pfn: u64,
    zone: Z,
) -> (Run<Z>, Option<Run<Z>>) {
    match run {
        Some(r) if r.zone == zone && pfn == r.first + r.len => (
            Run {
                len: r.len + 1,
                ..r
            },
            None,
        ),
        Some(r) if r.zone == zone && pfn + 1 == r.first => (
            Run {
                first: pfn,
                len: r.len + 1,
                ..r
            },
            None,
        ),
        done => (
            Run {
                first: pfn,
                len: 1,
                zone,
            },
            done,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs of `(pfn, zone)` in order, as deflate would free them.
    fn runs(pages: &[(u64, u8)]) -> Vec<(u64, u64, u8)> {
        let (mut run, mut out) = (None, Vec::new());
        for &(pfn, zone) in pages {
            let (next, done) = extend_run(run, pfn, zone);
            out.extend(done.map(|r| (r.first, r.len, r.zone)));
            run = Some(next);
        }
        out.extend(run.map(|r| (r.first, r.len, r.zone)));
        out
    }

    #[test]
    fn runs_grow_at_either_end() {
        assert_eq!(runs(&[(10, 0), (11, 0), (9, 0), (12, 0)]), [(9, 4, 0)]);
        assert_eq!(runs(&[(10, 0), (12, 0)]), [(10, 1, 0), (12, 1, 0)]);
    }

    #[test]
    fn runs_never_cross_zones() {
        // Node 0 ends at 1025 MiB (frame 262400), node 1 starts there.
        let edge = 262_400;
        assert_eq!(
            runs(&[(edge - 2, 0), (edge - 1, 0), (edge, 1), (edge + 1, 1)]),
            [(edge - 2, 2, 0), (edge, 2, 1)]
        );
        assert_eq!(
            runs(&[(edge, 1), (edge - 1, 0)]),
            [(edge, 1, 1), (edge - 1, 1, 0)]
        );
    }

    #[test]
    fn four_kib_pages_are_one_frame() {
        assert_eq!(pfns_per_page(12), 1);
        assert_eq!(balloon_pfns(0x1234, 12), 0x1234..0x1235);
        assert_eq!(round_target(1001, 12), 1001);
        assert_eq!(whole_pages(256, 12), 256);
    }

    #[test]
    fn sixteen_kib_pages_are_four_frames() {
        assert_eq!(pfns_per_page(14), 4);
        assert_eq!(balloon_pfns(3, 14), 12..16);
        assert_eq!(round_target(1001, 14), 1004);
        assert_eq!(round_target(1000, 14), 1000);
        assert_eq!(whole_pages(256, 14), 64);
    }

    #[test]
    fn sixty_four_kib_pages_are_sixteen_frames() {
        assert_eq!(pfns_per_page(16), 16);
        assert_eq!(balloon_pfns(1, 16), 16..32);
        assert_eq!(round_target(1, 16), 16);
        assert_eq!(round_target(0, 16), 0);
        assert_eq!(whole_pages(256, 16), 16);
    }

    #[test]
    fn rounding_never_wraps_and_stays_whole_pages() {
        assert_eq!(round_target(u32::MAX, 16), u32::MAX - 15);
        assert_eq!(round_target(u32::MAX, 12), u32::MAX);
    }

    #[test]
    fn consecutive_pages_have_disjoint_adjacent_frames() {
        for shift in [12, 14, 16] {
            let a = balloon_pfns(41, shift);
            let b = balloon_pfns(42, shift);
            assert_eq!(a.end, b.start);
        }
    }
}
