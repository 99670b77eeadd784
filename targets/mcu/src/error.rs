//! The learner's errors.

use core::fmt;

use crate::storage::StorageError;

/// What can go wrong when creating a learner or moving its weights.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The learner would need more heap than its configuration allows
    /// ([`LearnerConfig::heap_budget`](crate::LearnerConfig::heap_budget)).
    /// Nothing was allocated for the model.
    HeapBudget {
        /// Bytes the learner needs (its [`heap_estimate`](crate::LearnerConfig::heap_estimate)).
        needed: usize,
        /// Bytes the configuration allows.
        budget: usize,
    },
    /// A configuration value is out of range (the message says which).
    InvalidConfig(&'static str),
    /// Safetensors bytes that do not hold this learner's weights.
    Weights {
        /// The tensor concerned (empty when the file itself is malformed).
        tensor: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The storage failed.
    Storage(StorageError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::HeapBudget { needed, budget } => write!(
                f,
                "the learner needs {needed} bytes of heap but its budget is {budget} bytes \
                 (reduce the window, the hidden size or the batch, use SGD instead of Adam, or raise the budget)"
            ),
            Error::InvalidConfig(what) => write!(f, "invalid learner configuration: {what}"),
            Error::Weights { tensor: "", reason } => {
                write!(f, "invalid weights: {reason}")
            }
            Error::Weights { tensor, reason } => {
                write!(f, "invalid weights: tensor `{tensor}`: {reason}")
            }
            Error::Storage(e) => write!(f, "storage: {e}"),
        }
    }
}

impl core::error::Error for Error {}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Storage(e)
    }
}
