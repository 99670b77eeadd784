//! The seed's `SimpleNet`: `fc1 → ReLU → dropout → fc2`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Configuration of [`SimpleNet`] (the ML Core notes use 10 → 64 → 1, dropout 0.2).
#[derive(Config, Debug)]
pub struct SimpleNetConfig {
    /// Input features.
    #[config(default = 10)]
    pub d_input: usize,
    /// Hidden width.
    #[config(default = 64)]
    pub d_hidden: usize,
    /// Output features.
    #[config(default = 1)]
    pub d_output: usize,
    /// Dropout probability after the hidden layer.
    #[config(default = 0.2)]
    pub dropout: f64,
}

/// `fc1 → ReLU → dropout → fc2`, with PyTorch's parameter names.
#[derive(Module, Debug)]
pub struct SimpleNet {
    /// First linear layer.
    pub fc1: Linear,
    /// Dropout after the activation.
    pub dropout: Dropout,
    /// Output layer.
    pub fc2: Linear,
}

impl SimpleNetConfig {
    /// Builds the network on `device`.
    pub fn init(&self, device: &Device) -> SimpleNet {
        SimpleNet {
            fc1: LinearConfig::new(self.d_input, self.d_hidden).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            fc2: LinearConfig::new(self.d_hidden, self.d_output).init(device),
        }
    }
}

impl SimpleNet {
    /// `[batch, d_input]` → `[batch, d_output]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2
            .forward(self.dropout.forward(relu(self.fc1.forward(x))))
    }
}
