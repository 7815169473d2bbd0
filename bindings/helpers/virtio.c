// SPDX-License-Identifier: GPL-2.0

#include <linux/virtio_config.h>

__rust_helper void rust_helper_virtio_device_ready(struct virtio_device *dev)
{
	virtio_device_ready(dev);
}
