//! What training optimises: the data ([`Dataset`]), what a model computes
//! on a batch ([`Output`]) and how its gradients come about ([`Objective`]),
//! and the evaluation loop over a data set.

use alloc::vec::Vec;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor};

use super::events::EvalRecord;
use crate::Error;
use crate::precision::to_f32;

/// Random-access training or evaluation data, assembled into batches on
/// demand.
pub trait Dataset {
    /// What the forward function receives.
    type Batch;
    /// Number of examples.
    fn len(&self) -> usize;
    /// Whether there are no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The batch of the examples at `indices`, with its tensors on `device`
    /// (an autodiff device while training, a plain one while evaluating).
    fn batch(&self, indices: &[usize], device: &Device) -> Result<Self::Batch, Error>;
}

/// What the forward function returns for one batch.
#[derive(Debug, Clone)]
pub struct Output {
    /// The mean loss over the batch (a one-element tensor).
    pub loss: Tensor<1>,
    /// Number of examples in the batch (weights the mean when averaging).
    pub count: usize,
    /// Number of correct predictions, for tasks that have an accuracy.
    pub correct: Option<usize>,
}

impl Output {
    /// A loss over `count` examples.
    pub fn new(loss: Tensor<1>, count: usize) -> Self {
        Self {
            loss,
            count,
            correct: None,
        }
    }

    /// Adds the number of correct predictions.
    pub fn with_correct(mut self, correct: usize) -> Self {
        self.correct = Some(correct);
        self
    }

    /// Cross-entropy of `logits` (`[batch, classes]`) against class indices,
    /// with the number of arg-max predictions equal to the target.
    pub fn classification(logits: Tensor<2>, targets: Tensor<1, Int>) -> Self {
        let count = targets.dims()[0];
        let correct = logits
            .clone()
            .detach()
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(targets.clone())
            .int()
            .sum()
            .into_scalar::<i64>();
        Self {
            loss: crate::loss::cross_entropy(logits, targets),
            count,
            correct: Some(correct.max(0) as usize),
        }
    }

    /// The loss times `scale` (in fp32 when scaled), to run backward from.
    pub(crate) fn scaled_loss(&self, scale: f64) -> Tensor<1> {
        if scale == 1.0 {
            self.loss.clone()
        } else {
            to_f32(self.loss.clone()).mul_scalar(scale)
        }
    }

    /// The output with its loss detached from the graph.
    pub(crate) fn detached(mut self) -> Self {
        self.loss = self.loss.detach();
        self
    }
}

/// How a model computes a batch's loss, and its gradients.
///
/// Any `Fn(&M, &Batch) -> Output` is an objective whose gradients come from
/// one backward pass of the loss;
/// [`Recomputed`](crate::recompute::Recomputed) is one whose gradients come
/// from segment recomputation.
pub trait Objective<M, B> {
    /// The output of `model` on `batch` (also used for evaluation).
    fn forward(&self, model: &M, batch: &B) -> Output;
    /// The output (its loss detached) and the gradients of the loss times
    /// `loss_scale`.
    fn forward_backward(&self, model: &M, batch: &B, loss_scale: f64) -> (Output, GradientsParams);
}

impl<M, B, O: Objective<M, B> + ?Sized> Objective<M, B> for &O {
    fn forward(&self, model: &M, batch: &B) -> Output {
        (**self).forward(model, batch)
    }
    fn forward_backward(&self, model: &M, batch: &B, loss_scale: f64) -> (Output, GradientsParams) {
        (**self).forward_backward(model, batch, loss_scale)
    }
}

/// A forward function as an [`Objective`].
pub struct ForwardFn<F>(pub F);

impl<M: Module, B, F: Fn(&M, &B) -> Output> Objective<M, B> for ForwardFn<F> {
    fn forward(&self, model: &M, batch: &B) -> Output {
        (self.0)(model, batch)
    }
    fn forward_backward(&self, model: &M, batch: &B, loss_scale: f64) -> (Output, GradientsParams) {
        let out = (self.0)(model, batch);
        let grads = GradientsParams::from_grads(out.scaled_loss(loss_scale).backward(), model);
        (out.detached(), grads)
    }
}

/// Mean loss (and accuracy) of `model` over `data`, in batches of
/// `batch_size`, without gradients. `model` should be in evaluation mode
/// (`model.valid()`) and `device` a plain (non-autodiff) device.
pub fn evaluate<M, D: Dataset>(
    model: &M,
    data: &D,
    batch_size: usize,
    device: &Device,
    forward: impl Fn(&M, &D::Batch) -> Output,
) -> Result<EvalRecord, Error> {
    let mut loss = 0.0;
    let mut count = 0usize;
    let mut correct = None::<usize>;
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let out = forward(model, &data.batch(chunk, device)?);
        loss += f64::from(out.loss.into_scalar::<f32>()) * out.count as f64;
        count += out.count;
        if let Some(c) = out.correct {
            correct = Some(correct.unwrap_or(0) + c);
        }
    }
    let n = count.max(1) as f64;
    Ok(EvalRecord {
        step: 0,
        epoch: 0,
        loss: loss / n,
        accuracy: correct.map(|c| c as f64 / n),
        examples: count,
    })
}
