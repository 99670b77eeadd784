//! Residual MLPs: batch norm and skip connections (seed §5).
//!
//! Each [`ResidualBlock`] computes `x + fc2(relu(bn(fc1(x))))`; the identity
//! path lets gradients reach the first layers of deep stacks undiminished.
//! Names follow the PyTorch definition in `tools/reference/training_core.py`
//! (`inp`, `blocks.{i}.fc1`, `blocks.{i}.bn`, `blocks.{i}.fc2`, `out`).

use alloc::vec::Vec;

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use ember_runtime::precision::{add, linear};

use crate::batchnorm::{BatchNorm1d, BatchNorm1dConfig};

/// One residual block of width `d`.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    /// First projection.
    pub fc1: Linear,
    /// Batch norm after the first projection (absent when disabled).
    pub bn: Option<BatchNorm1d>,
    /// Second projection, added to the input.
    pub fc2: Linear,
}

impl ResidualBlock {
    /// `x + fc2(relu(bn(fc1(x))))`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut h = linear(&self.fc1, x.clone());
        if let Some(bn) = &self.bn {
            h = bn.forward(h);
        }
        add(x, linear(&self.fc2, relu(h)))
    }
}

/// Configuration of a [`ResidualMlp`].
#[derive(Config, Debug)]
pub struct ResidualMlpConfig {
    /// Input features.
    pub d_input: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Output features.
    pub d_output: usize,
    /// Number of residual blocks.
    pub num_blocks: usize,
    /// Whether blocks use batch norm.
    #[config(default = true)]
    pub batch_norm: bool,
}

/// `inp → blocks… → out`.
#[derive(Module, Debug)]
pub struct ResidualMlp {
    /// Input projection.
    pub inp: Linear,
    /// Residual blocks.
    pub blocks: Vec<ResidualBlock>,
    /// Output projection.
    pub out: Linear,
}

impl ResidualMlpConfig {
    /// Builds the network on `device`.
    pub fn init(&self, device: &Device) -> ResidualMlp {
        let d = self.d_model;
        let blocks = (0..self.num_blocks)
            .map(|_| ResidualBlock {
                fc1: LinearConfig::new(d, d).init(device),
                bn: self
                    .batch_norm
                    .then(|| BatchNorm1dConfig::new(d).init(device)),
                fc2: LinearConfig::new(d, d).init(device),
            })
            .collect();
        ResidualMlp {
            inp: LinearConfig::new(self.d_input, d).init(device),
            blocks,
            out: LinearConfig::new(d, self.d_output).init(device),
        }
    }
}

impl ResidualMlp {
    /// `[batch, d_input]` → `[batch, d_output]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut h = linear(&self.inp, x);
        for block in &self.blocks {
            h = block.forward(h);
        }
        linear(&self.out, h)
    }
}

/// Inputs `[batch, d_input]` and regression targets `[batch, d_output]`.
pub type RegressionBatch = (Tensor<2>, Tensor<2>);

/// Stem: `inp`; blocks: the residual blocks; head: `out` and the mean
/// squared error. For [`ember_runtime::recompute`].
impl ember_runtime::recompute::Segmented<2> for ResidualMlp {
    type Batch = RegressionBatch;
    type Context = ();
    fn num_blocks(&self) -> usize {
        self.blocks.len()
    }
    fn stem(&self, (x, _): &RegressionBatch) -> (Tensor<2>, ()) {
        (linear(&self.inp, x.clone()), ())
    }
    fn block(&self, index: usize, x: Tensor<2>, _: &()) -> Tensor<2> {
        self.blocks[index].forward(x)
    }
    fn head(&self, x: Tensor<2>, (_, y): &RegressionBatch, _: &()) -> ember_runtime::train::Output {
        let [n, _] = y.dims();
        ember_runtime::train::Output::new(
            ember_runtime::loss::mse(linear(&self.out, x), y.clone()),
            n,
        )
    }
}
