//! A small CNN for 8×8 single-channel images (the scikit-learn digits), named
//! like its PyTorch definition in `tools/reference/roundtrip.py`:
//! `conv1 → ReLU → maxpool 2 → conv2 → ReLU → maxpool 2 → flatten → fc`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use ember_runtime::precision::{conv2d, linear};

/// Configuration of a [`SmallCnn`].
#[derive(Config, Debug)]
pub struct SmallCnnConfig {
    /// Output classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Channels of the first convolution (the second has twice as many).
    #[config(default = 8)]
    pub channels: usize,
    /// Side of the square input images (divisible by 4).
    #[config(default = 8)]
    pub image_size: usize,
}

/// Two 3×3 convolutions with max pooling and a linear classifier.
#[derive(Module, Debug)]
pub struct SmallCnn {
    /// `1 → channels`, 3×3, padding 1.
    pub conv1: Conv2d,
    /// `channels → 2·channels`, 3×3, padding 1.
    pub conv2: Conv2d,
    /// 2×2 max pooling.
    pub pool: MaxPool2d,
    /// Classifier over the flattened `[2c, s/4, s/4]` features.
    pub fc: Linear,
}

impl SmallCnnConfig {
    /// Builds the network on `device`.
    pub fn init(&self, device: &Device) -> SmallCnn {
        let c = self.channels;
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let side = self.image_size / 4;
        SmallCnn {
            conv1: conv(1, c),
            conv2: conv(c, 2 * c),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc: LinearConfig::new(2 * c * side * side, self.num_classes).init(device),
        }
    }
}

impl SmallCnn {
    /// `[batch, 1, s, s]` → logits `[batch, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(relu(conv2d(&self.conv1, x)));
        let x = self.pool.forward(relu(conv2d(&self.conv2, x)));
        let [b, c, h, w] = x.dims();
        linear(&self.fc, x.reshape([b, c * h * w]))
    }
}
