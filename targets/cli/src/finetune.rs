//! `ember finetune`: LoRA fine-tuning of a sentence encoder with a
//! classification head on a labelled text dataset, on the device.
//!
//! With no arguments it fine-tunes all-MiniLM-L6-v2 (from the model cache,
//! fetched by `tools/fetch-models.sh` if absent) on the shipped intent dataset
//! (`data/intents/{train,test}.jsonl`), reports held-out accuracy before and
//! after, and writes to the output directory: the peft adapter
//! (`adapter/`), the head (`head.safetensors`), `labels.json`, per-step
//! metrics (`metrics.jsonl`) and checkpoints (`checkpoints/`, resumable with
//! `--resume`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ember_models::adapter::save_peft_adapter;
use ember_models::classifier::SentenceClassifier;
use ember_models::sentence::SentenceEncoder;
use ember_runtime::checkpoint::{Checkpointer, TrainState};
use ember_runtime::clip::GlobalNormClip;
use ember_runtime::diagnostics::GradMonitor;
use ember_runtime::io::{SaveOptions, save_safetensors};
use ember_runtime::loss::cross_entropy;
use ember_runtime::optim;
use ember_runtime::peft::LoraConfig;
use ember_runtime::schedule::{Schedule, WarmupCosine};
use indicatif::{ProgressBar, ProgressStyle};

/// Options of a fine-tuning run.
pub struct Options {
    pub model: Option<PathBuf>,
    pub train: PathBuf,
    pub test: PathBuf,
    pub out: PathBuf,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub rank: usize,
    pub seed: u64,
    pub resume: bool,
    pub quiet: bool,
}

/// One labelled example.
struct Example {
    text: String,
    label: usize,
}

fn read_dataset(path: &Path, labels: &mut Vec<String>, grow: bool) -> Result<Vec<Example>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |m: String| format!("{}:{}: {m}", path.display(), i + 1);
        let (text, label) = if path.extension().is_some_and(|e| e == "csv") {
            if i == 0 && line.trim() == "text,label" {
                continue;
            }
            let (t, l) = line.rsplit_once(',').ok_or_else(|| at("expected `text,label`".into()))?;
            (t.trim_matches('"').to_string(), l.trim().to_string())
        } else {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
            let t = v["text"].as_str().ok_or_else(|| at("no string field `text`".into()))?;
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
            None => return Err(at(format!("label `{label}` does not occur in the training set"))),
        };
        out.push(Example { text, label });
    }
    if out.is_empty() {
        return Err(format!("{}: no examples", path.display()));
    }
    Ok(out)
}

fn default_model() -> Result<PathBuf, String> {
    let out = std::process::Command::new("tools/fetch-models.sh")
        .output()
        .map_err(|e| format!("no --model given and tools/fetch-models.sh could not run ({e}); run from the repository root"))?;
    if !out.status.success() {
        return Err(format!("tools/fetch-models.sh failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn accuracy(model: &SentenceClassifier, encoder: &SentenceEncoder, data: &[Example]) -> Result<f64, String> {
    let eval = model.valid();
    let mut correct = 0;
    for chunk in data.chunks(64) {
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        let (ids, mask) = encoder.tokenize(&texts).map_err(|e| e.to_string())?;
        let device = Device::flex();
        let logits = eval.forward(ids.to_device(&device), mask.to_device(&device));
        let pred: Vec<i64> = logits.argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().map_err(|e| format!("{e:?}"))?;
        correct += chunk.iter().zip(pred).filter(|(e, p)| e.label as i64 == *p).count();
    }
    Ok(correct as f64 / data.len() as f64)
}

/// Runs the fine-tuning; returns the summary printed at the end.
pub fn run(o: Options) -> Result<String, String> {
    let device = Device::flex().autodiff();
    device.seed(o.seed);
    let model_dir = match o.model.clone() {
        Some(m) => m,
        None => default_model()?,
    };
    let mut labels = Vec::new();
    let train = read_dataset(&o.train, &mut labels, true)?;
    let test = read_dataset(&o.test, &mut labels, false)?;
    if o.batch_size == 0 || o.epochs == 0 || o.rank == 0 {
        return Err("--batch-size, --epochs and --rank must be at least 1".into());
    }
    let encoder = SentenceEncoder::from_dir(&model_dir, &device).map_err(|e| e.to_string())?;
    let lora = LoraConfig::new(o.rank).with_alpha(2.0 * o.rank as f64).with_target_modules(vec!["query".into(), "value".into()]);
    let bert = encoder.model().clone().with_lora(&lora, &device);
    let mut model = SentenceClassifier::new(bert, labels.len(), &device);

    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    let checkpoints = Checkpointer::new(o.out.join("checkpoints"), 2).map_err(|e| e.to_string())?;
    let mut optimizer = optim::adamw(0.01).init();
    let steps_per_epoch = train.len().div_ceil(o.batch_size);
    let total = steps_per_epoch * o.epochs;
    let schedule = WarmupCosine::new(o.lr, 0.1, (total / 10).max(1), total - (total / 10).max(1), o.lr * 0.01);
    let mut state = TrainState { rng_seed: o.seed, ..Default::default() };
    if o.resume {
        match checkpoints.resume(model.clone(), optimizer.clone()).map_err(|e| e.to_string())? {
            Some(r) => {
                for s in &r.skipped {
                    eprintln!("warning: skipped checkpoint {s}");
                }
                eprintln!("resuming from {} (step {})", r.path.display(), r.state.step);
                model = r.model;
                optimizer = r.optimizer;
                state = r.state;
            }
            None => eprintln!("no checkpoint in {}; starting fresh", o.out.join("checkpoints").display()),
        }
    }

    let start_step = state.step;
    let before = accuracy(&model, &encoder, &test)?;
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(o.out.join("metrics.jsonl"))
        .map_err(|e| format!("{}: {e}", o.out.display()))?;
    let bar = if o.quiet { ProgressBar::hidden() } else { ProgressBar::new(total as u64) };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps {msg} [{elapsed_precise}<{eta_precise}]")
            .expect("valid template"),
    );
    bar.set_position(state.step);
    let clip = GlobalNormClip::new(1.0);
    let mut monitor = GradMonitor::new(5.0);
    let started = Instant::now();
    let mut seen = 0usize;
    let mut order: Vec<usize> = (0..train.len()).collect();
    while (state.step as usize) < total {
        let epoch = state.step as usize / steps_per_epoch;
        // A fixed permutation per epoch (seeded by epoch), so resumption
        // continues the same data order.
        let mut rng = o.seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for i in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        let position = state.step as usize % steps_per_epoch;
        for batch in order.chunks(o.batch_size).skip(position) {
            device.seed(o.seed.wrapping_add(state.step));
            let texts: Vec<&str> = batch.iter().map(|&i| train[i].text.as_str()).collect();
            let targets: Vec<i64> = batch.iter().map(|&i| train[i].label as i64).collect();
            let (ids, mask) = encoder.tokenize(&texts).map_err(|e| e.to_string())?;
            let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [batch.len()]), &device);
            let loss = cross_entropy(model.forward(ids, mask), targets);
            let loss_value = loss.clone().into_scalar::<f32>();
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            let norm = clip.clip(&model, &mut grads).map_err(|e| e.to_string())?;
            if !loss_value.is_finite() || !norm.is_finite() {
                bar.println(format!("step {}: non-finite loss or gradient, step skipped", state.step));
            } else {
                if let Some(w) = monitor.check(norm) {
                    bar.println(format!("step {}: {w}", state.step));
                }
                let lr = schedule.lr(state.step as usize);
                model = optimizer.step(lr, model, grads);
                seen += batch.len();
                let rate = seen as f64 / started.elapsed().as_secs_f64();
                bar.set_message(format!("loss {loss_value:.4} lr {lr:.2e} {rate:.1} ex/s"));
                let _ = writeln!(
                    metrics,
                    "{}",
                    serde_json::json!({"step": state.step, "epoch": epoch, "loss": loss_value, "lr": lr, "grad_norm": norm})
                );
            }
            state.step += 1;
            state.data_position = (position + 1) as u64;
            bar.inc(1);
            if state.step as usize % steps_per_epoch == 0 {
                break;
            }
        }
        state.epoch = state.step / steps_per_epoch as u64;
        state.data_position = 0;
        checkpoints.save(&model, &optimizer, &state).map_err(|e| e.to_string())?;
        let acc = accuracy(&model, &encoder, &test)?;
        let _ = writeln!(metrics, "{}", serde_json::json!({"epoch": state.epoch, "test_accuracy": acc}));
        bar.println(format!("epoch {}: held-out accuracy {:.1} %", state.epoch, acc * 100.0));
    }
    bar.finish_and_clear();
    let after = accuracy(&model, &encoder, &test)?;

    let trained = model.valid();
    save_peft_adapter(&trained.encoder, &lora, o.out.join("adapter")).map_err(|e| e.to_string())?;
    save_safetensors(&trained, o.out.join("head.safetensors"), &SaveOptions { only: vec!["^head\\.".into()], ..Default::default() })
        .map_err(|e| e.to_string())?;
    std::fs::write(o.out.join("labels.json"), serde_json::to_string(&labels).unwrap())
        .map_err(|e| format!("{}: {e}", o.out.display()))?;
    Ok(format!(
        "fine-tuned {} with LoRA r={} on {} examples ({} labels), steps {}..{} in {:.1} s\n\
         held-out accuracy: {:.1} % before, {:.1} % after ({} examples)\n\
         wrote {}/adapter (peft format), head.safetensors, labels.json, metrics.jsonl, checkpoints/",
        encoder.name(),
        o.rank,
        train.len(),
        labels.len(),
        start_step,
        total,
        started.elapsed().as_secs_f64(),
        before * 100.0,
        after * 100.0,
        test.len(),
        o.out.display()
    ))
}
