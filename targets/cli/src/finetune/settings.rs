//! `ember finetune`'s settings: typed values given by flags, by a TOML file
//! (`--config`, keys named like the flags with `_`, values spelled as on the
//! command line) or by the task's defaults, merged once by [`resolve`] in
//! that order of precedence.

use std::path::PathBuf;
use std::str::FromStr;

use ember_runtime::Error;
use ember_runtime::device::Backend;
use ember_runtime::plan::parse_bytes;
use ember_runtime::precision::Precision;
use ember_runtime::recompute::Strategy;
use serde::{Deserialize, Deserializer, Serialize};

use super::data::Source;

/// The built-in tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Sentence-encoder fine-tuning on labelled text (intent classification).
    Intents,
    /// An MLP or CNN on the 8×8 digits, from scratch.
    Digits,
}

/// Which parameters train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// LoRA adapters on query/value and the head (text task).
    Lora,
    /// Biases and the head (BitFit).
    Bias,
    /// The head only.
    Head,
    /// Every parameter.
    Full,
}

/// The digits network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// 64 → 128 → 64 → 10 with ReLU and dropout 0.1.
    Mlp,
    /// Two 3×3 convolutions with pooling and a linear classifier.
    Cnn,
}

/// A size in bytes, written like `512MiB`, `1.5GiB`, `300MB` or `65536`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub usize);

impl FromStr for Bytes {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        parse_bytes(text).map(Bytes)
    }
}

/// A TOML value parsed as its flag is (`precision = "bf16"`,
/// `memory_budget = "512MiB"`), with the parser's error.
fn parsed<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<Option<T>, D::Error>
where
    T::Err: std::fmt::Display,
{
    Option::<String>::deserialize(d)?
        .map(|text| text.parse().map_err(serde::de::Error::custom))
        .transpose()
}

/// The settings struct, every field optional ("not given"), and the merge
/// that takes each field from the first source that gives it: the field
/// list is written once.
macro_rules! settings {
    ($($(#[$meta:meta])* $name:ident: $ty:ty,)*) => {
        /// Settings that flags and the TOML file can give; `None` means "not
        /// given".
        #[derive(Debug, Clone, Default, Deserialize, clap::Args)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $($(#[$meta])* pub $name: Option<$ty>,)*
        }

        impl Settings {
            /// `self`, with what it lacks taken from `other`.
            fn or(self, other: Settings) -> Settings {
                Settings {
                    $($name: self.$name.or(other.$name),)*
                }
            }
        }
    };
}

settings! {
    /// Built-in task [default: intents].
    #[arg(long, value_enum)]
    task: Task,
    /// Model directory (intents; default: all-MiniLM-L6-v2 from the model cache).
    #[arg(long)]
    model: PathBuf,
    /// Training data: JSONL (`{"text":…,"label":…}`) or CSV (`text,label`) for
    /// intents, CSV of 64 pixels and a label for digits [default: the task's shipped data].
    #[arg(long)]
    train: PathBuf,
    /// Held-out data, same format.
    #[arg(long)]
    test: PathBuf,
    /// Output directory [default: runs/finetune or runs/digits].
    #[arg(long)]
    out: PathBuf,
    /// Epochs [default: 4 for intents, 20 for digits].
    #[arg(long)]
    epochs: usize,
    /// Examples per micro-batch [default: 16 for intents, 32 for digits].
    #[arg(long)]
    batch_size: usize,
    /// Micro-batches per optimizer step [default: 1].
    #[arg(long)]
    grad_accumulation: usize,
    /// Peak learning rate of AdamW (warm-up then cosine) [default: 2e-3 for intents, 5e-3 for digits].
    #[arg(long)]
    lr: f64,
    /// Which parameters train [default: lora for intents, full for digits].
    #[arg(long, value_enum)]
    mode: Mode,
    /// LoRA rank; alpha = 2·rank [default: 8].
    #[arg(long)]
    rank: usize,
    /// Digits network [default: mlp].
    #[arg(long, value_enum)]
    arch: Arch,
    /// Write a checkpoint every N steps besides each epoch's end [default: 0, epochs only].
    #[arg(long)]
    checkpoint_every: u64,
    /// Evaluate on the held-out data every N steps besides each epoch's end [default: 0].
    #[arg(long)]
    eval_every: u64,
    /// Stop after N evaluations without a lower held-out loss and keep the best model [default: 0, off].
    #[arg(long)]
    patience: usize,
    /// Seed of initialisation, data order and dropout [default: 42].
    #[arg(long)]
    seed: u64,
    /// Compute precision: fp32, f16 (with dynamic loss scaling) or bf16;
    /// weights and optimizer state stay fp32 [default: fp32].
    #[arg(long)]
    #[serde(default, deserialize_with = "parsed")]
    precision: Precision,
    /// Recomputation: none, auto (segments of √L blocks), every:K, or
    /// balanced (Burn's checkpointing) [default: none].
    #[arg(long)]
    #[serde(default, deserialize_with = "parsed")]
    recompute: Strategy,
    /// Peak heap budget (e.g. 512MiB): measures candidate settings and picks
    /// batch size, precision and recomputation to fit [default: none].
    #[arg(long)]
    #[serde(default, deserialize_with = "parsed")]
    memory_budget: Bytes,
    /// Compute device: cpu, or a GPU backend compiled in (wgpu, vulkan,
    /// metal, cuda) [default: $EMBER_DEVICE, else cpu].
    #[arg(long)]
    #[serde(default, deserialize_with = "parsed")]
    device: Backend,
}

/// Everything `ember finetune` was asked.
pub struct Options {
    /// Settings from the flags.
    pub flags: Settings,
    /// TOML file with more settings.
    pub config: Option<PathBuf>,
    /// Continue from the newest valid checkpoint.
    pub resume: bool,
    /// Run the learning-rate range test instead of training.
    pub lr_find: bool,
    /// No progress bar.
    pub quiet: bool,
}

/// The settings with every value present.
pub(super) struct Resolved {
    pub(super) task: Task,
    pub(super) model: Option<PathBuf>,
    pub(super) train: Source,
    pub(super) test: Source,
    pub(super) out: PathBuf,
    pub(super) epochs: usize,
    pub(super) batch_size: usize,
    pub(super) grad_accumulation: usize,
    pub(super) lr: f64,
    pub(super) mode: Mode,
    pub(super) rank: usize,
    pub(super) arch: Arch,
    pub(super) checkpoint_every: u64,
    pub(super) eval_every: u64,
    pub(super) patience: usize,
    pub(super) seed: u64,
    pub(super) precision: Precision,
    pub(super) recompute: Strategy,
    pub(super) memory_budget: Option<usize>,
    pub(super) device: Backend,
}

/// The settings of a run: the flags, then the TOML file, then the task's
/// defaults; checked for values no run could use.
pub(super) fn resolve(o: &Options) -> Result<Resolved, String> {
    let file = match &o.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            toml::from_str::<Settings>(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Settings::default(),
    };
    let s = o.flags.clone().or(file);
    let task = s.task.unwrap_or(Task::Intents);
    let intents = task == Task::Intents;
    let r = Resolved {
        task,
        model: s.model,
        train: source_for(task, "train", s.train),
        test: source_for(task, "test", s.test),
        out: s.out.unwrap_or_else(|| {
            PathBuf::from(if intents {
                "runs/finetune"
            } else {
                "runs/digits"
            })
        }),
        epochs: s.epochs.unwrap_or(if intents { 4 } else { 20 }),
        batch_size: s.batch_size.unwrap_or(if intents { 16 } else { 32 }),
        grad_accumulation: s.grad_accumulation.unwrap_or(1),
        lr: s.lr.unwrap_or(if intents { 2e-3 } else { 5e-3 }),
        mode: s
            .mode
            .unwrap_or(if intents { Mode::Lora } else { Mode::Full }),
        rank: s.rank.unwrap_or(8),
        arch: s.arch.unwrap_or(Arch::Mlp),
        checkpoint_every: s.checkpoint_every.unwrap_or(0),
        eval_every: s.eval_every.unwrap_or(0),
        patience: s.patience.unwrap_or(0),
        seed: s.seed.unwrap_or(42),
        precision: s.precision.unwrap_or_default(),
        recompute: s.recompute.unwrap_or_default(),
        memory_budget: s.memory_budget.map(|b| b.0),
        device: ember_runtime::device::chosen(s.device).map_err(|e| e.to_string())?,
    };
    if r.task == Task::Digits
        && r.arch == Arch::Cnn
        && !matches!(r.recompute, Strategy::None | Strategy::Balanced)
    {
        return Err("segment recomputation needs a network of blocks: use --arch mlp, or --recompute balanced".into());
    }
    if r.epochs == 0 || r.batch_size == 0 || r.grad_accumulation == 0 || r.rank == 0 {
        return Err("epochs, batch size, gradient accumulation and rank must be at least 1".into());
    }
    if !(r.lr > 0.0 && r.lr.is_finite()) {
        return Err(format!("the learning rate must be positive, got {}", r.lr));
    }
    if r.task == Task::Digits && r.mode == Mode::Lora {
        return Err(
            "LoRA mode needs a pretrained encoder: use --mode full|bias|head with --task digits"
                .into(),
        );
    }
    Ok(r)
}

/// `path`, or the task's data: for intents the copy compiled in, so the
/// default job runs from any directory; for digits the repository's
/// `data/digits/`, which is 265 KB and stays out of the binary.
fn source_for(task: Task, split: &str, path: Option<PathBuf>) -> Source {
    match (path, task, split) {
        (Some(path), ..) => Source::File(path),
        (None, Task::Intents, "train") => Source::Builtin {
            name: "data/intents/train.jsonl",
            text: include_str!("../../../../data/intents/train.jsonl"),
        },
        (None, Task::Intents, _) => Source::Builtin {
            name: "data/intents/test.jsonl",
            text: include_str!("../../../../data/intents/test.jsonl"),
        },
        (None, Task::Digits, _) => Source::File(PathBuf::from(format!("data/digits/{split}.csv"))),
    }
}
