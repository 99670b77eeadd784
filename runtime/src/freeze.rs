//! Choosing which parameters train: freezing by parameter path, and the usual
//! parameter-efficient modes (LoRA only, bias only, head only).
//!
//! A frozen parameter has `require_grad` off: autodiff computes no gradient
//! for it and optimizers leave it alone. Paths are the dotted module paths of
//! [`params`](crate::params) (`encoder.layer.0.attention.self.query.bias`).
//!
//! ```
//! use burn::nn::LinearConfig;
//! use burn::tensor::Device;
//! use ember_runtime::freeze::{set_trainable, trainable_count, TrainMode};
//!
//! let linear = LinearConfig::new(4, 3).init(&Device::flex().autodiff());
//! let bias_only = set_trainable(linear, |path| TrainMode::BiasOnly { also: vec![] }.trains(path));
//! assert_eq!(trainable_count(&bias_only), (3, 15));
//! ```

use alloc::string::String;
use alloc::vec::Vec;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

use crate::params::PathTracker;

/// Which parameters train.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainMode {
    /// Every parameter.
    Full,
    /// LoRA adapters (paths containing `lora_`) and parameters under the given
    /// prefixes (typically a new head).
    Lora {
        /// Path prefixes that train besides the adapters.
        also: Vec<String>,
    },
    /// Bias vectors (BitFit) and parameters under the given prefixes.
    BiasOnly {
        /// Path prefixes that train besides the biases.
        also: Vec<String>,
    },
    /// Only the parameters under this path prefix (e.g. `head`).
    HeadOnly {
        /// The prefix.
        prefix: String,
    },
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix || (path.starts_with(prefix) && path[prefix.len()..].starts_with('.'))
}

impl TrainMode {
    /// Whether the parameter at `path` trains in this mode.
    pub fn trains(&self, path: &str) -> bool {
        match self {
            TrainMode::Full => true,
            TrainMode::Lora { also } => {
                path.contains("lora_") || also.iter().any(|p| under(path, p))
            }
            TrainMode::BiasOnly { also } => {
                path == "bias" || path.ends_with(".bias") || also.iter().any(|p| under(path, p))
            }
            TrainMode::HeadOnly { prefix } => under(path, prefix),
        }
    }
}

/// `module` with `require_grad` set to `trainable(path)` for every float
/// parameter.
pub fn set_trainable<M: Module>(module: M, trainable: impl FnMut(&str) -> bool) -> M {
    struct Mapper<F> {
        tracker: PathTracker,
        trainable: F,
    }
    impl<F: FnMut(&str) -> bool> ModuleMapper for Mapper<F> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.tracker.enter(name);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.tracker.exit();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let train = (self.trainable)(&self.tracker.path());
            param.set_require_grad(train)
        }
    }
    module.map(&mut Mapper {
        tracker: PathTracker::default(),
        trainable,
    })
}

/// `module` with every parameter whose path matches one of the regular
/// expressions frozen (the others unchanged).
///
/// # Errors
/// An invalid regular expression.
#[cfg(feature = "std")]
pub fn freeze_matching<M: Module>(module: M, patterns: &[&str]) -> Result<M, crate::Error> {
    let set = regex::RegexSet::new(patterns).map_err(|e| crate::Error::InvalidArgument {
        message: alloc::format!("{e}"),
    })?;
    let current: Vec<(String, bool)> = trainable_paths(&module);
    let mut i = 0;
    Ok(set_trainable(module, |path| {
        let was = current.get(i).is_some_and(|(p, t)| p == path && *t);
        i += 1;
        was && !set.is_match(path)
    }))
}

/// Path and `require_grad` of every float parameter, in declaration order.
pub fn trainable_paths<M: Module>(module: &M) -> Vec<(String, bool)> {
    struct Visitor {
        tracker: PathTracker,
        out: Vec<(String, bool)>,
    }
    impl ModuleVisitor for Visitor {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.tracker.enter(name);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.tracker.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.out
                .push((self.tracker.path(), param.is_require_grad()));
        }
    }
    let mut v = Visitor {
        tracker: PathTracker::default(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

/// `(trainable, total)` numbers of scalars in the float parameters.
pub fn trainable_count<M: Module>(module: &M) -> (usize, usize) {
    struct Visitor(usize, usize);
    impl ModuleVisitor for Visitor {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let n = param.shape().num_elements();
            self.1 += n;
            if param.is_require_grad() {
                self.0 += n;
            }
        }
    }
    let mut v = Visitor(0, 0);
    module.visit(&mut v);
    (v.0, v.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn modes_select_by_path() {
        let lora = TrainMode::Lora {
            also: vec!["head".to_string()],
        };
        assert!(lora.trains("encoder.layer.0.attention.self.query_lora.lora_A.weight"));
        assert!(lora.trains("head.weight"));
        assert!(!lora.trains("header.weight"));
        assert!(!lora.trains("encoder.layer.0.attention.self.query.weight"));
        let bias = TrainMode::BiasOnly {
            also: vec!["head".to_string()],
        };
        assert!(bias.trains("a.b.bias") && bias.trains("head.weight"));
        assert!(!bias.trains("a.b.bias_scale") && !bias.trains("a.b.weight"));
        let head = TrainMode::HeadOnly {
            prefix: "head".to_string(),
        };
        assert!(head.trains("head.bias") && !head.trains("encoder.bias"));
    }
}
