// SPDX-License-Identifier: GPL-2.0

/*
 * The balloon's page lists go through the kernel's own list functions, so
 * that CONFIG_DEBUG_LIST checks every link and unlink. The kernel crate's
 * helpers have INIT_LIST_HEAD and list_add_tail already.
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
