// SPDX-License-Identifier: GPL-2.0

/*
 * Through the kernel's functions, so that the memory model (vmemmap or
 * not, page_offset_base, arm64's memstart_addr...) stays the kernel's
 * business and no architecture detail is re-derived in Rust.
 */

#include <linux/mm.h>

__rust_helper unsigned long rust_helper_page_to_pfn(const struct page *page)
{
	return page_to_pfn(page);
}

__rust_helper void *rust_helper_page_address(const struct page *page)
{
	return page_address(page);
}

__rust_helper struct zone *rust_helper_page_zone(const struct page *page)
{
	return page_zone(page);
}
