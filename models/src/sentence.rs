//! Sentence embeddings from a Hugging Face / sentence-transformers model
//! directory (std only): `config.json`, `model.safetensors`,
//! `tokenizer.json`, and the sentence-transformers files when present —
//! `modules.json`, the pooling module's `config.json` and
//! `sentence_bert_config.json` (`max_seq_length`, `do_lower_case`).
//!
//! Tokenisation is done by the `tokenizers` crate from `tokenizer.json`, the
//! same implementation the Python library uses. As sentence-transformers
//! does, texts are lower-cased first when `do_lower_case` says so, truncated
//! to `max_seq_length` word-pieces (256 for all-MiniLM-L6-v2, overriding the
//! 128 stored in `tokenizer.json`), and each batch is padded to its longest
//! text. The embedding is what the directory's modules make of the token
//! states: `modules.json` lists a `Transformer`, then a `Pooling` module
//! (every pooling mode sentence-transformers has: [`PoolingMode`]), then
//! optionally `Normalize` (L2). Any other module type is an error naming it.
//! A directory without `modules.json` gets what sentence-transformers gives
//! a plain Hugging Face model: mean pooling, not normalised.
//!
//! `config.json` is checked for what the BERT encoder cannot run: a
//! `model_type` other than `bert`, `hidden_act` other than `gelu`, a
//! `position_embedding_type` other than `absolute` — each an error naming
//! the field.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use ember_runtime::io::{LoadOptions, load_safetensors};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::Error;
use crate::bert::{BertConfig, BertModel, HF_REMAP, l2_normalize};
use crate::pooling::{Pooling, PoolingMode};

/// A BERT-family sentence encoder loaded from a local directory.
#[derive(Debug)]
pub struct SentenceEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    config: BertConfig,
    max_seq_length: usize,
    do_lower_case: bool,
    pooling: Pooling,
    normalize: bool,
    device: Device,
    name: String,
}

/// The module types Ember runs, in the order it runs them.
const TRANSFORMER: &str = "sentence_transformers.models.Transformer";
const POOLING: &str = "sentence_transformers.models.Pooling";
const NORMALIZE: &str = "sentence_transformers.models.Normalize";

fn config_error(path: &Path, message: String) -> Error {
    Error::Config {
        path: path.display().to_string(),
        message,
    }
}

/// The pooling and whether `Normalize` follows, from `dir/modules.json`;
/// mean pooling without normalisation when there is no such file.
fn read_modules(dir: &Path, hidden_size: usize) -> Result<(Pooling, bool), Error> {
    let path = dir.join("modules.json");
    if !path.is_file() {
        return Ok((Pooling::mean(), false));
    }
    let raw = json(&path)?;
    let mut modules: Vec<&serde_json::Value> = raw
        .as_array()
        .ok_or_else(|| config_error(&path, "expected a list of modules".into()))?
        .iter()
        .collect();
    modules.sort_by_key(|m| {
        m.get("idx")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(u64::MAX)
    });
    let (mut pooling, mut normalize) = (None, false);
    for (i, module) in modules.iter().enumerate() {
        let text = |key: &str| module.get(key).and_then(serde_json::Value::as_str);
        let kind = text("type")
            .ok_or_else(|| config_error(&path, format!("module {i} has no string `type`")))?;
        let name = text("name").unwrap_or("?");
        match (i, kind) {
            (0, TRANSFORMER) => {}
            (1, POOLING) => {
                let config = dir.join(text("path").unwrap_or("")).join("config.json");
                pooling = Some(read_pooling(&config, hidden_size)?);
            }
            (2, NORMALIZE) => normalize = true,
            (_, TRANSFORMER | POOLING | NORMALIZE) => {
                return Err(config_error(
                    &path,
                    format!(
                        "module `{name}` ({kind}) is at position {i}: Ember runs Transformer, Pooling and Normalize in that order"
                    ),
                ));
            }
            (_, other) => {
                return Err(config_error(
                    &path,
                    format!(
                        "module `{name}` has type `{other}`, which Ember does not run (it runs {TRANSFORMER}, {POOLING} and {NORMALIZE})"
                    ),
                ));
            }
        }
    }
    let pooling = pooling.ok_or_else(|| {
        config_error(
            &path,
            format!("no {POOLING} module after the {TRANSFORMER}: nothing makes a sentence vector"),
        )
    })?;
    Ok((pooling, normalize))
}

/// A sentence-transformers pooling configuration, read as the Python
/// `Pooling(**config)` would: mean pooling unless its key says otherwise,
/// `pooling_mode` (a name) overriding the flags; an unknown key is an error.
fn read_pooling(path: &Path, hidden_size: usize) -> Result<Pooling, Error> {
    let raw = json(path)?;
    let fields = raw
        .as_object()
        .ok_or_else(|| config_error(path, "expected a JSON object".into()))?;
    let mut on: Vec<PoolingMode> = if fields.contains_key(PoolingMode::Mean.config_key()) {
        Vec::new()
    } else {
        alloc::vec![PoolingMode::Mean]
    };
    let mut named = None;
    for (key, value) in fields {
        let flag = || {
            value
                .as_bool()
                .ok_or_else(|| config_error(path, format!("`{key}` must be true or false")))
        };
        if let Some(mode) = PoolingMode::ALL.into_iter().find(|m| m.config_key() == key) {
            if flag()? {
                on.push(mode);
            }
            continue;
        }
        match key.as_str() {
            "word_embedding_dimension" => {
                if value.as_u64() != Some(hidden_size as u64) {
                    return Err(config_error(
                        path,
                        format!(
                            "`word_embedding_dimension` is {value}, but the model's hidden_size is {hidden_size}"
                        ),
                    ));
                }
            }
            // Prompts are not added by Ember, so there is none to leave out.
            "include_prompt" => {
                flag()?;
            }
            "pooling_mode" => {
                let mode = match value.as_str().map(str::to_lowercase).as_deref() {
                    Some("cls") => PoolingMode::Cls,
                    Some("max") => PoolingMode::Max,
                    Some("mean") => PoolingMode::Mean,
                    Some("mean_sqrt_len_tokens") => PoolingMode::MeanSqrtLen,
                    Some("weightedmean") => PoolingMode::WeightedMean,
                    Some("lasttoken") => PoolingMode::LastToken,
                    _ => {
                        return Err(config_error(
                            path,
                            format!(
                                "`pooling_mode` {value} is not one of cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken"
                            ),
                        ));
                    }
                };
                named = Some(mode);
            }
            other => {
                return Err(config_error(
                    path,
                    format!("unknown pooling setting `{other}`"),
                ));
            }
        }
    }
    let modes = named.map_or(on, |m| alloc::vec![m]);
    Pooling::new(&modes).ok_or_else(|| config_error(path, "no pooling mode is switched on".into()))
}

/// Rejects what the BERT encoder cannot run, naming the field.
fn check_architecture(raw: &serde_json::Value, path: &Path) -> Result<(), Error> {
    for (key, supported) in [
        ("model_type", "bert"),
        ("hidden_act", "gelu"),
        ("position_embedding_type", "absolute"),
    ] {
        match raw.get(key) {
            None => {}
            Some(v) if v.as_str() == Some(supported) => {}
            Some(v) => {
                return Err(config_error(
                    path,
                    format!("`{key}` is {v}: Ember's BERT encoder runs only \"{supported}\""),
                ));
            }
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, Error> {
    if !path.is_file() {
        return Err(Error::MissingFile {
            path: path.display().to_string(),
        });
    }
    std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn json(path: &Path) -> Result<serde_json::Value, Error> {
    serde_json::from_str(&read(path)?).map_err(|e| config_error(path, e.to_string()))
}

fn field(config: &serde_json::Value, path: &Path, key: &str) -> Result<usize, Error> {
    config
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| {
            config_error(
                path,
                format!("`{key}` is missing or not a non-negative integer"),
            )
        })
}

/// Whether the checkpoint has pooler weights; reads only the header.
fn has_pooler(weights: &Path) -> Result<bool, Error> {
    use std::io::Read;
    let io = |e: std::io::Error| Error::Io {
        path: weights.display().to_string(),
        message: e.to_string(),
    };
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
        Error::Weights(ember_runtime::Error::Safetensors {
            path: weights.display().to_string(),
            message: format!("header: {e}"),
        })
    })?;
    Ok(header
        .as_object()
        .is_some_and(|o| o.keys().any(|k| k.starts_with("pooler."))))
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
            return Err(Error::MissingFile {
                path: dir.display().to_string(),
            });
        }
        let config_path = dir.join("config.json");
        let weights: PathBuf = dir.join("model.safetensors");
        let tokenizer_path = dir.join("tokenizer.json");
        for p in [&config_path, &weights, &tokenizer_path] {
            if !p.is_file() {
                return Err(Error::MissingFile {
                    path: p.display().to_string(),
                });
            }
        }
        let raw = json(&config_path)?;
        check_architecture(&raw, &config_path)?;
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
        if let Some(eps) = raw
            .get("layer_norm_eps")
            .and_then(serde_json::Value::as_f64)
        {
            config.layer_norm_eps = eps;
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(config_error(
                &config_path,
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    config.hidden_size, config.num_attention_heads
                ),
            ));
        }
        let sbert = dir.join("sentence_bert_config.json");
        let sbert_config = if sbert.is_file() {
            Some(json(&sbert)?)
        } else {
            None
        };
        let max_seq_length = sbert_config
            .as_ref()
            .and_then(|c| field(c, &sbert, "max_seq_length").ok())
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        let do_lower_case = match sbert_config.as_ref().and_then(|c| c.get("do_lower_case")) {
            None => false,
            Some(v) => v.as_bool().ok_or_else(|| {
                config_error(&sbert, "`do_lower_case` must be true or false".into())
            })?,
        };
        let (pooling, normalize) = read_modules(dir, config.hidden_size)?;

        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| Error::Tokenizer {
                path: tokenizer_path.display().to_string(),
                message: e.to_string(),
            })?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_length,
                ..Default::default()
            }))
            .map_err(|e| Error::Tokenizer {
                path: tokenizer_path.display().to_string(),
                message: e.to_string(),
            })?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));

        // The pooler is optional (sentence-transformers checkpoints may lack
        // it): look at the file's keys before building the model.
        config.pooler = has_pooler(&weights)?;
        let options = LoadOptions::default()
            .remap(HF_REMAP.0, HF_REMAP.1)
            .ignore_unexpected(r"^embeddings\.position_ids$");
        let (model, _) = load_safetensors(config.init(device), &weights, &options)?;
        // Few-row products (a short sentence) read the weights in the
        // device's inference layout (`ember_runtime::ops::layout`).
        let model = model.with_inference_layout();
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            model,
            tokenizer,
            config,
            max_seq_length,
            do_lower_case,
            pooling,
            normalize,
            device: device.clone(),
            name,
        })
    }

    /// Embedding width: the hidden size times the number of pooling modes.
    pub fn dim(&self) -> usize {
        self.pooling.output_dim(self.config.hidden_size)
    }

    /// How token states become the sentence vector.
    pub fn pooling(&self) -> &Pooling {
        &self.pooling
    }

    /// Whether embeddings are L2-normalised (a `Normalize` module).
    pub fn normalizes(&self) -> bool {
        self.normalize
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
    pub fn try_map_model(
        mut self,
        f: impl FnOnce(BertModel) -> Result<BertModel, Error>,
    ) -> Result<Self, Error> {
        self.model = f(self.model)?;
        Ok(self)
    }

    /// The device the encoder runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Token ids and attention mask of a batch, padded to its longest text.
    pub fn tokenize(&self, texts: &[&str]) -> Result<(Tensor<2, Int>, Tensor<2>), Error> {
        let texts: Vec<String> = texts
            .iter()
            .map(|t| {
                if self.do_lower_case {
                    t.to_lowercase()
                } else {
                    (*t).to_string()
                }
            })
            .collect();
        let encodings = self
            .tokenizer
            .encode_batch(texts, true)
            .map_err(|e| Error::Tokenizer {
                path: "tokenizer.json".into(),
                message: e.to_string(),
            })?;
        let b = encodings.len();
        let l = encodings
            .iter()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(0);
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

    /// Embeddings of `texts` as the directory's modules make them (pooled,
    /// then L2-normalised if a `Normalize` module follows), in input order,
    /// computed in batches of `batch_size`.
    pub fn encode(&self, texts: &[&str], batch_size: usize) -> Result<Vec<Vec<f32>>, Error> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(batch_size.max(1)) {
            let (ids, mask) = self.tokenize(chunk)?;
            let hidden = self.model.forward(ids, mask.clone());
            let pooled = self.pooling.forward(hidden, mask);
            let data = if self.normalize {
                l2_normalize(pooled)
            } else {
                pooled
            }
            .into_data();
            let values: Vec<f32> =
                data.convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| Error::Tokenizer {
                        path: String::new(),
                        message: format!("{e:?}"),
                    })?;
            out.extend(values.chunks(self.dim()).map(<[f32]>::to_vec));
        }
        Ok(out)
    }
}
