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
//! let linear = LinearConfig::new(4, 3).init(&ember_runtime::device::cpu().autodiff());
//! let bias_only = set_trainable(linear, |param| TrainMode::BiasOnly { also: vec![] }.trains(param));
//! assert_eq!(trainable_count(&bias_only), (3, 15));
//! ```

use alloc::string::String;
use alloc::vec::Vec;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

use crate::params::PathTracker;
use crate::peft::ADAPTER_CONTAINER;

/// A float parameter as the rules of this module see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSite<'a> {
    /// Its dotted path (`encoder.layer.0.attention.self.query.bias`).
    pub path: &'a str,
    /// Whether a LoRA adapter ([`Lora`](crate::peft::Lora)) holds it.
    pub in_adapter: bool,
}

impl<'a> ParamSite<'a> {
    /// A parameter at `path` outside any adapter.
    pub fn at(path: &'a str) -> Self {
        Self {
            path,
            in_adapter: false,
        }
    }
}

/// Which parameters train.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainMode {
    /// Every parameter.
    Full,
    /// The parameters of LoRA adapters (found by their module type,
    /// [`Lora`](crate::peft::Lora)) and those under the given prefixes
    /// (typically a new head).
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
    /// Whether `param` trains in this mode.
    pub fn trains(&self, param: &ParamSite<'_>) -> bool {
        let path = param.path;
        match self {
            TrainMode::Full => true,
            TrainMode::Lora { also } => param.in_adapter || also.iter().any(|p| under(path, p)),
            TrainMode::BiasOnly { also } => {
                path == "bias" || path.ends_with(".bias") || also.iter().any(|p| under(path, p))
            }
            TrainMode::HeadOnly { prefix } => under(path, prefix),
        }
    }
}

/// `module` with `require_grad` set to `trainable(param)` for every float
/// parameter.
pub fn set_trainable<M: Module>(module: M, trainable: impl FnMut(&ParamSite<'_>) -> bool) -> M {
    struct Mapper<F> {
        tracker: PathTracker,
        trainable: F,
    }
    impl<F: FnMut(&ParamSite<'_>) -> bool> ModuleMapper for Mapper<F> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.tracker.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.tracker.exit();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let path = self.tracker.path();
            let site = ParamSite {
                path: &path,
                in_adapter: self.tracker.within(ADAPTER_CONTAINER),
            };
            let train = (self.trainable)(&site);
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
    Ok(set_trainable(module, |param| {
        let was = current.get(i).is_some_and(|(p, t)| p == param.path && *t);
        i += 1;
        was && !set.is_match(param.path)
    }))
}

/// Path and `require_grad` of every float parameter, in declaration order.
pub fn trainable_paths<M: Module>(module: &M) -> Vec<(String, bool)> {
    struct Visitor {
        tracker: PathTracker,
        out: Vec<(String, bool)>,
    }
    impl ModuleVisitor for Visitor {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.tracker.enter(name, container_type);
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
    fn modes_select_by_path_and_adapter() {
        let site = ParamSite::at;
        let adapter = |path| ParamSite {
            path,
            in_adapter: true,
        };
        let lora = TrainMode::Lora {
            also: vec!["head".to_string()],
        };
        assert!(lora.trains(&adapter(
            "encoder.layer.0.attention.self.query_lora.lora_A.weight"
        )));
        assert!(lora.trains(&site("head.weight")));
        assert!(!lora.trains(&site("header.weight")));
        assert!(!lora.trains(&site("encoder.layer.0.attention.self.query.weight")));
        // A name is not an adapter: only the module type makes one.
        assert!(!lora.trains(&site("encoder.lora_like.weight")));
        let bias = TrainMode::BiasOnly {
            also: vec!["head".to_string()],
        };
        assert!(bias.trains(&site("a.b.bias")) && bias.trains(&site("head.weight")));
        assert!(!bias.trains(&site("a.b.bias_scale")) && !bias.trains(&site("a.b.weight")));
        let head = TrainMode::HeadOnly {
            prefix: "head".to_string(),
        };
        assert!(head.trains(&site("head.bias")) && !head.trains(&site("encoder.bias")));
    }

    #[test]
    fn lora_mode_finds_adapters_by_their_type() {
        use crate::peft::{Lora, LoraConfig};
        use burn::nn::{Linear, LinearConfig};

        #[derive(Module, Debug)]
        struct Adapted {
            base: Linear,
            base_lora: Lora,
        }
        let device = crate::device::cpu().autodiff();
        let model = Adapted {
            base: LinearConfig::new(4, 3).init(&device),
            base_lora: LoraConfig::new(2).init(4, 3, &device),
        };
        let mode = TrainMode::Lora { also: vec![] };
        let model = set_trainable(model, |p| mode.trains(p));
        let trained: Vec<String> = trainable_paths(&model)
            .into_iter()
            .filter(|(_, t)| *t)
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            trained,
            ["base_lora.lora_A.weight", "base_lora.lora_B.weight"]
        );
    }
}
