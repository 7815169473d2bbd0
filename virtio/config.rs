// SPDX-License-Identifier: GPL-2.0

//! Typed feature bits and config space fields.

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

/// A little-endian 32-bit field of a device's config space.
///
/// # Invariants
///
/// `offset` is the offset of a 4-byte field of the config struct of
/// devices of type `device`: built only by [`config_le32!`], which checks
/// both at build time. A device of another type has another config space;
/// the accessors refuse the field there. A field that exists only with a
/// feature ([`ConfigLe32::only_with`]) is refused unless it was negotiated:
/// a device without it may have a shorter config space, and transports
/// stop the kernel (`BUG_ON`) on an access beyond it.
#[derive(Clone, Copy, Debug)]
pub struct ConfigLe32 {
    device: u32,
    offset: u32,
    feature: Option<Feature>,
}

impl ConfigLe32 {
    /// See [`config_le32!`](crate::config_le32), the only caller (public
    /// only for the macro, which expands in the driver's crate).
    #[doc(hidden)]
    pub const fn checked(device: u32, offset: usize, width: usize, config_size: usize) -> Self {
        assert!(width == 4, "not a 32-bit config field");
        assert!(offset + width <= config_size, "config field out of range");
        // INVARIANT: Checked above (in a constant, so at build time).
        Self {
            device,
            offset: offset as u32,
            feature: None,
        }
    }

    /// The same field, present only when `feature` was negotiated (the
    /// spec's "only exists if VIRTIO_..._F_... is set").
    pub const fn only_with(self, feature: Feature) -> Self {
        Self {
            feature: Some(feature),
            ..self
        }
    }

    /// The feature without which the field does not exist, if any.
    pub(super) const fn feature(self) -> Option<Feature> {
        self.feature
    }

    /// The device type whose config space holds the field.
    pub(super) const fn device(self) -> u32 {
        self.device
    }

    /// The field's offset in config space.
    pub(super) const fn offset(self) -> u32 {
        self.offset
    }

    /// The size of the field `field` returns (for
    /// [`config_le32!`](crate::config_le32); never called).
    #[doc(hidden)]
    pub const fn field_size<C, T>(_field: fn(&C) -> &T) -> usize {
        core::mem::size_of::<T>()
    }
}

/// `config_le32!(DEVICE_ID, Config, field)`: the [`ConfigLe32`] of `field`
/// of config struct `Config` of devices of type `DEVICE_ID`, checked to be
/// a 4-byte field at build time. Use it in a `const`.
///
/// # Examples
///
/// ```
/// use kernel::{config_le32, uapi, virtio::ConfigLe32};
///
/// // The balloon's target, which the driver reads with
/// // `BoundGuard::read_config_le32`. A field that is not 32 bits wide, or
/// // lies outside the struct, fails the build.
/// const NUM_PAGES: ConfigLe32 = config_le32!(
///     uapi::VIRTIO_ID_BALLOON,
///     uapi::virtio_balloon_config,
///     num_pages
/// );
/// # let _ = NUM_PAGES;
/// ```
#[macro_export]
macro_rules! config_le32 {
    ($device:expr, $config:ty, $field:ident) => {
        $crate::virtio::ConfigLe32::checked(
            $device,
            ::core::mem::offset_of!($config, $field),
            $crate::virtio::ConfigLe32::field_size(|config: &$config| &config.$field),
            ::core::mem::size_of::<$config>(),
        )
    };
}
