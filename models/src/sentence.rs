//! Sentence embeddings from a Hugging Face / sentence-transformers model
//! directory (std only): `config.json`, `model.safetensors`,
//! `tokenizer.json`, and optionally `sentence_bert_config.json`
//! (`max_seq_length`).
//!
//! Tokenisation is done by the `tokenizers` crate from `tokenizer.json`, the
//! same implementation the Python library uses. As sentence-transformers
//! does, texts are truncated to `max_seq_length` word-pieces (256 for
//! all-MiniLM-L6-v2, overriding the 128 stored in `tokenizer.json`), each
//! batch is padded to its longest text, and the embedding is the mean of the
//! token states under the attention mask, L2-normalised.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use ember_runtime::io::{LoadOptions, load_safetensors};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::bert::{BertConfig, BertModel, HF_REMAP, l2_normalize, mean_pool};
use crate::Error;

/// A BERT-family sentence encoder loaded from a local directory.
#[derive(Debug)]
pub struct SentenceEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    config: BertConfig,
    max_seq_length: usize,
    device: Device,
    name: String,
}

fn read(path: &Path) -> Result<String, Error> {
    if !path.is_file() {
        return Err(Error::MissingFile { path: path.display().to_string() });
    }
    std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.display().to_string(), message: e.to_string() })
}

fn json(path: &Path) -> Result<serde_json::Value, Error> {
    serde_json::from_str(&read(path)?).map_err(|e| Error::Config { path: path.display().to_string(), message: e.to_string() })
}

fn field(config: &serde_json::Value, path: &Path, key: &str) -> Result<usize, Error> {
    config.get(key).and_then(serde_json::Value::as_u64).map(|v| v as usize).ok_or_else(|| Error::Config {
        path: path.display().to_string(),
        message: format!("`{key}` is missing or not a non-negative integer"),
    })
}

/// Whether the checkpoint has pooler weights; reads only the header.
fn has_pooler(weights: &Path) -> Result<bool, Error> {
    use std::io::Read;
    let io = |e: std::io::Error| Error::Io { path: weights.display().to_string(), message: e.to_string() };
    let mut file = std::fs::File::open(weights).map_err(io)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(io)?;
    let len = u64::from_le_bytes(len);
    let size = file.metadata().map_err(io)?.len();
    if len > size.saturating_sub(8) || len > 100_000_000 {
        return Err(Error::Weights(ember_runtime::Error::Safetensors {
            path: weights.display().to_string(),
            message: format!("header length {len} exceeds the file size {size}"),
        }));
    }
    let mut header = alloc::vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let header: serde_json::Value = serde_json::from_slice(&header).map_err(|e| {
        Error::Weights(ember_runtime::Error::Safetensors { path: weights.display().to_string(), message: format!("header: {e}") })
    })?;
    Ok(header.as_object().is_some_and(|o| o.keys().any(|k| k.starts_with("pooler."))))
}

impl SentenceEncoder {
    /// Loads the model in `dir` onto `device` (weights cast to f32).
    ///
    /// # Errors
    /// [`Error::MissingFile`] naming the first absent file, [`Error::Config`] for
    /// an unreadable `config.json`, [`Error::Tokenizer`], or a load error from
    /// [`ember_runtime::io`] listing every mismatched tensor.
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self, Error> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::MissingFile { path: dir.display().to_string() });
        }
        let config_path = dir.join("config.json");
        let weights: PathBuf = dir.join("model.safetensors");
        let tokenizer_path = dir.join("tokenizer.json");
        for p in [&config_path, &weights, &tokenizer_path] {
            if !p.is_file() {
                return Err(Error::MissingFile { path: p.display().to_string() });
            }
        }
        let raw = json(&config_path)?;
        let mut config = BertConfig::new(
            field(&raw, &config_path, "vocab_size")?,
            field(&raw, &config_path, "hidden_size")?,
            field(&raw, &config_path, "num_hidden_layers")?,
            field(&raw, &config_path, "num_attention_heads")?,
            field(&raw, &config_path, "intermediate_size")?,
        );
        if let Ok(v) = field(&raw, &config_path, "max_position_embeddings") {
            config.max_position_embeddings = v;
        }
        if let Ok(v) = field(&raw, &config_path, "type_vocab_size") {
            config.type_vocab_size = v;
        }
        if let Some(eps) = raw.get("layer_norm_eps").and_then(serde_json::Value::as_f64) {
            config.layer_norm_eps = eps;
        }
        if config.num_attention_heads == 0 || config.hidden_size % config.num_attention_heads != 0 {
            return Err(Error::Config {
                path: config_path.display().to_string(),
                message: format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    config.hidden_size, config.num_attention_heads
                ),
            });
        }
        let sbert = dir.join("sentence_bert_config.json");
        let max_seq_length = if sbert.is_file() { field(&json(&sbert)?, &sbert, "max_seq_length").ok() } else { None }
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);

        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| Error::Tokenizer { path: tokenizer_path.display().to_string(), message: e.to_string() })?;
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_seq_length, ..Default::default() }))
            .map_err(|e| Error::Tokenizer { path: tokenizer_path.display().to_string(), message: e.to_string() })?;
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));

        // The pooler is optional (sentence-transformers checkpoints may lack
        // it): look at the file's keys before building the model.
        config.pooler = has_pooler(&weights)?;
        let options = LoadOptions::default()
            .remap(HF_REMAP.0, HF_REMAP.1)
            .ignore_unexpected(r"^embeddings\.position_ids$");
        let (model, _) = load_safetensors(config.init(device), &weights, &options)?;
        // Few-row products (a short sentence) read column-major weights
        // sequentially on the CPU backend (`ember_runtime::layout`).
        let model = if device.clone().inner() == Device::flex() { model.with_column_major_weights() } else { model };
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Self { model, tokenizer, config, max_seq_length, device: device.clone(), name })
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.config.hidden_size
    }

    /// Longest input in word-pieces (longer texts are truncated).
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Name of the model directory.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The encoder.
    pub fn model(&self) -> &BertModel {
        &self.model
    }

    /// Replaces the encoder by `f(encoder)` (e.g. to attach LoRA adapters).
    pub fn try_map_model(mut self, f: impl FnOnce(BertModel) -> Result<BertModel, Error>) -> Result<Self, Error> {
        self.model = f(self.model)?;
        Ok(self)
    }

    /// The device the encoder runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Token ids and attention mask of a batch, padded to its longest text.
    pub fn tokenize(&self, texts: &[&str]) -> Result<(Tensor<2, Int>, Tensor<2>), Error> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Tokenizer { path: "tokenizer.json".into(), message: e.to_string() })?;
        let b = encodings.len();
        let l = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(b * l);
        let mut mask = Vec::with_capacity(b * l);
        for e in &encodings {
            ids.extend(e.get_ids().iter().map(|&i| i as i64));
            mask.extend(e.get_attention_mask().iter().map(|&m| m as f32));
        }
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, l]), &self.device);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, l]), &self.device);
        Ok((ids, mask))
    }

    /// L2-normalised embeddings of `texts`, in input order, computed in
    /// batches of `batch_size`.
    pub fn encode(&self, texts: &[&str], batch_size: usize) -> Result<Vec<Vec<f32>>, Error> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(batch_size.max(1)) {
            let (ids, mask) = self.tokenize(chunk)?;
            let hidden = self.model.forward(ids, mask.clone());
            let data = l2_normalize(mean_pool(hidden, mask)).into_data();
            let values: Vec<f32> = data
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| Error::Tokenizer { path: String::new(), message: format!("{e:?}") })?;
            out.extend(values.chunks(self.dim()).map(<[f32]>::to_vec));
        }
        Ok(out)
    }
}
