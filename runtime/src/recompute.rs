//! Segment recomputation (activation checkpointing), like
//! `torch.utils.checkpoint`: the inner activations of a segment of blocks are
//! not kept after the forward pass; the segment runs again during backward.
//!
//! A network that can be split implements [`Segmented`]: a *stem* (inputs →
//! the first block's input), `L` *blocks* that map an activation to one of the
//! same shape (transformer layers, residual blocks), and a *head* (last
//! activation → loss). [`forward_backward`] then runs one training step's
//! forward and backward under a [`Strategy`]:
//!
//! * [`Strategy::None`]: the ordinary autodiff graph, every activation kept.
//! * [`Strategy::EveryK`]`(k)`: segments of `k` blocks. The forward pass runs
//!   without recording a graph and keeps only the activations at segment
//!   boundaries; backward walks the segments in reverse, recomputes each one
//!   with a graph from its boundary, and backpropagates through it the
//!   gradient that arrived at its output. Peak activation memory: the
//!   boundaries plus one segment's activations.
//! * [`Strategy::Auto`]: `k = ⌈√L⌉`, which minimises that peak (Chen et al.,
//!   "Training deep nets with sublinear memory cost").
//! * [`Strategy::Balanced`]: Burn's own gradient checkpointing (the
//!   autodiff device recomputes memory-bound ops and keeps compute-bound
//!   ones); the model must live on a device made with
//!   [`Device::gradient_checkpointing`].
//!
//! The cost is one more forward pass of the blocks. Gradients are those of the
//! plain graph: the same operations run on the same values. Randomness is
//! replayed: before each block the device RNG is seeded from a base drawn
//! once per step and the block's index, under every strategy, so dropout
//! draws the same masks in the recomputation as in the forward pass, and
//! the same masks as without recomputation. Parameters must have their
//! values before the first step ([`crate::params::materialize`]; the
//! [`Trainer`](crate::train::Trainer) does it): a lazily initialised parameter
//! would draw its value from the RNG between the per-block seeds.
//!
//! As with `torch.utils.checkpoint`, a block with running statistics (batch
//! norm in training mode) updates them twice per step under recomputation
//! (forward pass and recomputation); layer norm, dropout and the layers of
//! Ember's models are unaffected.
//!
//! ```
//! use burn::module::Module;
//! use burn::nn::{Linear, LinearConfig};
//! use burn::tensor::{Device, Tensor};
//! use ember_runtime::loss::mse;
//! use ember_runtime::recompute::{forward_backward, Segmented, Strategy};
//! use ember_runtime::train::Output;
//!
//! #[derive(Module, Debug)]
//! struct Deep { blocks: Vec<Linear> }
//!
//! impl Segmented<2> for Deep {
//!     type Batch = (Tensor<2>, Tensor<2>);
//!     type Context = ();
//!     fn num_blocks(&self) -> usize { self.blocks.len() }
//!     fn stem(&self, (x, _): &Self::Batch) -> (Tensor<2>, ()) { (x.clone(), ()) }
//!     fn block(&self, i: usize, x: Tensor<2>, _: &()) -> Tensor<2> { x.clone() + self.blocks[i].forward(x).tanh() }
//!     fn head(&self, x: Tensor<2>, (_, y): &Self::Batch, _: &()) -> Output { Output::new(mse(x, y.clone()), 4) }
//! }
//!
//! let device = ember_runtime::device::cpu().autodiff();
//! let model = Deep { blocks: (0..9).map(|_| LinearConfig::new(8, 8).init(&device)).collect() };
//! let batch = (Tensor::<2>::ones([4, 8], &device), Tensor::<2>::zeros([4, 8], &device));
//! let (_, plain) = forward_backward(&model, &batch, Strategy::None, 1.0);
//! let (_, recomputed) = forward_backward(&model, &batch, Strategy::Auto, 1.0);
//! let w = model.blocks[0].weight.id;
//! let (a, b) = (plain.get::<2>(w).unwrap(), recomputed.get::<2>(w).unwrap());
//! assert!(a.sub(b).abs().max().into_scalar::<f32>() < 1e-6);
//! ```

use alloc::format;
use alloc::vec::Vec;
use core::ops::Range;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};

use crate::Error;
use crate::precision::to_f32;
use crate::train::{Objective, Output};

/// A network split into stem, blocks and head. See the [module
/// documentation](self).
pub trait Segmented<const D: usize>: Module {
    /// What one step consumes (inputs and targets).
    type Batch;
    /// Values the blocks and the head need besides the activation (an
    /// attention mask, for instance). They are not differentiated.
    type Context;
    /// Number of blocks.
    fn num_blocks(&self) -> usize;
    /// The batch → the activation entering block 0, and the context.
    fn stem(&self, batch: &Self::Batch) -> (Tensor<D>, Self::Context);
    /// Block `index`: an activation → the next one, of the same shape.
    fn block(&self, index: usize, x: Tensor<D>, context: &Self::Context) -> Tensor<D>;
    /// The last activation → the loss (and accuracy counts).
    fn head(&self, x: Tensor<D>, batch: &Self::Batch, context: &Self::Context) -> Output;
}

/// Which activations are kept for backward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Keep everything (the ordinary graph).
    #[default]
    None,
    /// Recompute in segments of `k` blocks.
    EveryK(usize),
    /// Segments of `⌈√L⌉` blocks.
    Auto,
    /// Burn's balanced checkpointing on the model's device.
    Balanced,
}

impl Strategy {
    /// The segments of `num_blocks` blocks this strategy recomputes (empty
    /// for `None` and `Balanced`).
    pub fn segments(self, num_blocks: usize) -> Vec<Range<usize>> {
        let k = match self {
            Strategy::None | Strategy::Balanced => return Vec::new(),
            Strategy::EveryK(k) => k.max(1),
            Strategy::Auto => (libm::ceil(libm::sqrt(num_blocks as f64)) as usize).max(1),
        };
        (0..num_blocks)
            .step_by(k)
            .map(|s| s..(s + k).min(num_blocks))
            .collect()
    }

    /// The name used on command lines: `none`, `every:K`, `auto`, `balanced`.
    pub fn name(self) -> alloc::string::String {
        match self {
            Strategy::None => "none".into(),
            Strategy::EveryK(k) => format!("every:{k}"),
            Strategy::Auto => "auto".into(),
            Strategy::Balanced => "balanced".into(),
        }
    }
}

impl core::fmt::Display for Strategy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.name())
    }
}

impl core::str::FromStr for Strategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidArgument {
            message: format!(
                "unknown recompute strategy `{s}` (expected none, auto, balanced or every:K with K ≥ 1)"
            ),
        };
        match s {
            "none" | "off" => Ok(Strategy::None),
            "auto" => Ok(Strategy::Auto),
            "balanced" => Ok(Strategy::Balanced),
            _ => {
                let k: usize = s
                    .strip_prefix("every:")
                    .ok_or_else(bad)?
                    .parse()
                    .map_err(|_| bad())?;
                if k == 0 {
                    Err(bad())
                } else {
                    Ok(Strategy::EveryK(k))
                }
            }
        }
    }
}

/// Draws the base of a step's per-block seeds from the device RNG (so it
/// follows whatever seeding the caller does).
fn draw_base(device: &Device) -> u64 {
    let r = Tensor::<1>::random(
        [2],
        Distribution::Uniform(0.0, 1.0),
        &device.clone().without_autodiff(),
    );
    let v = r
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    let part = |x: f32| (x * 16_777_216.0) as u64;
    part(v[0]) | (part(v[1]) << 24)
}

fn block_seed(base: u64, index: usize) -> u64 {
    crate::rng::stream_seed(base, index as u64)
}

/// The plain forward pass (stem, every block, head) with the per-block RNG
/// seeding of [`forward_backward`]; for evaluation and for the reference.
pub fn forward<const D: usize, M: Segmented<D>>(model: &M, batch: &M::Batch) -> Output {
    let device = model_device(model);
    let base = draw_base(&device);
    let (mut x, ctx) = model.stem(batch);
    for i in 0..model.num_blocks() {
        device.seed(block_seed(base, i));
        x = model.block(i, x, &ctx);
    }
    device.seed(block_seed(base, usize::MAX - 1));
    model.head(x, batch, &ctx)
}

fn model_device<M: Module>(model: &M) -> Device {
    model
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(|| crate::device::cpu().autodiff())
}

/// One step's forward and backward under `strategy`: the output (its loss
/// detached) and the gradients of the model's parameters for the loss
/// multiplied by `loss_scale` (a loss scaler's scale, divided by the number
/// of accumulated micro-batches).
pub fn forward_backward<const D: usize, M: Segmented<D>>(
    model: &M,
    batch: &M::Batch,
    strategy: Strategy,
    loss_scale: f64,
) -> (Output, GradientsParams) {
    forward_backward_observed(model, batch, strategy, loss_scale, None)
}

/// Bytes of the gradients in `grads` (for [`forward_backward_observed`]).
fn grad_bytes<M: Module>(model: &M, grads: &GradientsParams) -> usize {
    struct Bytes<'a>(&'a GradientsParams, usize);
    impl burn::module::ModuleVisitor for Bytes<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(param.id) {
                self.1 += g.shape().num_elements() * g.dtype().size();
            }
        }
    }
    let mut b = Bytes(grads, 0);
    model.visit(&mut b);
    b.1
}

/// [`forward_backward`], calling `observe(gradient_bytes)` right before each
/// backward pass starts — the moments when the activations kept for backward
/// are at their largest — with the bytes of the parameter gradients held at
/// that moment. A memory counter read there, minus those bytes, is the
/// activation memory of the step (see `ember-bench memory`).
pub fn forward_backward_observed<const D: usize, M: Segmented<D>>(
    model: &M,
    batch: &M::Batch,
    strategy: Strategy,
    loss_scale: f64,
    mut observe: Option<&mut dyn FnMut(usize)>,
) -> (Output, GradientsParams) {
    let segments = strategy.segments(model.num_blocks());
    if segments.is_empty() {
        let out = forward(model, batch);
        let loss = out.scaled_loss(loss_scale);
        if let Some(f) = observe.as_mut() {
            f(0);
        }
        let grads = GradientsParams::from_grads(loss.backward(), model);
        return (out.detached(), grads);
    }
    let mut held = 0usize;
    let device = model_device(model);
    let base = draw_base(&device);

    // Forward: the stem with a graph (it may have trainable parameters), the
    // blocks without one, keeping each segment's input.
    let (x0, ctx) = model.stem(batch);
    let frozen = model.clone().no_grad();
    let mut boundaries: Vec<Tensor<D>> = Vec::with_capacity(segments.len() + 1);
    let mut x = x0.clone().detach();
    for seg in &segments {
        boundaries.push(x.clone());
        for i in seg.clone() {
            device.seed(block_seed(base, i));
            x = frozen.block(i, x, &ctx);
        }
    }
    drop(frozen);

    // Head: from the last activation, with a graph.
    let mut accumulator = GradientsAccumulator::<M>::new();
    let last = x.detach().require_grad();
    device.seed(block_seed(base, usize::MAX - 1));
    let out = model.head(last.clone(), batch, &ctx);
    if let Some(f) = observe.as_mut() {
        f(held);
    }
    let mut grads = out.scaled_loss(loss_scale).backward();
    let mut upstream = last.grad(&grads);
    let params = GradientsParams::from_grads(grads, model);
    if observe.is_some() {
        held += grad_bytes(model, &params);
    }
    accumulator.accumulate(model, params);
    let out = out.detached();

    // Backward through the segments in reverse, recomputing each.
    for (seg, input) in segments.iter().zip(boundaries).rev() {
        let Some(g) = upstream.take() else { break };
        let x_in = input.detach().require_grad();
        let mut y = x_in.clone();
        for i in seg.clone() {
            device.seed(block_seed(base, i));
            y = model.block(i, y, &ctx);
        }
        let loss = surrogate(y, g);
        if let Some(f) = observe.as_mut() {
            f(held);
        }
        grads = loss.backward();
        upstream = x_in.grad(&grads);
        let params = GradientsParams::from_grads(grads, model);
        if observe.is_some() {
            held += grad_bytes(model, &params);
        }
        accumulator.accumulate(model, params);
    }
    // Into the stem, when its output is part of a graph.
    if let Some(g) = upstream
        && x0.is_tracked()
    {
        let grads = surrogate(x0, g).backward();
        accumulator.accumulate(model, GradientsParams::from_grads(grads, model));
    }
    (out, accumulator.grads())
}

/// `sum(y · g)`: its gradient with respect to `y` is `g`, so backward from it
/// continues a backward pass that arrived at `y` with gradient `g`.
fn surrogate<const D: usize>(y: Tensor<D>, g: Tensor<D>) -> Tensor<1> {
    (to_f32(y) * to_f32(g).detach()).sum()
}

/// A [`Segmented`] model trained with a recomputation [`Strategy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recomputed<const D: usize>(pub Strategy);

impl<const D: usize, M: Segmented<D>> Objective<M, M::Batch> for Recomputed<D> {
    fn forward(&self, model: &M, batch: &M::Batch) -> Output {
        forward(model, batch)
    }
    fn forward_backward(
        &self,
        model: &M,
        batch: &M::Batch,
        loss_scale: f64,
    ) -> (Output, GradientsParams) {
        forward_backward(model, batch, self.0, loss_scale)
    }
}
