// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel functions rust_balloon's safe layer needs that are static
 * inlines or macros, which Rust cannot call: wrapped here the way
 * the files in rust/helpers/ wrap them for the kernel crate, so that the memory
 * model (vmemmap or not, page_offset_base, arm64's memstart_addr...) stays
 * the kernel's business and no architecture detail is re-derived in Rust.
 */
#include <linux/mm.h>
#include "helpers.h"

unsigned long rust_balloon_page_to_pfn(struct page *page)
{
	return page_to_pfn(page);
}

void *rust_balloon_page_address(struct page *page)
{
	return page_address(page);
}
