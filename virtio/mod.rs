// SPDX-License-Identifier: GPL-2.0

//! Virtio devices: the bus abstraction.
//!
//! Driver registration and the bus callbacks ([`Driver`], and
//! [`Registration`]: the kernel crate's `driver::Registration` with the bus's
//! [`Adapter`]),
//! the ID table ([`DeviceId`], [`virtio_device_table!`]), feature bits and
//! config space ([`Feature`], [`ConfigLe32`], [`config_le32!`]), and the
//! virtqueues of a bound device ([`Device`], [`Binding`], [`BoundGuard`]),
//! with buffers that a queue owns while the device may read them
//! ([`Buffer`]).
//!
//! C header: [`include/linux/virtio.h`](srctree/include/linux/virtio.h)

mod buffer;
mod config;
mod device;
mod driver;
mod id;
mod wait;

pub use crate::{config_le32, virtio_device_table};
pub use buffer::Buffer;
pub use config::{BalloonConfig, ConfigLe32, DeviceConfig, Feature};
pub use device::{Binding, BoundGuard, Device, QueueId, QueueInfo, Transport, Used, Validating};
pub use driver::{Adapter, BusDriver, Driver, Registration};
pub use id::{DeviceId, IdTable};
