// SPDX-License-Identifier: GPL-2.0

/* Counters and static keys, read the way the kernel reads them. */

#include <linux/mm.h>
#include <linux/vmstat.h>

__rust_helper unsigned long
rust_helper_global_node_page_state(enum node_stat_item item)
{
	return global_node_page_state(item);
}

__rust_helper bool rust_helper_want_init_on_free(void)
{
	return want_init_on_free();
}

__rust_helper bool rust_helper_page_poisoning_enabled_static(void)
{
	return page_poisoning_enabled_static();
}
