// SPDX-License-Identifier: GPL-2.0

/*
 * For lists Rust links through the kernel's list functions, so that
 * CONFIG_DEBUG_LIST checks what list_add() and list_del_init() link and
 * unlink.
 */

#include <linux/list.h>

__rust_helper void rust_helper_list_add(struct list_head *new, struct list_head *head)
{
	list_add(new, head);
}

__rust_helper void rust_helper_list_del_init(struct list_head *entry)
{
	list_del_init(entry);
}

__rust_helper void rust_helper_list_cut_position(struct list_head *list,
						 struct list_head *head,
						 struct list_head *entry)
{
	list_cut_position(list, head, entry);
}

__rust_helper void rust_helper_list_splice(const struct list_head *list,
					   struct list_head *head)
{
	list_splice(list, head);
}

__rust_helper void rust_helper_list_splice_init(struct list_head *list,
						struct list_head *head)
{
	list_splice_init(list, head);
}
