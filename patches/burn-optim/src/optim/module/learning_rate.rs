//! Per-parameter-group learning rates, usable without `std`.
//!
//! Split out of `lr_scheduler::module_lr_scheduler` (std only) so that the
//! module optimizer, which takes a [`ModuleLearningRate`], builds in `no_std`.

use alloc::vec;
use alloc::vec::Vec;
use burn_core::module::{ParamGroup, ParamId};

use crate::LearningRate;

#[derive(Clone)]
pub(crate) struct LrGroup {
    pub(crate) group: ParamGroup,
    pub(crate) lr: f64,
}

/// Determines what learning rate to use for a given trainable parameter.
#[derive(Clone, Default)]
pub struct ModuleLearningRate {
    pub(crate) groups: Vec<LrGroup>,
}

impl From<LearningRate> for ModuleLearningRate {
    fn from(value: LearningRate) -> Self {
        Self {
            groups: vec![LrGroup {
                group: ParamGroup::all(),
                lr: value,
            }],
        }
    }
}

impl ModuleLearningRate {
    /// Get the effective learning rate for the given parameter.
    pub fn lr_from_param(&self, id: ParamId, path: Option<&str>) -> LearningRate {
        self.groups
            .iter()
            .filter_map(|val| val.group.matches(&id, path).then_some(val.lr))
            .next_back()
            .expect("Should match at least one parameter group.")
    }

    /// Get the base learning rate value which's group matches all parameters.
    pub fn base(&self) -> LearningRate {
        self.groups
            .first()
            .expect("Should have at least one learning rate.")
            .lr
    }
}

