//! `ember-bench memory`: one training step's time and peak memory under
//! fp32, f16, bf16, segment recomputation and both, for a 32-block residual
//! MLP and the MiniLM LoRA fine-tune, against autocast and
//! torch.utils.checkpoint (`tools/reference/bench_memory_torch.py`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::{Distribution, Int, Tensor, TensorData};
use ember_models::classifier::SentenceClassifier;
use ember_models::residual::ResidualMlpConfig;
use ember_models::sentence::SentenceEncoder;
use ember_runtime::peft::LoraConfig;
use ember_runtime::precision::{self, LossScaler, Precision};
use ember_runtime::recompute::{Segmented, Strategy, forward_backward_observed};

use crate::measure::median;
use crate::reference::{TorchSide, arg};
use crate::sentences::intent_texts;

/// One configuration of `ember-bench memory`.
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

/// `ember-bench memory`: step time and peak memory of training under each
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
            let device = ember_runtime::device::cpu().autodiff();
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
                TorchSide {
                    script: torch_script,
                    needs: "torch, transformers and peft",
                }
                .run(
                    &[
                        arg("--workload", workload),
                        arg("--precision", c.precision.name()),
                        arg("--recompute", recompute),
                        arg("--threads", threads),
                        arg("--iters", iters),
                        arg("--warmup", warmup),
                        arg("--model", model_dir.display()),
                    ]
                    .concat(),
                    None,
                    &[("MALLOC_MMAP_THRESHOLD_", "65536")],
                )?
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
