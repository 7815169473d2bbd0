// SPDX-License-Identifier: GPL-2.0

//! Typed feature bits and config space fields.

use crate::bindings as b;

/// A virtio feature bit (`VIRTIO_*_F_*`): a bit number that cannot be mixed
/// up with a config offset or any other `u32`.
///
/// `repr(transparent)` over the C bit number, so that a `&[Feature]` is the
/// `feature_table` array the virtio core reads.
///
/// # Examples
///
/// ```
/// use kernel::virtio::Feature;
///
/// // VIRTIO_BALLOON_F_STATS_VQ, as a driver lists it in `Driver::FEATURES`.
/// const STATS_VQ: Feature = Feature::new(1);
/// assert_eq!(STATS_VQ, Feature::new(1));
/// assert_ne!(STATS_VQ, Feature::new(2));
/// ```
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Feature(u32);

impl Feature {
    /// Feature bit `bit` (only the layer names features).
    pub const fn new(bit: u32) -> Self {
        Self(bit)
    }

    /// Where the bit sits in `virtio_device::features_array`: the word and
    /// the mask within it.
    pub(super) const fn word_and_mask(self) -> (usize, u64) {
        ((self.0 / 64) as usize, 1u64 << (self.0 % 64))
    }
}

/// A device type's config struct, as the virtio spec lays it out: what
/// [`config_le32!`](crate::config_le32) takes fields of.
///
/// # Safety
///
/// `Self` is the config struct of devices of type [`DeviceConfig::DEVICE`]
/// (the uapi header's struct, as the spec defines it): every device of that
/// type has a config space of at least [`DeviceConfig::ALWAYS`] bytes, and
/// each field of [`DeviceConfig::OPTIONAL`] (a 4-byte field at that offset)
/// exists on every device that negotiated the feature given with it.
pub unsafe trait DeviceConfig {
    /// The device type (`VIRTIO_ID_*`).
    const DEVICE: u32;
    /// Bytes of config space that every device of the type has.
    const ALWAYS: usize;
    /// Fields beyond [`DeviceConfig::ALWAYS`] that exist only with a
    /// feature: their offsets, each with the feature.
    const OPTIONAL: &'static [(usize, Feature)];
}

/// The memory balloon's config space (`struct virtio_balloon_config`).
pub type BalloonConfig = b::virtio_balloon_config;

// SAFETY: `virtio_balloon_config` is the balloon's config struct (virtio
// spec 5.5.4, `include/uapi/linux/virtio_balloon.h`). `num_pages` and
// `actual`, the bytes before `free_page_hint_cmd_id`, exist on every
// balloon; the spec says `free_page_hint_cmd_id` exists only with
// FREE_PAGE_HINT and `poison_val` only with PAGE_POISON. QEMU
// (`virtio_balloon_config_size`) gives the whole struct when it offers
// either of those or REPORTING, and stops before `free_page_hint_cmd_id`
// otherwise.
unsafe impl DeviceConfig for BalloonConfig {
    const DEVICE: u32 = b::VIRTIO_ID_BALLOON;
    const ALWAYS: usize = core::mem::offset_of!(BalloonConfig, __bindgen_anon_1);
    const OPTIONAL: &'static [(usize, Feature)] = &[
        (
            core::mem::offset_of!(BalloonConfig, __bindgen_anon_1),
            Feature::new(b::VIRTIO_BALLOON_F_FREE_PAGE_HINT),
        ),
        (
            core::mem::offset_of!(BalloonConfig, poison_val),
            Feature::new(b::VIRTIO_BALLOON_F_PAGE_POISON),
        ),
    ];
}

/// A little-endian 32-bit field of a device's config space.
///
/// # Invariants
///
/// `offset` is the offset of a 4-byte, 4-aligned field of the config space
/// of devices of type `device`, which every such device has if `feature`
/// is `None`, and every such device that negotiated `feature` has
/// otherwise (from [`DeviceConfig`]). A device of another type has another
/// config space, and one without the feature may have a shorter one (a
/// transport may stop the kernel, `BUG_ON`, on an access beyond it): the
/// accessors refuse the field on both.
#[derive(Clone, Copy, Debug)]
pub struct ConfigLe32 {
    device: u32,
    offset: u32,
    feature: Option<Feature>,
}

impl ConfigLe32 {
    /// The 4-byte field of `C` at `offset` (for
    /// [`config_le32!`](crate::config_le32), which gives the offset and
    /// the width of a named field). Panics, so fails the build in a
    /// constant, on a field that is not 4 bytes wide and aligned, or lies
    /// outside what [`DeviceConfig`] says exists.
    #[doc(hidden)]
    pub const fn checked<C: DeviceConfig>(offset: usize, width: usize) -> Self {
        assert!(
            width == 4 && offset % 4 == 0,
            "not an aligned 32-bit config field"
        );
        assert!(
            offset + width <= core::mem::size_of::<C>(),
            "config field out of range"
        );
        let mut feature = None;
        let mut i = 0;
        while i < C::OPTIONAL.len() {
            if C::OPTIONAL[i].0 == offset {
                feature = Some(C::OPTIONAL[i].1);
            }
            i += 1;
        }
        assert!(
            feature.is_some() || offset + width <= C::ALWAYS,
            "a config field that no device is sure to have"
        );
        // INVARIANT: Checked above, against what `C` promises.
        Self {
            device: C::DEVICE,
            offset: offset as u32,
            feature,
        }
    }

    /// The device type whose config space holds the field.
    pub(super) const fn device(self) -> u32 {
        self.device
    }

    /// The field's offset in config space.
    pub(super) const fn offset(self) -> u32 {
        self.offset
    }

    /// The feature without which the field does not exist, if any.
    pub(super) const fn feature(self) -> Option<Feature> {
        self.feature
    }

    /// The size of the field `field` returns (for
    /// [`config_le32!`](crate::config_le32); never called).
    #[doc(hidden)]
    pub const fn field_size<C, T>(_field: fn(&C) -> &T) -> usize {
        core::mem::size_of::<T>()
    }
}

/// `config_le32!(Config, field)`: the [`ConfigLe32`] of `field` of config
/// struct `Config` (a [`DeviceConfig`]), checked at build time to be a
/// 4-byte field that exists (with its feature, if it needs one). Use it in
/// a `const`.
///
/// # Examples
///
/// ```
/// use kernel::{config_le32, virtio::BalloonConfig, virtio::ConfigLe32};
///
/// // The balloon's target, which the driver reads with
/// // `BoundGuard::read_config_le32`. A field that is not 32 bits wide, or
/// // that no device is sure to have, fails the build; `poison_val` can be
/// // read only once `VIRTIO_BALLOON_F_PAGE_POISON` was negotiated.
/// const NUM_PAGES: ConfigLe32 = config_le32!(BalloonConfig, num_pages);
/// const POISON_VAL: ConfigLe32 = config_le32!(BalloonConfig, poison_val);
/// # let _ = (NUM_PAGES, POISON_VAL);
/// ```
#[macro_export]
macro_rules! config_le32 {
    ($config:ty, $field:ident) => {
        $crate::virtio::ConfigLe32::checked::<$config>(
            ::core::mem::offset_of!($config, $field),
            $crate::virtio::ConfigLe32::field_size(|config: &$config| &config.$field),
        )
    };
}
