//! Benchmarks side by side with PyTorch, in one run on the same machine:
//!
//! * `ember bench embed`: sentence-embedding latency, throughput and peak
//!   memory, Ember and sentence-transformers on torch CPU (same sentences,
//!   threads, warm-up and iteration count).
//! * `ember bench finetune`: the default `ember finetune` job against the
//!   same job in transformers + peft (`tools/reference/finetune_torch.py`):
//!   wall time, training time, peak RSS and held-out accuracy, each side in
//!   its own process.
//! * `ember bench memory`: one training step's time and peak memory under
//!   fp32, f16, bf16, segment recomputation and both, for a 32-block
//!   residual MLP and the MiniLM LoRA fine-tune, against autocast and
//!   torch.utils.checkpoint (`tools/reference/bench_memory_torch.py`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use ember_models::classifier::SentenceClassifier;
use ember_models::residual::ResidualMlpConfig;
use ember_models::sentence::SentenceEncoder;
use ember_runtime::peft::LoraConfig;
use ember_runtime::precision::{self, LossScaler, Precision};
use ember_runtime::recompute::{Segmented, Strategy, forward_backward_observed};

/// 32 on-device assistant requests of everyday length.
pub(crate) const SENTENCES: [&str; 32] = [
    "Turn on the living room lights.",
    "Set an alarm for 6:30 tomorrow morning.",
    "What's the weather like in Paris today?",
    "Play some relaxing jazz music in the kitchen.",
    "Remind me to buy milk when I leave work.",
    "Send a message to Alex saying I'm running late.",
    "How long will it take to drive to the airport right now?",
    "Turn the thermostat down by two degrees.",
    "Add eggs, flour and butter to my shopping list.",
    "What is on my calendar for Friday afternoon?",
    "Call my sister on speaker.",
    "Skip to the next song and turn the volume up.",
    "Translate good night into Japanese.",
    "Start a timer for twelve minutes.",
    "Is it going to rain during my run this evening?",
    "Lock the front door and close the garage.",
    "Read me the latest headlines about the election.",
    "Book a table for four at an Italian restaurant nearby.",
    "How many steps have I walked today?",
    "Dim the bedroom lights to thirty percent.",
    "What time does the pharmacy on Main Street close?",
    "Find photos from our trip to the mountains last summer.",
    "Turn off all the lights downstairs at midnight.",
    "Convert fifty dollars to euros.",
    "Open the navigation and avoid toll roads.",
    "Who won the football match last night?",
    "Pause the podcast and resume it in the car.",
    "Set the oven to preheat at 200 degrees.",
    "Tell me a joke about programmers.",
    "What's the capital of Australia?",
    "Show my heart rate over the last week.",
    "Email the quarterly report to the finance team.",
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

use crate::finetune::peak_rss_mib;

/// Runs the benchmark; returns the table (and writes JSON to `json` if given).
pub fn embed(
    model: &Path,
    iters: usize,
    warmup: usize,
    torch_script: &Path,
    json: Option<&PathBuf>,
) -> Result<String, String> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let encoder = SentenceEncoder::from_dir(model, &Device::flex()).map_err(|e| e.to_string())?;
    let time = |batch: &[&str]| -> Result<f64, String> {
        for _ in 0..warmup {
            encoder
                .encode(batch, batch.len())
                .map_err(|e| e.to_string())?;
        }
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters.max(1) {
            let t = Instant::now();
            encoder
                .encode(batch, batch.len())
                .map_err(|e| e.to_string())?;
            times.push(t.elapsed().as_secs_f64());
        }
        Ok(median(times))
    };
    let b1 = time(&SENTENCES[..1])?;
    let b32 = time(&SENTENCES)?;
    let ember = serde_json::json!({
        "system": format!("ember {} (burn-flex)", env!("CARGO_PKG_VERSION")),
        "batch1_ms": b1 * 1e3,
        "batch32_ms": b32 * 1e3,
        "throughput_per_s": 32.0 / b32,
        "peak_rss_mib": peak_rss_mib(),
    });

    let mut child = Command::new("python3")
        .arg(torch_script)
        .args([
            "--model",
            &model.display().to_string(),
            "--threads",
            &threads.to_string(),
        ])
        .args([
            "--iters",
            &iters.to_string(),
            "--warmup",
            &warmup.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("python3 {}: {e}", torch_script.display()))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(SENTENCES.join("\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{} failed (torch and sentence-transformers from tools/reference/requirements.txt are needed): {}",
            torch_script.display(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    let torch: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("torch side output: {e}"))?;

    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mut table = format!(
        "embed, all-MiniLM-L6-v2, {threads} threads, median of {iters} after {warmup} warm-up\n\
         {:<22} {:>12} {:>12} {:>8}\n",
        "metric", "ember", "pytorch", "ratio"
    );
    for (label, key, lower_is_better) in [
        ("batch 1 latency (ms)", "batch1_ms", true),
        ("batch 32 latency (ms)", "batch32_ms", true),
        ("throughput (sent/s)", "throughput_per_s", false),
        ("peak RSS (MiB)", "peak_rss_mib", true),
    ] {
        let (e, t) = (f(&ember, key), f(&torch, key));
        let _ = lower_is_better;
        table.push_str(&format!(
            "{label:<22} {e:>12.2} {t:>12.2} {:>7.2}×\n",
            e / t
        ));
    }
    table.push_str("ratio = ember / pytorch (below 1 is better for latency and memory, above 1 for throughput)");
    if let Some(path) = json {
        let doc = serde_json::json!({"workload": "embed", "threads": threads, "iters": iters, "ember": ember, "pytorch": torch});
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(table)
}

/// The number after `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> Option<f64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    rest.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// `ember finetune` (defaults) against the same job in transformers + peft.
pub fn finetune(
    model: &Path,
    epochs: usize,
    torch_script: &Path,
    json: Option<&PathBuf>,
) -> Result<String, String> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (train, test) = ("data/intents/train.jsonl", "data/intents/test.jsonl");
    let out = std::env::temp_dir().join(format!("ember-bench-finetune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let run = Command::new(&exe)
        .args([
            "finetune",
            "--quiet",
            "--model",
            &model.display().to_string(),
            "--train",
            train,
            "--test",
            test,
        ])
        .args([
            "--epochs",
            &epochs.to_string(),
            "--out",
            &out.display().to_string(),
        ])
        .output()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let ember_wall = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    if !run.status.success() {
        return Err(format!(
            "ember finetune failed: {}",
            String::from_utf8_lossy(&run.stderr).trim()
        ));
    }
    let parse = |prefix: &str| {
        number_after(&stdout, prefix)
            .ok_or_else(|| format!("no `{prefix}` in ember finetune's output:\n{stdout}"))
    };
    let steps = {
        let range = &stdout[stdout.find("steps ").ok_or("no step range")? + 6..];
        let (a, b) = range.split_once("..").ok_or("no step range")?;
        let b: String = b.chars().take_while(char::is_ascii_digit).collect();
        b.parse::<f64>().unwrap_or(0.0) - a.parse::<f64>().unwrap_or(0.0)
    };
    let train_seconds = parse(&format!("..{steps} in "))?;
    let ember = serde_json::json!({
        "system": format!("ember {} (burn-flex)", env!("CARGO_PKG_VERSION")),
        "steps": steps,
        "wall_seconds": ember_wall,
        "train_seconds": train_seconds,
        "seconds_per_step": train_seconds / steps.max(1.0),
        "peak_rss_mib": parse("peak RSS ")?,
        "accuracy_before": parse("accuracy: ")? / 100.0,
        "accuracy_after": parse("before, ")? / 100.0,
    });

    let started = Instant::now();
    let run = Command::new("python3")
        .arg(torch_script)
        .args([
            "--model",
            &model.display().to_string(),
            "--train",
            train,
            "--test",
            test,
        ])
        .args([
            "--threads",
            &threads.to_string(),
            "--epochs",
            &epochs.to_string(),
        ])
        .output()
        .map_err(|e| format!("python3 {}: {e}", torch_script.display()))?;
    let torch_wall = started.elapsed().as_secs_f64();
    if !run.status.success() {
        return Err(format!(
            "{} failed (torch, transformers and peft from tools/reference/requirements.txt are needed): {}",
            torch_script.display(),
            String::from_utf8_lossy(&run.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    let mut torch: serde_json::Value =
        serde_json::from_slice(&run.stdout).map_err(|e| format!("torch side output: {e}"))?;
    torch["wall_seconds"] = serde_json::json!(torch_wall);

    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mut table = format!(
        "finetune: all-MiniLM-L6-v2, LoRA r=8 (query, value) + head, {} steps of batch 16, {threads} threads\n\
         {:<26} {:>10} {:>10} {:>8}\n",
        steps, "metric", "ember", "pytorch", "ratio"
    );
    for (label, key, scale) in [
        ("whole job, wall (s)", "wall_seconds", 1.0),
        ("training loop (s)", "train_seconds", 1.0),
        ("time per step (ms)", "seconds_per_step", 1e3),
        ("peak RSS (MiB)", "peak_rss_mib", 1.0),
        ("held-out accuracy (%)", "accuracy_after", 100.0),
    ] {
        let (e, t) = (f(&ember, key) * scale, f(&torch, key) * scale);
        table.push_str(&format!(
            "{label:<26} {e:>10.2} {t:>10.2} {:>7.2}×\n",
            e / t
        ));
    }
    table.push_str("ratio = ember / pytorch; the training loop includes a held-out evaluation and a checkpoint per epoch on both sides");
    if let Some(path) = json {
        let doc = serde_json::json!({"workload": "finetune", "threads": threads, "epochs": epochs, "ember": ember, "pytorch": torch});
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(table)
}

/// One configuration of `ember bench memory`.
#[derive(Clone, Copy)]
struct MemConfig {
    precision: Precision,
    recompute: Strategy,
}

const MEM_CONFIGS: [MemConfig; 9] = [
    MemConfig {
        precision: Precision::Fp32,
        recompute: Strategy::None,
    },
    MemConfig {
        precision: Precision::F16,
        recompute: Strategy::None,
    },
    MemConfig {
        precision: Precision::Bf16,
        recompute: Strategy::None,
    },
    MemConfig {
        precision: Precision::Fp32,
        recompute: Strategy::Auto,
    },
    MemConfig {
        precision: Precision::F16,
        recompute: Strategy::Auto,
    },
    MemConfig {
        precision: Precision::Bf16,
        recompute: Strategy::Auto,
    },
    MemConfig {
        precision: Precision::Fp32,
        recompute: Strategy::Balanced,
    },
    MemConfig {
        precision: Precision::F16,
        recompute: Strategy::Balanced,
    },
    MemConfig {
        precision: Precision::Bf16,
        recompute: Strategy::Balanced,
    },
];

/// Time (median, ms), the largest peak heap above the step's start (MiB),
/// the largest activation memory (MiB: live bytes above the step's start,
/// less the gradients held, right before a backward pass begins) of `iters`
/// training steps after `warmup`, and the allocations of the last step.
fn time_steps<const N: usize, M: Segmented<N>>(
    model: M,
    batch: &M::Batch,
    c: MemConfig,
    iters: usize,
    warmup: usize,
) -> (f64, f64, f64, usize) {
    let mut model = model;
    let activations = std::cell::Cell::new(0usize);
    let mut optimizer = ember_runtime::optim::adamw(0.01).init();
    let mut scaler = LossScaler::for_precision(c.precision);
    let heap = &crate::HEAP;
    let (mut times, mut peak, mut allocations) = (Vec::new(), 0usize, 0usize);
    for i in 0..warmup + iters.max(1) {
        let t = Instant::now();
        let (m, stats) = heap.measure(|| {
            let recompute = if c.recompute == Strategy::Balanced {
                Strategy::None
            } else {
                c.recompute
            };
            let base = heap.stats().current_bytes;
            let mut observe = |grad_bytes: usize| {
                let live = heap.stats().current_bytes.saturating_sub(base + grad_bytes);
                activations.set(activations.get().max(live));
            };
            let (_, mut grads) = precision::autocast(c.precision, || {
                forward_backward_observed(
                    &model,
                    batch,
                    recompute,
                    scaler.scale(),
                    Some(&mut observe),
                )
            });
            let overflow = scaler.is_enabled() && scaler.unscale(&model, &mut grads).found_inf;
            scaler.update(overflow);
            // The step owns the model (moved into this closure and put back
            // below): a clone with the original still held would make the
            // optimizer copy every shared parameter before updating it.
            if overflow {
                model
            } else {
                optimizer.step(1e-4, model, grads)
            }
        });
        let elapsed = t.elapsed().as_secs_f64();
        model = m;
        if i < warmup {
            activations.set(0);
        } else {
            times.push(elapsed);
            peak = peak.max(stats.peak_bytes);
            allocations = stats.allocations;
        }
    }
    (
        median(times) * 1e3,
        peak as f64 / 1048576.0,
        activations.get() as f64 / 1048576.0,
        allocations,
    )
}

/// Gradient bytes (fp32) of the trainable parameters of `model`, in MiB.
fn grad_mib<M: burn::module::Module>(model: &M) -> f64 {
    let (trainable, _) = ember_runtime::freeze::trainable_count(model);
    trainable as f64 * 4.0 / 1048576.0
}

/// `ember bench memory`: step time and peak memory of training under each
/// precision and recomputation setting, Ember and PyTorch (autocast,
/// torch.utils.checkpoint) in the same run.
pub fn memory(
    model_dir: &Path,
    iters: usize,
    warmup: usize,
    torch_script: &Path,
    json: Option<&PathBuf>,
    quick: bool,
    only: &[String],
) -> Result<String, String> {
    let recompute_name = |s: Strategy| match s {
        Strategy::Auto => "auto",
        Strategy::Balanced => "balanced",
        _ => "none",
    };
    let named: Vec<(MemConfig, String)> = MEM_CONFIGS
        .iter()
        .map(|&c| {
            (
                c,
                format!("{}/{}", c.precision.name(), recompute_name(c.recompute)),
            )
        })
        .collect();
    if let Some(bad) = only
        .iter()
        .find(|o| !named.iter().any(|(_, name)| name.eq_ignore_ascii_case(o)))
    {
        return Err(format!(
            "--only {bad}: expected PRECISION/RECOMPUTE with fp32|f16|bf16 and none|auto|balanced"
        ));
    }
    let configs: Vec<MemConfig> = named
        .into_iter()
        .filter(|(_, name)| only.is_empty() || only.iter().any(|o| o.eq_ignore_ascii_case(name)))
        .map(|(c, _)| c)
        .collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut rows = Vec::new();
    let workloads: &[&str] = if quick {
        &["minilm"]
    } else {
        &["residual", "minilm"]
    };
    for &workload in workloads {
        for &c in &configs {
            let device = Device::flex().autodiff();
            let device = if c.recompute == Strategy::Balanced {
                device.gradient_checkpointing()
            } else {
                device
            };
            device.seed(0);
            let (ms, peak, acts, allocs, grads, batch_desc) = match workload {
                "residual" => {
                    let model = ember_runtime::params::materialize(
                        ResidualMlpConfig::new(1024, 1024, 1, 32)
                            .with_batch_norm(false)
                            .init(&device),
                    );
                    let x =
                        Tensor::<2>::random([256, 1024], Distribution::Normal(0.0, 1.0), &device);
                    let y = Tensor::<2>::random([256, 1], Distribution::Normal(0.0, 1.0), &device);
                    let g = grad_mib(&model);
                    let (ms, peak, acts, allocs) = time_steps(model, &(x, y), c, iters, warmup);
                    (ms, peak, acts, allocs, g, "batch 256".to_string())
                }
                _ => {
                    let encoder =
                        SentenceEncoder::from_dir(model_dir, &device).map_err(|e| e.to_string())?;
                    let lora = LoraConfig::new(8)
                        .with_alpha(16.0)
                        .with_target_modules(vec!["query".into(), "value".into()]);
                    let bert = encoder.model().clone().with_lora(&lora, &device);
                    let model = ember_runtime::params::materialize(SentenceClassifier::new(
                        bert, 8, &device,
                    ));
                    let texts = intent_texts(16)?;
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    let (ids, mask) = encoder.tokenize(&refs).map_err(|e| e.to_string())?;
                    let tokens = ids.dims()[1];
                    let labels = Tensor::<1, Int>::from_data(
                        TensorData::new((0..16).map(|i| i % 8).collect::<Vec<i64>>(), [16]),
                        &device,
                    );
                    let g = grad_mib(&model);
                    let batch = (ids.to_device(&device), mask.to_device(&device), labels);
                    let (ms, peak, acts, allocs) = time_steps(model, &batch, c, iters, warmup);
                    (
                        ms,
                        peak,
                        acts,
                        allocs,
                        g,
                        format!("batch 16, {tokens} tokens"),
                    )
                }
            };
            let recompute = recompute_name(c.recompute);
            let torch = if c.recompute == Strategy::Balanced {
                serde_json::Value::Null
            } else {
                let mut cmd = Command::new("python3");
                cmd.arg(torch_script)
                    .args([
                        "--workload",
                        workload,
                        "--precision",
                        c.precision.name(),
                        "--recompute",
                        recompute,
                    ])
                    .args([
                        "--threads",
                        &threads.to_string(),
                        "--iters",
                        &iters.to_string(),
                        "--warmup",
                        &warmup.to_string(),
                    ])
                    .args(["--model", &model_dir.display().to_string()])
                    .env("MALLOC_MMAP_THRESHOLD_", "65536");
                let out = cmd
                    .output()
                    .map_err(|e| format!("python3 {}: {e}", torch_script.display()))?;
                if !out.status.success() {
                    return Err(format!(
                        "{} failed (torch, transformers and peft from tools/reference/requirements.txt are needed): {}",
                        torch_script.display(),
                        String::from_utf8_lossy(&out.stderr)
                            .lines()
                            .last()
                            .unwrap_or("")
                    ));
                }
                serde_json::from_slice(&out.stdout)
                    .map_err(|e| format!("torch side output: {e}"))?
            };
            eprintln!(
                "{workload} {} + recompute {recompute}: ember {ms:.0} ms, step peak {peak:.0} MiB, activations {acts:.1} MiB; pytorch {torch}",
                c.precision
            );
            rows.push(serde_json::json!({
                "workload": workload, "batch": batch_desc, "precision": c.precision.name(), "recompute": recompute,
                "ember": {"step_ms": ms, "step_peak_mib": peak, "activation_mib": acts, "grad_mib": grads, "allocations_per_step": allocs},
                "pytorch": torch,
            }));
        }
    }
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mut table = format!(
        "memory: one training step (forward, backward, AdamW), {threads} threads, median of {iters} after {warmup} warm-up\n\
         step peak = the most memory live during the step above what the model and optimizer hold before it\n\
         (Ember: counting allocator; PyTorch: peak RSS above RSS before the step, glibc returning freed blocks);\n\
         activations (Ember) = live bytes above the step's start less the gradients held, right before each backward pass\n\n\
         | workload | precision | recompute | Ember step (ms) | Ember step peak (MiB) | Ember activations (MiB) | PyTorch step (ms) | PyTorch step peak (MiB) | step time Ember/PyTorch |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|\n"
    );
    for r in &rows {
        let (e, t) = (&r["ember"], &r["pytorch"]);
        let cell = |v: f64| {
            if v.is_nan() {
                "—".to_string()
            } else {
                format!("{v:.0}")
            }
        };
        table.push_str(&format!(
            "| {} ({}) | {} | {} | {:.0} | {:.0} | {:.1} | {} | {} | {} |\n",
            r["workload"].as_str().unwrap_or(""),
            r["batch"].as_str().unwrap_or(""),
            r["precision"].as_str().unwrap_or(""),
            r["recompute"].as_str().unwrap_or(""),
            f(e, "step_ms"),
            f(e, "step_peak_mib"),
            f(e, "activation_mib"),
            cell(f(t, "step_ms")),
            cell(f(t, "step_peak_mib")),
            if t.is_null() {
                "—".to_string()
            } else {
                format!("{:.2}×", f(e, "step_ms") / f(t, "step_ms"))
            },
        ));
    }
    if let Some(path) = json {
        let doc = serde_json::json!({"workload": "memory", "threads": threads, "iters": iters, "warmup": warmup, "rows": rows});
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(table)
}

/// The first `n` training sentences of the shipped intent data.
fn intent_texts(n: usize) -> Result<Vec<String>, String> {
    let path = "data/intents/train.jsonl";
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{path}: {e} (run from the repository root)"))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .take(n)
        .collect())
}
