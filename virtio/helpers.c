// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel functions rust_balloon's safe layer needs that are static
 * inlines or macros, which Rust cannot call: wrapped here the way
 * the files in rust/helpers/ wrap them for the kernel crate, so that the memory
 * model (vmemmap or not, page_offset_base, arm64's memstart_addr...) stays
 * the kernel's business and no architecture detail is re-derived in Rust.
 */
#include <linux/list.h>
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

/*
 * The page lists: through the kernel's own list functions, so that
 * CONFIG_DEBUG_LIST checks every link and unlink the driver makes.
 */
void rust_balloon_init_list_head(struct list_head *list)
{
	INIT_LIST_HEAD(list);
}

void rust_balloon_list_add(struct list_head *entry, struct list_head *head)
{
	list_add(entry, head);
}

void rust_balloon_list_add_tail(struct list_head *entry, struct list_head *head)
{
	list_add_tail(entry, head);
}

void rust_balloon_list_del_init(struct list_head *entry)
{
	list_del_init(entry);
}

/* Moves the entries of @from up to and including @last to the front of @to. */
void rust_balloon_list_cut_to_front(struct list_head *from, struct list_head *last,
				    struct list_head *to)
{
	LIST_HEAD(cut);

	list_cut_position(&cut, from, last);
	list_splice(&cut, to);
}

void rust_balloon_list_splice_init(struct list_head *list, struct list_head *head)
{
	list_splice_init(list, head);
}

/* Which zone @page is in, as an identity to compare (never dereferenced). */
const void *rust_balloon_page_zone(const struct page *page)
{
	return page_zone(page);
}
