//! A BERT encoder with Hugging Face's parameter names (`BertModel`), and the
//! sentence-transformers head (mean pooling over the attention mask, then L2
//! normalisation).
//!
//! Field names follow `transformers`' `BertModel` so that a Hugging Face
//! `model.safetensors` loads by name. One name cannot be a Rust field:
//! `attention.self` is `attention.self_attn` here; [`HF_REMAP`] maps it.
#![allow(non_snake_case)]

use alloc::vec::Vec;

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};
use ember_runtime::ops::{gelu, layer_norm, layout};
use ember_runtime::peft::{Lora, LoraConfig, forward_with};
use ember_runtime::precision::{self, add, linear, to_f32};

/// `(regex, replacement)` from Hugging Face keys to Ember's module paths.
pub const HF_REMAP: (&str, &str) = (r"\.attention\.self\.", ".attention.self_attn.");
/// The reverse of [`HF_REMAP`], for export.
pub const HF_REMAP_EXPORT: (&str, &str) = (r"\.attention\.self_attn\.", ".attention.self.");

/// BERT hyper-parameters (the fields of Hugging Face's `config.json`).
#[derive(Config, Debug)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Longest sequence the position embeddings cover.
    #[config(default = 512)]
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    #[config(default = 2)]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[config(default = 1e-12)]
    pub layer_norm_eps: f64,
    /// Whether the model has the `[CLS]` pooler.
    #[config(default = true)]
    pub pooler: bool,
}

/// Token, position and token-type embeddings, summed and normalised.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// Token embeddings `[vocab, hidden]`.
    pub word_embeddings: Embedding,
    /// Position embeddings `[max_positions, hidden]`.
    pub position_embeddings: Embedding,
    /// Token-type embeddings `[types, hidden]`.
    pub token_type_embeddings: Embedding,
    /// Normalisation of the sum.
    pub LayerNorm: LayerNorm,
    /// `LayerNorm`'s ε (`layer_norm_eps` in `config.json`).
    pub layer_norm_eps: f64,
}

/// Multi-head self-attention projections (`attention.self` in PyTorch).
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// LoRA adapter of `query` (peft: `query.lora_A/B`).
    pub query_lora: Option<Lora>,
    /// LoRA adapter of `key`.
    pub key_lora: Option<Lora>,
    /// LoRA adapter of `value`.
    pub value_lora: Option<Lora>,
    /// Number of heads.
    pub num_heads: usize,
}

/// Projection after attention, residual and normalisation.
#[derive(Module, Debug)]
pub struct BertSelfOutput {
    /// Output projection.
    pub dense: Linear,
    /// Post-residual normalisation.
    pub LayerNorm: LayerNorm,
    /// `LayerNorm`'s ε (`layer_norm_eps` in `config.json`).
    pub layer_norm_eps: f64,
}

/// Self-attention block.
#[derive(Module, Debug)]
pub struct BertAttention {
    /// The attention projections (`self` in PyTorch).
    pub self_attn: BertSelfAttention,
    /// Output projection and normalisation.
    pub output: BertSelfOutput,
}

/// First feed-forward projection (GELU).
#[derive(Module, Debug)]
pub struct BertIntermediate {
    /// `hidden → intermediate`.
    pub dense: Linear,
}

/// Second feed-forward projection, residual and normalisation.
#[derive(Module, Debug)]
pub struct BertOutput {
    /// `intermediate → hidden`.
    pub dense: Linear,
    /// Post-residual normalisation.
    pub LayerNorm: LayerNorm,
    /// `LayerNorm`'s ε (`layer_norm_eps` in `config.json`).
    pub layer_norm_eps: f64,
}

/// One encoder layer.
#[derive(Module, Debug)]
pub struct BertLayer {
    /// Self-attention.
    pub attention: BertAttention,
    /// Feed-forward, first half.
    pub intermediate: BertIntermediate,
    /// Feed-forward, second half.
    pub output: BertOutput,
}

/// The encoder stack.
#[derive(Module, Debug)]
pub struct BertEncoder {
    /// Layers, input first.
    pub layer: Vec<BertLayer>,
}

/// The `[CLS]` pooler of `BertModel` (`tanh(dense(h₀))`). Sentence encoders
/// do not use it, but it is part of the checkpoint: keeping it makes loads
/// complete and exports loadable by PyTorch with `strict=True`.
#[derive(Module, Debug)]
pub struct BertPooler {
    /// `hidden → hidden`.
    pub dense: Linear,
}

/// `BertModel`.
#[derive(Module, Debug)]
pub struct BertModel {
    /// Embeddings.
    pub embeddings: BertEmbeddings,
    /// Encoder layers.
    pub encoder: BertEncoder,
    /// The pooler (absent in checkpoints saved without one).
    pub pooler: Option<BertPooler>,
}

impl BertConfig {
    /// Builds a randomly initialised model on `device` (load weights next).
    pub fn init(&self, device: &Device) -> BertModel {
        let h = self.hidden_size;
        let ln = || {
            LayerNormConfig::new(h)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let layer = (0..self.num_hidden_layers)
            .map(|_| BertLayer {
                attention: BertAttention {
                    self_attn: BertSelfAttention {
                        query: linear(h, h),
                        key: linear(h, h),
                        value: linear(h, h),
                        query_lora: None,
                        key_lora: None,
                        value_lora: None,
                        num_heads: self.num_attention_heads,
                    },
                    output: BertSelfOutput {
                        dense: linear(h, h),
                        LayerNorm: ln(),
                        layer_norm_eps: self.layer_norm_eps,
                    },
                },
                intermediate: BertIntermediate {
                    dense: linear(h, self.intermediate_size),
                },
                output: BertOutput {
                    dense: linear(self.intermediate_size, h),
                    LayerNorm: ln(),
                    layer_norm_eps: self.layer_norm_eps,
                },
            })
            .collect();
        BertModel {
            embeddings: BertEmbeddings {
                word_embeddings: EmbeddingConfig::new(self.vocab_size, h).init(device),
                position_embeddings: EmbeddingConfig::new(self.max_position_embeddings, h)
                    .init(device),
                token_type_embeddings: EmbeddingConfig::new(self.type_vocab_size, h).init(device),
                LayerNorm: ln(),
                layer_norm_eps: self.layer_norm_eps,
            },
            encoder: BertEncoder { layer },
            pooler: self.pooler.then(|| BertPooler {
                dense: linear(h, h),
            }),
        }
    }
}

impl BertModel {
    /// Freezes every weight and attaches fresh LoRA adapters to the
    /// attention projections named in `config.target_modules` (`query`,
    /// `key`, `value`); only the adapters train.
    pub fn with_lora(self, config: &LoraConfig, device: &Device) -> Self {
        let mut model = self.freeze();
        for layer in &mut model.encoder.layer {
            let attn = &mut layer.attention.self_attn;
            let [d_in, d_out] = attn.query.weight.dims();
            let make = |name: &str| {
                config
                    .targets(name)
                    .then(|| config.init(d_in, d_out, device))
            };
            attn.query_lora = make("query");
            attn.key_lora = make("key");
            attn.value_lora = make("value");
        }
        model
    }

    /// Stores every `Linear` weight in the layout that few-row products
    /// read fastest on its device ([`layout::for_inference`]: column-major
    /// on the CPU backend, where a product with few rows — one short
    /// sentence — then reads each weight sequentially instead of with a
    /// stride of a row per element). Values, names, ids and gradients are
    /// unchanged, and products with many rows run at the same speed.
    /// [`SentenceEncoder::from_dir`](crate::sentence::SentenceEncoder::from_dir)
    /// does this.
    pub fn with_inference_layout(mut self) -> Self {
        let relayout = |l: &mut Linear| l.weight = layout::for_inference(l.weight.clone());
        for layer in &mut self.encoder.layer {
            let attn = &mut layer.attention.self_attn;
            for l in [&mut attn.query, &mut attn.key, &mut attn.value] {
                relayout(l);
            }
            relayout(&mut layer.attention.output.dense);
            relayout(&mut layer.intermediate.dense);
            relayout(&mut layer.output.dense);
        }
        if let Some(pooler) = &mut self.pooler {
            relayout(&mut pooler.dense);
        }
        self
    }
}

/// `(regex, replacement)` pairs from peft adapter keys
/// (`base_model.model.encoder.layer.0.attention.self.query.lora_A.weight`) to
/// Ember paths (`encoder.layer.0.attention.self_attn.query_lora.lora_A.weight`).
pub const PEFT_IMPORT_REMAP: [(&str, &str); 3] = [
    (r"^base_model\.model\.", ""),
    (r"\.attention\.self\.", ".attention.self_attn."),
    (r"\.(query|key|value)\.lora_([AB])\.", ".${1}_lora.lora_$2."),
];

/// The reverse of [`PEFT_IMPORT_REMAP`], for `adapter_model.safetensors`.
pub const PEFT_EXPORT_REMAP: [(&str, &str); 3] = [
    (r"\.(query|key|value)_lora\.lora_([AB])\.", ".${1}.lora_$2."),
    (r"\.attention\.self_attn\.", ".attention.self."),
    (r"^", "base_model.model."),
];

impl BertSelfAttention {
    /// `x [B, L, H]`, `mask_bias [B, 1, 1, L]` (0 to attend, very negative to
    /// ignore) → `[B, L, H]`.
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let [b, l, h] = x.dims();
        let heads = self.num_heads;
        let dh = h / heads;
        let split = |t: Tensor<3>| t.reshape([b, l, heads, dh]).swap_dims(1, 2);
        // Under autocast, one low-precision copy of the input for the three
        // projections and their adapters (each would cast it, and keep its
        // own copy for backward).
        let x = precision::to_compute(x);
        let q = split(forward_with(
            &self.query,
            self.query_lora.as_ref(),
            x.clone(),
        ));
        let k = split(forward_with(&self.key, self.key_lora.as_ref(), x.clone()));
        let v = split(forward_with(&self.value, self.value_lora.as_ref(), x));
        // Scores and products in the compute type; scaling, mask and
        // softmax as one fp32 op (autocast's lists), whose output the
        // product with V reuses for backward.
        precision::attention(q, k, v, Some(mask_bias.reshape([b, l])))
            .swap_dims(1, 2)
            .reshape([b, l, h])
    }
}

impl BertLayer {
    /// One post-LayerNorm transformer layer.
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let attn = self.attention.self_attn.forward(x.clone(), mask_bias);
        let out = &self.attention.output;
        let attn = layer_norm(
            &out.LayerNorm,
            out.layer_norm_eps,
            to_f32(add(linear(&out.dense, attn), x)),
        );
        let inter = gelu(linear(&self.intermediate.dense, attn.clone()));
        let out = &self.output;
        layer_norm(
            &out.LayerNorm,
            out.layer_norm_eps,
            to_f32(add(linear(&out.dense, inter), attn)),
        )
    }
}

impl BertModel {
    /// Hidden states `[B, L, H]` of token ids `[B, L]` with attention mask
    /// `[B, L]` (1 for tokens, 0 for padding); token types are all 0.
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Tensor<2>) -> Tensor<3> {
        let mut x = self.embed(input_ids);
        let mask_bias = Self::mask_bias(attention_mask);
        for layer in &self.encoder.layer {
            x = layer.forward(x, mask_bias.clone());
        }
        x
    }

    /// The embeddings (word + position + token type, then layer norm): the
    /// input of the first encoder layer.
    pub fn embed(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, l] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<1, Int>::arange(0..l as i64, &device)
            .reshape([1, l])
            .expand([b, l]);
        let types = Tensor::<2, Int>::zeros([b, l], &device);
        let e = &self.embeddings;
        let x = e.word_embeddings.forward(input_ids)
            + e.position_embeddings.forward(positions)
            + e.token_type_embeddings.forward(types);
        layer_norm(&e.LayerNorm, e.layer_norm_eps, x)
    }

    /// The additive attention bias of a `[batch, len]` mask (1 = token,
    /// 0 = padding): `(1 − mask)·f32::MIN`, which softmax turns into 0.
    pub fn mask_bias(attention_mask: Tensor<2>) -> Tensor<4> {
        let [b, l] = attention_mask.dims();
        attention_mask
            .neg()
            .add_scalar(1.0)
            .mul_scalar(f32::MIN)
            .reshape([b, 1, 1, l])
    }
}

impl BertPooler {
    /// `tanh(dense(hidden[:, 0]))`, `[B, L, H]` → `[B, H]`.
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, _, h] = hidden.dims();
        to_f32(linear(
            &self.dense,
            hidden.slice([0..b, 0..1]).reshape([b, h]),
        ))
        .tanh()
    }
}

/// sentence-transformers' mean pooling: the average of the hidden states of
/// the unmasked tokens, `[B, L, H]`, `[B, L]` → `[B, H]`.
pub fn mean_pool(hidden: Tensor<3>, attention_mask: Tensor<2>) -> Tensor<2> {
    crate::pooling::PoolingMode::Mean.forward(hidden, attention_mask)
}

/// Row-wise L2 normalisation (`torch.nn.functional.normalize`, eps 1e-12).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let x = to_f32(x);
    let norm = x.clone().mul(x.clone()).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}
