//! A `#![no_std]` `#![no_main]` canary that links `ember-runtime` and Burn's
//! flex backend with autodiff and optimizers, and runs one clipped AdamW step
//! under a cosine schedule in bf16 with loss scaling, and `ember-mcu`'s online learner (a few samples,
//! then its weights as safetensors bytes). It only has to *build* for a bare-metal target
//! (`thumbv7em-none-eabihf`): if anything in the dependency tree needed `std`,
//! the build would fail. `tools/nostd-check.sh` builds it.
#![no_std]
#![no_main]

extern crate alloc;

mod platform;

use alloc::vec;

use burn::module::Module;
use burn::nn::LinearConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use ember_runtime::clip::GlobalNormClip;
use ember_runtime::loss::mse;
use ember_runtime::optim;
use ember_runtime::precision::{self, LossScalerConfig, Precision, autocast};
use ember_runtime::schedule::{Cosine, Schedule};

/// One training step; the entry point in [`platform`] calls it.
pub fn train_step() -> u32 {
    let device = ember_runtime::device::cpu().autodiff();
    let model = LinearConfig::new(4, 1).init(&device);
    let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32; 8], [2, 4]), &device);
    let y = Tensor::<2>::zeros([2, 1], &device);
    // Mixed precision without std: bf16 compute, fp32 master weights, and
    // the loss scaler's unscale/update around the step.
    let mut scaler = LossScalerConfig::default().init();
    let loss = autocast(Precision::Bf16, || mse(precision::linear(&model, x), y));
    let mut grads = GradientsParams::from_grads(scaler.scale_loss(loss).backward(), &model);
    let found_inf = scaler.unscale(&model, &mut grads).found_inf;
    scaler.update(found_inf);
    let norm = GlobalNormClip::new(1.0)
        .clip(&model, &mut grads)
        .unwrap_or(f64::NAN);
    let lr = Cosine::new(1e-3, 10).lr(1);
    let model = optim::adamw(0.01).init().step(lr, model, grads);
    (norm as f32).to_bits() ^ (model.num_params() as u32) ^ learn_online()
}

/// A few samples through `ember-mcu`'s learner (two updates), then its
/// weights as safetensors bytes; the entry point keeps the result alive.
pub fn learn_online() -> u32 {
    let config = ember_mcu::LearnerConfig::new(4, 4).with_optimizer(ember_mcu::Optimizer::Sgd);
    let Ok(mut learner) = ember_mcu::Learner::new(config) else {
        return 0;
    };
    for t in 0..6u8 {
        learner.observe(f32::from(t) * 0.25);
    }
    learner.to_safetensors().len() as u32 ^ learner.predict().unwrap_or(0.0).to_bits()
}
