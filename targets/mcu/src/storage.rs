//! Where the learner's weights live between power cycles: any byte store
//! (a flash sector, an EEPROM, a file) behind the [`Storage`] trait. The
//! bytes are a safetensors file (see [`Learner::save`](crate::Learner::save)).
//!
//! ```
//! use ember_mcu::{RamStorage, Storage};
//!
//! let mut store = RamStorage::new(16);
//! store.write(b"hello")?;
//! assert_eq!(store.read()?, b"hello");
//! assert!(store.write(&[0; 17]).is_err());
//! # Ok::<(), ember_mcu::StorageError>(())
//! ```

use alloc::vec::Vec;
use core::fmt;

/// Why a [`Storage`] operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageError {
    /// The data does not fit.
    Full {
        /// Bytes to write.
        needed: usize,
        /// Bytes the storage holds.
        capacity: usize,
    },
    /// Nothing has been written yet.
    Empty,
    /// The device failed (erase, program or read error).
    Device,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Full { needed, capacity } => {
                write!(
                    f,
                    "{needed} bytes do not fit in a storage of {capacity} bytes"
                )
            }
            StorageError::Empty => f.write_str("nothing stored"),
            StorageError::Device => f.write_str("device error"),
        }
    }
}

impl core::error::Error for StorageError {}

/// A byte store holding one blob (the latest weights).
pub trait Storage {
    /// Replaces the stored blob with `bytes`.
    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError>;

    /// The stored blob.
    fn read(&mut self) -> Result<Vec<u8>, StorageError>;
}

/// A [`Storage`] in RAM with a fixed capacity: for tests, and for boards that
/// keep weights in retained RAM across resets.
#[derive(Debug, Clone, Default)]
pub struct RamStorage {
    data: Option<Vec<u8>>,
    capacity: usize,
}

impl RamStorage {
    /// An empty store of `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            data: None,
            capacity,
        }
    }

    /// Bytes currently stored.
    pub fn len(&self) -> usize {
        self.data.as_ref().map_or(0, Vec::len)
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.data.is_none()
    }
}

impl Storage for RamStorage {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        if bytes.len() > self.capacity {
            return Err(StorageError::Full {
                needed: bytes.len(),
                capacity: self.capacity,
            });
        }
        let buf = self.data.get_or_insert_with(Vec::new);
        buf.clear();
        buf.extend_from_slice(bytes);
        Ok(())
    }

    fn read(&mut self) -> Result<Vec<u8>, StorageError> {
        self.data.clone().ok_or(StorageError::Empty)
    }
}
