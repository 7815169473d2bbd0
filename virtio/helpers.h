/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Wrappers of static inline kernel functions for rust_balloon's safe layer
 * (helpers.c). Each calls the kernel function of the same name.
 */
#ifndef RUST_BALLOON_HELPERS_H
#define RUST_BALLOON_HELPERS_H

struct page;

unsigned long rust_balloon_page_to_pfn(struct page *page);
void *rust_balloon_page_address(struct page *page);

#endif
