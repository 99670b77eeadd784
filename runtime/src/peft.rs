//! Parameter-efficient fine-tuning: LoRA computed as `x·A·B`.
//!
//! A [`Lora`] adapter sits beside a frozen `Linear` layer `W` and adds
//! `scaling · dropout(x)·A·B` to its output, with `A: [in, r]`, `B: [r, out]`
//! and `scaling = alpha / r`. The dense `ΔW = A·B` is never formed during
//! training: the extra activation memory is `batch × r` per layer, and the
//! gradients are only those of `A` and `B`. ([`merge`] forms it once, to fold
//! a trained adapter into the base weight for inference.)
//!
//! Names and initialisation follow Hugging Face `peft`: the parameters are
//! `lora_A.weight` (`[r, in]` in PyTorch's layout) and `lora_B.weight`
//! (`[out, r]`), `A` is Kaiming-uniform and `B` zero, so a fresh adapter leaves
//! the model unchanged. A model holding an adapter for a layer `query` names it
//! `query_lora`; [`PEFT_EXPORT_REMAP`] turns that into peft's
//! `query.lora_A.weight`.
//!
//! ```
//! use burn::nn::LinearConfig;
//! use burn::tensor::{Device, Tensor};
//! use ember_runtime::peft::{Lora, LoraConfig};
//!
//! let device = ember_runtime::device::cpu().autodiff();
//! let base = LinearConfig::new(16, 8).init(&device);
//! let lora: Lora = LoraConfig::new(4).with_alpha(8.0).init(16, 8, &device);
//! let x = Tensor::<2>::ones([2, 16], &device);
//! // B starts at zero: the adapted layer equals the base layer.
//! let y = base.forward(x.clone()) + lora.forward(x.clone());
//! assert_eq!(y.into_data(), base.forward(x).into_data());
//! ```
#![allow(non_snake_case)] // peft's names: lora_A, lora_B

use alloc::string::String;
use alloc::vec::Vec;

use burn::config::Config;
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::params::PathTracker;
use crate::precision;

/// `(regex, replacement)` from Ember's adapter paths (`…query_lora.lora_A.weight`)
/// to peft's (`…query.lora_A.weight`).
pub const PEFT_EXPORT_REMAP: (&str, &str) = (r"_lora\.lora_([AB])\.", ".lora_$1.");

/// How Burn names [`Lora`] as the holder of its fields when it walks a
/// module (`ModuleVisitor::enter_module`'s `container_type`): a parameter is
/// an adapter's when a module of this type holds it.
pub const ADAPTER_CONTAINER: &str = "Struct:Lora";

/// The paths of every parameter of `module` that a LoRA adapter holds, in
/// declaration order (an adapter file's tensors).
pub fn adapter_paths<M: Module>(module: &M) -> Vec<String> {
    struct Visitor {
        tracker: PathTracker,
        out: Vec<String>,
    }
    impl ModuleVisitor for Visitor {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.tracker.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.tracker.exit();
        }
        fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
            if self.tracker.within(ADAPTER_CONTAINER) {
                self.out.push(self.tracker.path());
            }
        }
    }
    let mut v = Visitor {
        tracker: PathTracker::default(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

/// LoRA hyper-parameters (peft's `LoraConfig`).
#[derive(Config, Debug)]
pub struct LoraConfig {
    /// Rank `r`.
    pub r: usize,
    /// `lora_alpha`; the update is scaled by `alpha / r`.
    #[config(default = 8.0)]
    pub alpha: f64,
    /// Dropout on the adapter's input (`lora_dropout`).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Names of the `Linear` layers to adapt (peft's `target_modules`), e.g.
    /// `["query", "value"]`.
    #[config(default = "Vec::new()")]
    pub target_modules: Vec<String>,
}

/// A LoRA adapter for one `Linear` layer.
#[derive(Module, Debug)]
pub struct Lora {
    /// Down-projection `A` (`in → r`, no bias).
    pub lora_A: Linear,
    /// Up-projection `B` (`r → out`, no bias), zero at initialisation.
    pub lora_B: Linear,
    /// Dropout on the adapter input.
    pub dropout: Dropout,
    /// `alpha / r`.
    pub scaling: f64,
}

impl LoraConfig {
    /// An adapter for a `d_input → d_output` layer.
    pub fn init(&self, d_input: usize, d_output: usize, device: &Device) -> Lora {
        let r = self.r.max(1);
        // peft: kaiming_uniform_(A, a=√5) → U(−1/√in, 1/√in); B = 0.
        let a = LinearConfig::new(d_input, r)
            .with_bias(false)
            .with_initializer(Initializer::KaimingUniform {
                gain: 1.0 / libm::sqrt(3.0),
                fan_out_only: false,
            })
            .init(device);
        let b = LinearConfig::new(r, d_output)
            .with_bias(false)
            .with_initializer(Initializer::Zeros)
            .init(device);
        Lora {
            lora_A: a,
            lora_B: b,
            dropout: DropoutConfig::new(self.dropout).init(),
            scaling: self.alpha / r as f64,
        }
    }

    /// Whether a layer named `name` (the last segment of its path) is a target.
    pub fn targets(&self, name: &str) -> bool {
        self.target_modules.iter().any(|t| t == name)
    }
}

impl Lora {
    /// `scaling · dropout(x)·A·B`: add it to the base layer's output. Under
    /// [`precision::autocast`] the input is cast to the compute type before
    /// the dropout (which `A`'s product would do after it), so the dropout's
    /// mask and output, kept for backward, take half the bytes.
    ///
    /// The scaling is applied to the `r`-wide `x·A` rather than to the
    /// output (peft scales the output): the same product up to rounding,
    /// exactly the same for a power-of-two `alpha / r`, at `r` instead of
    /// `out` multiplications per row, forward and backward.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let down = precision::linear(&self.lora_A, self.dropout.forward(precision::to_compute(x)));
        precision::linear(&self.lora_B, down.mul_scalar(self.scaling))
    }

    /// `ΔW = scaling · A·B` in Burn's `[in, out]` layout.
    pub fn delta(&self) -> Tensor<2> {
        self.lora_A
            .weight
            .val()
            .matmul(self.lora_B.weight.val())
            .mul_scalar(self.scaling)
    }
}

/// `base + lora` for an optional adapter: the forward pass of an adapted layer.
pub fn forward_with<const D: usize>(base: &Linear, lora: Option<&Lora>, x: Tensor<D>) -> Tensor<D> {
    match lora {
        Some(lora) => precision::add(precision::linear(base, x.clone()), lora.forward(x)),
        None => precision::linear(base, x),
    }
}

/// Folds the adapter into the base weight (`W + scaling·A·B`), for inference
/// without the extra matmuls. Keeps the base weight's parameter id.
pub fn merge(base: Linear, lora: &Lora) -> Linear {
    let delta = lora.delta().detach();
    Linear {
        weight: base.weight.map(|w| w + delta),
        bias: base.bias,
    }
}

/// Undoes [`merge`] (up to rounding).
pub fn unmerge(base: Linear, lora: &Lora) -> Linear {
    let delta = lora.delta().detach();
    Linear {
        weight: base.weight.map(|w| w - delta),
        bias: base.bias,
    }
}

/// A frozen copy of `linear` (no gradients for its weight and bias).
pub fn freeze_linear(linear: Linear) -> Linear {
    Linear {
        weight: linear.weight.set_require_grad(false),
        bias: linear
            .bias
            .map(|b: Param<Tensor<1>>| b.set_require_grad(false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::ModuleVisitor;

    /// Burn's derive names `Lora` as [`ADAPTER_CONTAINER`] when it walks
    /// one: renaming the type must not silently unfreeze the adapters.
    #[test]
    fn the_adapter_container_is_the_lora_type() {
        struct Containers(Vec<String>);
        impl ModuleVisitor for Containers {
            fn enter_module(&mut self, _name: &str, container_type: &str) {
                self.0.push(container_type.into());
            }
        }
        let lora = LoraConfig::new(2).init(4, 3, &crate::device::cpu());
        let mut seen = Containers(Vec::new());
        lora.visit(&mut seen);
        assert!(
            seen.0.iter().any(|c| c == ADAPTER_CONTAINER),
            "{:?}",
            seen.0
        );
    }

    #[test]
    fn adapter_paths_are_the_parameters_adapters_hold() {
        use burn::nn::{Linear, LinearConfig};

        #[derive(Module, Debug)]
        struct Adapted {
            lora_like: Linear,
            value: Linear,
            value_lora: Option<Lora>,
        }
        let device = crate::device::cpu();
        let model = Adapted {
            lora_like: LinearConfig::new(4, 3).init(&device),
            value: LinearConfig::new(4, 3).init(&device),
            value_lora: Some(LoraConfig::new(2).init(4, 3, &device)),
        };
        assert_eq!(
            adapter_paths(&model),
            ["value_lora.lora_A.weight", "value_lora.lora_B.weight"]
        );
    }
}
