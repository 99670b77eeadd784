//! Multi-layer perceptrons.
//!
//! [`Mlp`] stores its linear layers in `layers`; [`Mlp::torch_key`] gives the
//! key PyTorch's `nn.Sequential(Linear, act, [Dropout,] Linear, …)` uses for each
//! parameter, so weights move between the two without hand-written renaming.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use burn::config::Config;
use burn::module::Module;
use burn::nn::activation::{Activation, ActivationConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};

/// Configuration of an [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Layer widths, input first: `[16, 64, 64, 1]` is 16 → 64 → 64 → 1.
    pub sizes: Vec<usize>,
    /// Activation between layers (none after the last).
    #[config(default = "ActivationConfig::Relu")]
    pub activation: ActivationConfig,
    /// Dropout probability after each hidden activation (0 disables it).
    #[config(default = 0.0)]
    pub dropout: f64,
}

/// A stack of `Linear` layers with an activation (and optional dropout)
/// between them.
#[derive(Module, Debug)]
pub struct Mlp {
    /// The linear layers, input first.
    pub layers: Vec<Linear>,
    /// The activation between layers.
    pub activation: Activation,
    /// Dropout after each hidden activation.
    pub dropout: Dropout,
}

impl MlpConfig {
    /// Builds the network on `device` with PyTorch's default initialisation
    /// (Kaiming-uniform weights, uniform biases with bound `1/√fan_in`).
    ///
    /// # Panics
    /// With fewer than two sizes or a dropout outside `[0, 1)`.
    pub fn init(&self, device: &Device) -> Mlp {
        assert!(
            self.sizes.len() >= 2,
            "an MLP needs at least an input and an output size"
        );
        let layers = self
            .sizes
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        Mlp {
            layers,
            activation: self.activation.init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

impl Mlp {
    /// `[batch, sizes[0]]` → `[batch, sizes[last]]`.
    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = ember_runtime::precision::linear(layer, x);
            if i < last {
                x = self.dropout.forward(self.activation.forward(x));
            }
        }
        x
    }

    /// The PyTorch `nn.Sequential` key of a parameter path of this model
    /// (`layers.1.weight` → `2.weight`, or `3.weight` with dropout layers).
    /// Returns `None` for paths that are not layer parameters.
    pub fn torch_key(&self, path: &str) -> Option<String> {
        let rest = path.strip_prefix("layers.")?;
        let (index, name) = rest.split_once('.')?;
        let index: usize = index.parse().ok()?;
        let stride = if self.dropout.prob > 0.0 { 3 } else { 2 };
        Some(format!("{}.{}", index * stride, name))
    }
}

/// Inputs `[batch, features]` and class labels `[batch]`.
pub type ClassificationBatch = (Tensor<2>, Tensor<1, Int>);

/// Stem: the input; blocks: each linear layer with its activation and
/// dropout (none after the last); head: cross-entropy of the logits. For
/// [`ember_runtime::recompute`].
impl ember_runtime::recompute::Segmented<2> for Mlp {
    type Batch = ClassificationBatch;
    type Context = ();
    fn num_blocks(&self) -> usize {
        self.layers.len()
    }
    fn stem(&self, (x, _): &ClassificationBatch) -> (Tensor<2>, ()) {
        (x.clone(), ())
    }
    fn block(&self, index: usize, x: Tensor<2>, _: &()) -> Tensor<2> {
        let x = ember_runtime::precision::linear(&self.layers[index], x);
        if index + 1 < self.layers.len() {
            self.dropout.forward(self.activation.forward(x))
        } else {
            x
        }
    }
    fn head(
        &self,
        logits: Tensor<2>,
        (_, y): &ClassificationBatch,
        _: &(),
    ) -> ember_runtime::train::Output {
        ember_runtime::train::Output::classification(logits, y.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_keys_follow_sequential_indices() {
        let device = ember_runtime::device::cpu();
        let plain = MlpConfig::new(alloc::vec![4, 8, 8, 1]).init(&device);
        assert_eq!(
            plain.torch_key("layers.0.weight").as_deref(),
            Some("0.weight")
        );
        assert_eq!(plain.torch_key("layers.2.bias").as_deref(), Some("4.bias"));
        assert_eq!(plain.torch_key("dropout.prob"), None);
        let dropout = MlpConfig::new(alloc::vec![4, 8, 1])
            .with_dropout(0.1)
            .init(&device);
        assert_eq!(
            dropout.torch_key("layers.1.weight").as_deref(),
            Some("3.weight")
        );
    }
}
