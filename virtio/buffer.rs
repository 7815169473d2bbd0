// SPDX-License-Identifier: GPL-2.0

//! Buffers the driver hands to the device through a virtqueue.

use kernel::prelude::*;

/// A byte buffer the device reads (an "out" buffer), filled with
/// little-endian fields.
///
/// While a buffer sits in a virtqueue the queue owns it (see
/// [`super::BoundGuard::add_outbuf`]), so the driver can neither change nor
/// free memory the device may still read.
///
/// # Invariants
///
/// `bytes` has a non-zero capacity, so its storage comes from `kmalloc` and is
/// in the kernel's linear map, where a scatterlist can point at it.
pub struct Buffer {
    bytes: KVec<u8>,
}

impl Buffer {
    /// Allocates an empty buffer that holds up to `capacity` bytes.
    pub fn new(capacity: usize) -> Result<KBox<Self>> {
        if capacity == 0 {
            return Err(EINVAL);
        }
        let bytes = KVec::with_capacity(capacity, GFP_KERNEL)?;
        Ok(KBox::new(Self { bytes }, GFP_KERNEL)?)
    }

    /// Empties the buffer, keeping its storage.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// Number of bytes filled in.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing is filled in.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Room left, in bytes.
    pub(crate) fn room(&self) -> usize {
        self.bytes.capacity() - self.bytes.len()
    }

    fn push(&mut self, bytes: &[u8]) -> Result {
        if self.room() < bytes.len() {
            return Err(ENOSPC);
        }
        for &byte in bytes {
            self.bytes.push_within_capacity(byte).map_err(|_| ENOSPC)?;
        }
        Ok(())
    }

    /// Appends a little-endian `u16`.
    pub fn push_le16(&mut self, value: u16) -> Result {
        self.push(&value.to_le_bytes())
    }

    /// Appends a little-endian `u64`.
    pub fn push_le64(&mut self, value: u64) -> Result {
        self.push(&value.to_le_bytes())
    }

    /// Appends a little-endian `u32`.
    pub fn push_le32(&mut self, value: u32) -> Result {
        self.push(&value.to_le_bytes())
    }

    /// The filled-in bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }
}
