//! `BatchNorm1d` with PyTorch's semantics.
//!
//! Normalises over the batch (and length) dimensions of `[N, C]` or `[N, C, L]`
//! inputs. In training mode it uses the batch statistics and updates
//! `running_mean` / `running_var` with `momentum`; in evaluation mode (a
//! non-autodiff device, or after [`Module::valid`]) it uses the running
//! statistics.
//!
//! The one difference from Burn's `BatchNorm` is the running variance: PyTorch
//! normalises with the biased batch variance but tracks the **unbiased** one
//! (`n/(n−1)` correction) in `running_var`; Burn tracks the biased one, so a
//! model trained in Burn evaluates differently from the same model trained in
//! PyTorch. This module follows PyTorch, and names its parameters as PyTorch
//! does (`weight`, `bias`, `running_mean`, `running_var`).

use burn::config::Config;
use burn::module::{Flag, Module, Param, RunningState};
use burn::tensor::{Device, Tensor};

/// Configuration of [`BatchNorm1d`].
#[derive(Config, Debug)]
pub struct BatchNorm1dConfig {
    /// Number of channels `C`.
    pub num_features: usize,
    /// Added to the variance before the square root.
    #[config(default = 1e-5)]
    pub eps: f64,
    /// Weight of the new batch statistics in the running averages.
    #[config(default = 0.1)]
    pub momentum: f64,
}

/// Batch normalisation over `[N, C]` or `[N, C, L]` inputs.
#[derive(Module, Debug)]
pub struct BatchNorm1d {
    /// Scale γ, `[C]`, initialised to ones.
    pub weight: Param<Tensor<1>>,
    /// Shift β, `[C]`, initialised to zeros.
    pub bias: Param<Tensor<1>>,
    /// Running mean, `[C]`.
    pub running_mean: RunningState<Tensor<1>>,
    /// Running unbiased variance, `[C]`.
    pub running_var: RunningState<Tensor<1>>,
    /// Whether the layer is in training mode.
    pub training: Param<Flag>,
    /// See [`BatchNorm1dConfig::momentum`].
    pub momentum: f64,
    /// See [`BatchNorm1dConfig::eps`].
    pub eps: f64,
}

impl BatchNorm1dConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> BatchNorm1d {
        let c = self.num_features;
        BatchNorm1d {
            weight: Param::from_tensor(Tensor::ones([c], device)),
            bias: Param::from_tensor(Tensor::zeros([c], device)),
            running_mean: RunningState::new(Tensor::zeros([c], device)),
            running_var: RunningState::new(Tensor::ones([c], device)),
            training: Param::from_bool(true),
            momentum: self.momentum,
            eps: self.eps,
        }
    }
}

impl BatchNorm1d {
    /// Normalises `input` (`[N, C]` or `[N, C, L]`).
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        // fp32 under autocast, as PyTorch's batch norm.
        let input = ember_runtime::precision::to_f32(input);
        let device = input.device();
        if !(device.is_autodiff() && self.training.is_enabled()) {
            return burn::tensor::module::batch_norm(
                input,
                self.weight.val(),
                self.bias.val(),
                self.running_mean.value().to_device(&device),
                self.running_var.value().to_device(&device),
                self.eps,
            );
        }
        let dims = input.dims();
        let per_channel = dims.iter().product::<usize>() / dims[1];
        let result = burn::tensor::module::batch_norm_train(
            input,
            self.weight.val(),
            self.bias.val(),
            self.eps,
        );
        let m = self.momentum;
        let unbiased = if per_channel > 1 {
            per_channel as f64 / (per_channel - 1) as f64
        } else {
            1.0
        };
        let mean = self.running_mean.value_sync().to_device(&device);
        let var = self.running_var.value_sync().to_device(&device);
        let mean = mean
            .mul_scalar(1.0 - m)
            .add(result.mean.detach().mul_scalar(m));
        let var = var
            .mul_scalar(1.0 - m)
            .add(result.variance.detach().mul_scalar(m * unbiased));
        self.running_mean.update(mean.detach());
        self.running_var.update(var.detach());
        result.output
    }
}
