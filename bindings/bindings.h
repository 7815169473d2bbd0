/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel headers rust_balloon's safe layer binds to. bindgen reads this
 * file at build time with the module's own C flags (see Kbuild).
 *
 * After helpers.c: macros bindgen cannot evaluate, as constants it can,
 * which the build gives to Rust without the RUST_CONST_HELPER_ prefix, as
 * the kernel's rust/Makefile does. The upstream series
 * (scripts/patches.sh) adds the includes and these constants to
 * rust/bindings/bindings_helper.h.
 */
#include <linux/balloon.h>
#include <linux/delay.h>
#include <linux/device.h>
#include <linux/mm.h>
#include <linux/oom.h>
#include <linux/page_reporting.h>
#include <linux/pm_wakeup.h>
#include <linux/sched.h>
#include <linux/sched/stat.h>
#include <linux/scatterlist.h>
#include <linux/shrinker.h>
#include <linux/virtio.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "helpers.c"

const unsigned long RUST_CONST_HELPER_SHRINK_STOP = SHRINK_STOP;
const size_t RUST_CONST_HELPER_PAGE_LRU_OFFSET = offsetof(struct page, lru);
/*
 * Blocks taken only if free right now (no reclaim, no compaction, no
 * kswapd), unmovable: free page hinting's, the C driver's
 * VIRTIO_BALLOON_FREE_PAGE_ALLOC_FLAG.
 */
const gfp_t RUST_CONST_HELPER_BALLOON_FREE_GFP = __GFP_NORETRY | __GFP_NOWARN | __GFP_NOMEMALLOC;
/*
 * Inflation's first choice: whole blocks of the size the host maps with one
 * PMD, taken only while free ones exist (no reclaim, no compaction, no
 * kswapd), of the migrate type balloon pages get, so that they can be split
 * and ballooned as movable pages. The host's PMD, not the guest's: 2 MiB on
 * x86-64 and arm64 hosts with 4 KiB pages. An arm64 guest with 64 KiB pages
 * has 512 MiB PMDs, a block a small guest never has free, and one buffer of
 * 131072 PFNs for it.
 */
#ifdef CONFIG_BALLOON_MIGRATION
#define RB_BALLOON_GFP GFP_HIGHUSER_MOVABLE
#else
#define RB_BALLOON_GFP GFP_HIGHUSER
#endif
const gfp_t RUST_CONST_HELPER_BALLOON_FREE_MOVABLE_GFP = (RB_BALLOON_GFP & ~__GFP_RECLAIM) |
				  __GFP_NORETRY | __GFP_NOWARN | __GFP_NOMEMALLOC;
/*
 * Paced inflation's single pages: balloon_page_alloc()'s flags without
 * waking kswapd, so that what reclaim the balloon causes runs in its own
 * paced steps and not in a thread beside them.
 */
const gfp_t RUST_CONST_HELPER_BALLOON_PACED_GFP = (RB_BALLOON_GFP & ~__GFP_KSWAPD_RECLAIM) |
				  __GFP_NORETRY | __GFP_NOWARN | __GFP_NOMEMALLOC;
#define RB_HUGE_SHIFT (PMD_SHIFT < 21 ? PMD_SHIFT : 21)
const unsigned int RUST_CONST_HELPER_BALLOON_HUGE_ORDER =
	RB_HUGE_SHIFT - PAGE_SHIFT < MAX_PAGE_ORDER ? RB_HUGE_SHIFT - PAGE_SHIFT : MAX_PAGE_ORDER;
#undef RB_BALLOON_GFP
#undef RB_HUGE_SHIFT
