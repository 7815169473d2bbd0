// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel functions rust_balloon's safe layer needs that are static
 * inlines or macros, which Rust cannot call: wrapped here the way
 * the files in rust/helpers/ wrap them for the kernel crate, so that the memory
 * model (vmemmap or not, page_offset_base, arm64's memstart_addr...) stays
 * the kernel's business and no architecture detail is re-derived in Rust.
 */
#include <linux/mm.h>
#include <linux/vmstat.h>
#include <linux/device.h>
#include "helpers.h"

unsigned long rust_balloon_page_to_pfn(struct page *page)
{
	return page_to_pfn(page);
}

void *rust_balloon_page_address(struct page *page)
{
	return page_address(page);
}

/* Without CONFIG_PM_SLEEP these three are static inline no-ops. */
int rust_balloon_device_set_wakeup_capable(struct device *dev, bool capable)
{
	device_set_wakeup_capable(dev, capable);
	return 0;
}

void rust_balloon_pm_stay_awake(struct device *dev)
{
	pm_stay_awake(dev);
}

void rust_balloon_pm_relax(struct device *dev)
{
	pm_relax(dev);
}

/* Counters and static keys: read the way the kernel reads them. */
unsigned long rust_balloon_global_node_page_state(enum node_stat_item item)
{
	return global_node_page_state(item);
}

bool rust_balloon_want_init_on_free(void)
{
	return want_init_on_free();
}

bool rust_balloon_page_poisoning_enabled(void)
{
	return page_poisoning_enabled_static();
}
