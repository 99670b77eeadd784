//! The ops autocast governs: products in the compute type with fp32
//! master weights, normalisation and softmax in fp32.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::conv::{Conv1d, Conv2d};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{FloatDType, Tensor};

use super::{current, to_f32};
use crate::ops;

/// `a + b`; when their types differ, in fp32 (PyTorch's type promotion for
/// the mixes autocast produces).
pub fn add<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    if a.dtype() == b.dtype() {
        a + b
    } else {
        to_f32(a) + to_f32(b)
    }
}

/// `Linear` in the compute type: input, weight and bias cast inside the graph
/// ([`ops::linear()`]). For backward it keeps the input in the compute type and
/// the fp32 weight itself, not a low-precision copy of the weight: the
/// product's backward casts the weight again (PyTorch's autocast keeps the
/// copy, two bytes per weight). Outside autocast, `x·W + b` in fp32 with the
/// bias added by one op.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let p = current();
    let (w, b) = (layer.weight.val(), layer.bias.as_ref().map(|b| b.val()));
    if p.is_reduced() {
        ops::linear(x, w, b, Some(p.dtype()))
    } else {
        ops::linear(to_f32(x), w, b, None)
    }
}

/// Matrix product in the compute type.
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    let p = current();
    if !p.is_reduced() {
        return to_f32(a).matmul(to_f32(b));
    }
    a.cast(p.dtype()).matmul(b.cast(p.dtype()))
}

/// [`matmul`] of two tensors with the same leading dimensions (no
/// broadcasting), for an `a` that backward keeps anyway in its own type —
/// the fp32 output of [`softmax`] before the product with the values in
/// attention: backward casts `a` again instead of keeping a low-precision
/// copy of it beside the original ([`ops::matmul_keeping_lhs()`]). Same values
/// as [`matmul`].
pub fn matmul_reusing_lhs<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    let p = current();
    if !p.is_reduced() {
        return to_f32(a).matmul(to_f32(b));
    }
    ops::matmul_keeping_lhs(a, b, p.dtype())
}

/// Attention ([`ops::attention()`]) in the compute type: the products in it,
/// the scaling, key mask and softmax in fp32.
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    key_bias: Option<Tensor<2>>,
) -> Tensor<4> {
    let p = current();
    if !p.is_reduced() {
        return ops::attention(to_f32(q), to_f32(k), to_f32(v), key_bias.map(to_f32), None);
    }
    ops::attention(q, k, v, key_bias, Some(p.dtype()))
}

/// Casts every float parameter of a module copy to `dtype` inside the graph
/// (gradients still reach the fp32 originals).
struct CastParams(FloatDType);

impl ModuleMapper for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dt = self.0;
        param.map(|t| t.cast(dt))
    }
}

/// A copy of `module` whose float parameters are cast to the compute type
/// inside the autodiff graph (the originals stay fp32 and receive the
/// gradients). For layers without a helper here.
pub fn cast_module<M: Module>(module: &M) -> M {
    let p = current();
    if !p.is_reduced() {
        return module.clone();
    }
    module.clone().map(&mut CastParams(p.dtype()))
}

/// 1-D convolution in the compute type.
pub fn conv1d(layer: &Conv1d, x: Tensor<3>) -> Tensor<3> {
    let p = current();
    if !p.is_reduced() {
        return layer.forward(to_f32(x));
    }
    cast_module(layer).forward(x.cast(p.dtype()))
}

/// 2-D convolution in the compute type.
pub fn conv2d(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let p = current();
    if !p.is_reduced() {
        return layer.forward(to_f32(x));
    }
    cast_module(layer).forward(x.cast(p.dtype()))
}

/// Layer norm in fp32 (its input is cast up; the output is fp32).
pub fn layer_norm<const D: usize>(layer: &LayerNorm, x: Tensor<D>) -> Tensor<D> {
    layer.forward(to_f32(x))
}

/// Softmax in fp32 ([`ops::softmax()`]: backward keeps only the output).
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    ops::softmax(to_f32(x), dim)
}

/// [`ops::attention_softmax()`] in fp32 (autocast's softmax
/// list): attention's probabilities from its scores, a factor and a
/// `[batch, keys]` additive key mask.
pub fn attention_softmax(scores: Tensor<4>, scale: f32, key_bias: Option<Tensor<2>>) -> Tensor<4> {
    ops::attention_softmax(to_f32(scores), scale, key_bias.map(to_f32))
}

/// Log-softmax in fp32.
pub fn log_softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    burn::tensor::activation::log_softmax(to_f32(x), dim)
}
