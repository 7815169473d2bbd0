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
pub(crate) fn round_target(frames: u32, page_shift: u32) -> u32 {
    let per_page = pfns_per_page(page_shift) as u32;
    // Near `u32::MAX` rounding up would wrap: round down there instead.
    frames
        .checked_next_multiple_of(per_page)
        .unwrap_or(frames - frames % per_page)
}

/// How many whole guest pages `frames` frames make (a buffer of 256 frames
/// holds 16 pages of 64 KiB).
pub(crate) const fn whole_pages(frames: usize, page_shift: u32) -> usize {
    frames / pfns_per_page(page_shift)
}

#[cfg(test)]
mod tests {
    use super::*;

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
