/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Wrappers of static inline kernel functions for rust_balloon's safe layer
 * (helpers.c). Each calls the kernel function of the same name.
 */
#ifndef RUST_BALLOON_HELPERS_H
#define RUST_BALLOON_HELPERS_H

#include <linux/types.h>
#include <linux/mmzone.h>

struct device;
struct page;

unsigned long rust_balloon_page_to_pfn(struct page *page);
void *rust_balloon_page_address(struct page *page);
int rust_balloon_device_set_wakeup_capable(struct device *dev, bool capable);
void rust_balloon_pm_stay_awake(struct device *dev);
void rust_balloon_pm_relax(struct device *dev);
unsigned long rust_balloon_global_node_page_state(enum node_stat_item item);
bool rust_balloon_want_init_on_free(void);
bool rust_balloon_page_poisoning_enabled(void);

#endif
