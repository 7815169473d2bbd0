// SPDX-License-Identifier: GPL-2.0

/*
 * Without CONFIG_PM_SLEEP these are static inline no-ops; with it, exported
 * functions the bindings have already.
 */

#include <linux/device.h>
#include <linux/pm_wakeup.h>

#ifndef CONFIG_PM_SLEEP
__rust_helper void rust_helper_device_set_wakeup_capable(struct device *dev,
							 bool capable)
{
	device_set_wakeup_capable(dev, capable);
}

__rust_helper void rust_helper_pm_stay_awake(struct device *dev)
{
	pm_stay_awake(dev);
}

__rust_helper void rust_helper_pm_relax(struct device *dev)
{
	pm_relax(dev);
}
#endif
