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
struct list_head;
struct page;

unsigned long rust_balloon_page_to_pfn(struct page *page);
void *rust_balloon_page_address(struct page *page);
int rust_balloon_device_set_wakeup_capable(struct device *dev, bool capable);
void rust_balloon_pm_stay_awake(struct device *dev);
void rust_balloon_pm_relax(struct device *dev);
unsigned long rust_balloon_global_node_page_state(enum node_stat_item item);
bool rust_balloon_want_init_on_free(void);
bool rust_balloon_page_poisoning_enabled(void);
void rust_balloon_init_list_head(struct list_head *list);
void rust_balloon_list_add(struct list_head *entry, struct list_head *head);
void rust_balloon_list_add_tail(struct list_head *entry, struct list_head *head);
void rust_balloon_list_del_init(struct list_head *entry);
void rust_balloon_list_cut_to_front(struct list_head *from, struct list_head *last,
				    struct list_head *to);
void rust_balloon_list_splice_init(struct list_head *list, struct list_head *head);
const void *rust_balloon_page_zone(const struct page *page);

#endif
