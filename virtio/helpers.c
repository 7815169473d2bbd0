// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel functions rust_balloon's safe layer needs that are static
 * inlines or macros, which Rust cannot call: wrapped here the way
 * the files in rust/helpers/ wrap them for the kernel crate, so that the memory
 * model (vmemmap or not, page_offset_base, arm64's memstart_addr...) stays
 * the kernel's business and no architecture detail is re-derived in Rust.
 */
#include <linux/mm.h>
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
