//! LoRA adapters for [`BertModel`] in Hugging Face peft's file format
//! (std only): a directory with `adapter_model.safetensors` (keys such as
//! `base_model.model.encoder.layer.0.attention.self.query.lora_A.weight`,
//! PyTorch layouts) and `adapter_config.json` (`r`, `lora_alpha`,
//! `lora_dropout`, `target_modules`, `peft_type: "LORA"`).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::path::Path;

use burn::tensor::Device;
use ember_runtime::io::{
    LoadOptions, PathFilter, SaveOptions, load_safetensors, save_safetensors, write_atomic,
};
use ember_runtime::peft::{LoraConfig, adapter_paths};

use crate::Error;
use crate::bert::{BertModel, PEFT_EXPORT_REMAP, PEFT_IMPORT_REMAP};

/// Reads `adapter_config.json` of a peft LoRA adapter directory.
pub fn read_adapter_config(dir: &Path) -> Result<LoraConfig, Error> {
    let path = dir.join("adapter_config.json");
    if !path.is_file() {
        return Err(Error::MissingFile {
            path: path.display().to_string(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let bad = |m: &str| Error::Config {
        path: path.display().to_string(),
        message: m.to_string(),
    };
    if json
        .get("peft_type")
        .and_then(|v| v.as_str())
        .is_some_and(|t| t != "LORA")
    {
        return Err(bad("peft_type is not LORA"));
    }
    let r = json
        .get("r")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| bad("`r` is missing"))? as usize;
    let alpha = json
        .get("lora_alpha")
        .and_then(|v| v.as_f64())
        .unwrap_or(8.0);
    let dropout = json
        .get("lora_dropout")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let targets: Vec<String> = match json.get("target_modules") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::String(s)) => alloc::vec![s.clone()],
        _ => return Err(bad("`target_modules` is missing")),
    };
    if let Some(t) = targets
        .iter()
        .find(|t| !matches!(t.as_str(), "query" | "key" | "value"))
    {
        return Err(bad(&format!(
            "target module `{t}` is not supported (query, key, value are)"
        )));
    }
    Ok(LoraConfig::new(r)
        .with_alpha(alpha)
        .with_dropout(dropout)
        .with_target_modules(targets))
}

/// Attaches the adapter in `dir` to `model` (freezing the base weights).
///
/// # Errors
/// A missing or invalid `adapter_config.json`, or adapter tensors that do not
/// fit (all of them are listed).
pub fn load_peft_adapter(
    model: BertModel,
    dir: impl AsRef<Path>,
    device: &Device,
) -> Result<(BertModel, LoraConfig), Error> {
    let dir = dir.as_ref();
    let config = read_adapter_config(dir)?;
    let model = model.with_lora(&config, device);
    let mut options = LoadOptions::default().strict(false);
    for (from, to) in PEFT_IMPORT_REMAP {
        options = options.remap(from, to);
    }
    let weights = dir.join("adapter_model.safetensors");
    let (model, report) = load_safetensors(model, &weights, &options)?;
    let expected = model.encoder.layer.len() * config.target_modules.len() * 2;
    if !report.unexpected.is_empty() || report.applied.len() != expected {
        return Err(Error::Weights(ember_runtime::Error::Load {
            path: weights.display().to_string(),
            missing: if report.applied.len() < expected {
                alloc::vec![format!(
                    "{} of {expected} LoRA tensors found",
                    report.applied.len()
                )]
            } else {
                Vec::new()
            },
            unexpected: report.unexpected,
            mismatched: Vec::new(),
        }));
    }
    Ok((model, config))
}

/// Writes the adapters of `model` to `dir` in peft's format.
pub fn save_peft_adapter(
    model: &BertModel,
    config: &LoraConfig,
    dir: impl AsRef<Path>,
) -> Result<(), Error> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let options = SaveOptions {
        remap: PEFT_EXPORT_REMAP
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        only: Some(PathFilter::new().with_full_paths(adapter_paths(model))),
        ..Default::default()
    };
    save_safetensors(model, dir.join("adapter_model.safetensors"), &options)?;
    let json = serde_json::json!({
        "peft_type": "LORA",
        "task_type": null,
        "r": config.r,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": config.target_modules,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "base_model_name_or_path": null,
    });
    let text = serde_json::to_string_pretty(&json).expect("serialisable");
    write_atomic(&dir.join("adapter_config.json"), text.as_bytes())?;
    Ok(())
}
