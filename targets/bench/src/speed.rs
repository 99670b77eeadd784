//! `ember-bench speed`: training and inference speed side by side with
//! PyTorch on the same CPU, in one run (`tools/reference/bench_speed_torch.py`
//! runs the same workloads, shapes, thread count and timing rule).
//!
//! Workloads: one training step (forward, loss, backward, AdamW) of the MLP
//! 16→h→h→1 for h ∈ {64, 256, 1024} and batch ∈ {32, 512}; of the 32-block
//! residual MLP (width 1024, batch 256); of MiniLM with LoRA (batch 16, 64
//! tokens); MiniLM encode latency at batch 1 and 32; and a peak-GEMM probe
//! (the best f32 matmul rate of PyTorch's BLAS, and of Burn's flex backend,
//! on square sizes 256–2048; the higher of the two is the machine's
//! reachable peak) so training steps are also expressed as a fraction of
//! it. Each Ember step's allocations (count and bytes) are reported from
//! the counting global allocator.
//! `gemm_shapes` times the matrix products inside those steps alone, on one
//! thread and on all, to tell the GEMM kernel's share of a gap from the
//! rest of the step. `--rounds N` alternates the two sides N times and
//! reports medians, for machines whose speed drifts between the two sides'
//! runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use ember_models::classifier::SentenceClassifier;
use ember_models::mlp::MlpConfig;
use ember_models::residual::ResidualMlpConfig;
use ember_models::sentence::SentenceEncoder;
use ember_runtime::loss::mse;
use ember_runtime::memory::MemoryStats;
use ember_runtime::peft::LoraConfig;
use ember_runtime::recompute::{Strategy, forward_backward};

use crate::measure::median;
use crate::reference::{TorchSide, arg};
use crate::sentences::SENTENCES;

/// How long each workload is timed.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Untimed calls first.
    pub warmup: usize,
    /// At least this many timed calls…
    pub min_iters: usize,
    /// …and at least this much time (seconds), at most 1000 calls.
    pub seconds: f64,
}

/// Which workloads run.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Skip the 32-block residual MLP.
    pub quick: bool,
    /// Only the workloads whose name contains this.
    pub only: Option<String>,
}

impl Selection {
    fn wants(&self, name: &str) -> bool {
        !(self.quick && name == "residual")
            && self.only.as_ref().is_none_or(|o| name.contains(o.as_str()))
    }
}

/// One timed workload on the Ember side.
struct Measured {
    /// Median seconds per call.
    seconds: f64,
    /// Allocations of the last timed call.
    allocations: usize,
    /// Bytes allocated by the last timed call (freed or not).
    allocated_bytes: usize,
}

/// The training steps below take the model out of its slot and put the
/// optimizer's result back, as a training loop that owns its model does: a
/// step given a clone while the original is still held would find every
/// parameter shared and copy it before updating it.
const PUT_BACK: &str = "every step puts the model back";

fn timed(t: Timing, mut f: impl FnMut()) -> Measured {
    for _ in 0..t.warmup {
        f();
    }
    let (mut times, start) = (Vec::new(), Instant::now());
    let mut last = MemoryStats::default();
    while times.len() < t.min_iters.max(1)
        || (start.elapsed().as_secs_f64() < t.seconds && times.len() < 1000)
    {
        let begun = Instant::now();
        let ((), stats) = crate::HEAP.measure(&mut f);
        times.push(begun.elapsed().as_secs_f64());
        last = stats;
    }
    times.sort_by(f64::total_cmp);
    Measured {
        seconds: times[times.len() / 2],
        allocations: last.allocations,
        allocated_bytes: last.allocated_bytes,
    }
}

/// Floating-point operations of one training step of a network with
/// `weights` multiply-accumulate weights at batch `batch`: 2 per
/// multiply-add forward, twice that backward (input and weight gradients).
fn step_flops(weights: usize, batch: usize) -> f64 {
    6.0 * weights as f64 * batch as f64
}

/// The matrix products inside the workloads, timed alone on both sides
/// (`gemm_shapes`): name, m, k, n, and whether the left and right operands
/// are transposed views (as autodiff passes them for the gradients, and as
/// MiniLM's forward multiplies by its column-major `[out, in]` weights). The
/// same list as `GEMM_SHAPES` in `tools/reference/bench_speed_torch.py`.
const GEMM_SHAPES: [(&str, usize, usize, usize, bool, bool); 5] = [
    ("mlp_forward", 512, 1024, 1024, false, false),
    ("mlp_input_grad", 512, 1024, 1024, false, true),
    ("mlp_weight_grad", 1024, 512, 1024, true, false),
    ("minilm_projection", 1024, 384, 384, false, true),
    ("minilm_ffn", 1024, 384, 1536, false, true),
];

/// Burn flex's rate (GFLOP/s) for `a · b` (`[m, k] · [k, n]`).
fn matmul_gflops(a: &Tensor<2>, b: &Tensor<2>, timing: Timing) -> f64 {
    let ([m, k], n) = (a.dims(), b.dims()[1]);
    let t = timed(timing, || {
        let c = a.clone().matmul(b.clone());
        let _ = c.slice([0..1, 0..1]).into_scalar::<f32>();
    });
    2.0 * (m * k * n) as f64 / t.seconds / 1e9
}

/// Burn flex's f32 rate (GFLOP/s) for each of [`GEMM_SHAPES`], on one
/// thread and on the whole pool.
fn gemm_shapes(cpu: &Device, timing: Timing) -> Vec<(f64, f64)> {
    let normal = Distribution::Normal(0.0, 1.0);
    GEMM_SHAPES
        .iter()
        .map(|&(_, m, k, n, ta, tb)| {
            let a = if ta {
                Tensor::<2>::random([k, m], normal, cpu).transpose()
            } else {
                Tensor::<2>::random([m, k], normal, cpu)
            };
            let b = if tb {
                Tensor::<2>::random([n, k], normal, cpu).transpose()
            } else {
                Tensor::<2>::random([k, n], normal, cpu)
            };
            let rate = || matmul_gflops(&a, &b, timing);
            // A work measure of 0 below a threshold of 1: one thread.
            (
                ember_runtime::ops::threads::serial_below(0, 1, rate),
                rate(),
            )
        })
        .collect()
}

struct Row {
    name: String,
    what: String,
    ember: Measured,
    /// Training-step FLOPs, for the fraction of peak.
    flops: Option<f64>,
}

/// Ember's side of the suite on `plain` (a device without autodiff):
/// training steps run on `plain.autodiff()`, encoding on `plain`.
fn workloads(
    model_dir: &Path,
    plain: &Device,
    timing: Timing,
    selection: &Selection,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let device = plain.clone().autodiff();
    device.seed(0);
    let normal = Distribution::Normal(0.0, 1.0);

    for h in [64, 256, 1024] {
        for b in [32, 512] {
            let name = format!("mlp_h{h}_b{b}");
            if !selection.wants(&name) {
                continue;
            }
            let mut model = Some(MlpConfig::new(vec![16, h, h, 1]).init(&device));
            let mut optimizer = ember_runtime::optim::adamw(0.01).init();
            let x = Tensor::<2>::random([b, 16], normal, &device);
            let y = Tensor::<2>::random([b, 1], normal, &device);
            let ember = timed(timing, || {
                let m = model.take().expect(PUT_BACK);
                let loss = mse(m.forward(x.clone()), y.clone());
                let grads = GradientsParams::from_grads(loss.backward(), &m);
                model = Some(optimizer.step(1e-4, m, grads));
                let _ = loss.into_scalar::<f32>();
            });
            let weights = 16 * h + h * h + h;
            eprintln!("mlp h={h} b={b}: {:.3} ms", ember.seconds * 1e3);
            rows.push(Row {
                name,
                what: format!("MLP 16→{h}→{h}→1, batch {b}: training step"),
                ember,
                flops: Some(step_flops(weights, b)),
            });
        }
    }

    if selection.wants("residual") {
        let (w, blocks, b) = (1024, 32, 256);
        let mut model = Some(
            ResidualMlpConfig::new(w, w, 1, blocks)
                .with_batch_norm(false)
                .init(&device),
        );
        let mut optimizer = ember_runtime::optim::adamw(0.01).init();
        let x = Tensor::<2>::random([b, w], normal, &device);
        let y = Tensor::<2>::random([b, 1], normal, &device);
        // The same timing rule as every workload and as PyTorch's side.
        let ember = timed(timing, || {
            let m = model.take().expect(PUT_BACK);
            let loss = mse(m.forward(x.clone()), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            model = Some(optimizer.step(1e-4, m, grads));
            let _ = loss.into_scalar::<f32>();
        });
        eprintln!("residual: {:.1} ms", ember.seconds * 1e3);
        rows.push(Row {
            name: "residual".into(),
            what: format!("residual MLP, {blocks} blocks of width {w}, batch {b}: training step"),
            ember,
            flops: Some(step_flops(w * w * (2 * blocks + 1) + w, b)),
        });
    }

    // The encoder is loaded only when an encode workload is selected.
    let encodes: Vec<usize> = [1, 32]
        .into_iter()
        .filter(|n| selection.wants(&format!("encode_b{n}")))
        .collect();
    if !encodes.is_empty() {
        let encoder = SentenceEncoder::from_dir(model_dir, plain).map_err(|e| e.to_string())?;
        for n in encodes {
            let batch = &SENTENCES[..n];
            let mut failed = None;
            let ember = timed(timing, || {
                if let Err(e) = encoder.encode(batch, n) {
                    failed = Some(e.to_string());
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
            eprintln!("encode b={n}: {:.2} ms", ember.seconds * 1e3);
            rows.push(Row {
                name: format!("encode_b{n}"),
                what: format!("MiniLM encode, batch {n}"),
                ember,
                flops: None,
            });
        }
    }

    if selection.wants("lora_step") {
        let encoder = SentenceEncoder::from_dir(model_dir, &device).map_err(|e| e.to_string())?;
        let lora = LoraConfig::new(8)
            .with_alpha(16.0)
            .with_target_modules(vec!["query".into(), "value".into()]);
        let bert = encoder.model().clone().with_lora(&lora, &device);
        let mut model = Some(ember_runtime::params::materialize(SentenceClassifier::new(
            bert, 8, &device,
        )));
        let mut optimizer = ember_runtime::optim::adamw(0.01).init();
        let (b, tokens) = (16, 64);
        let ids =
            Tensor::<2, Int>::random([b, tokens], Distribution::Uniform(1000.0, 29000.0), &device);
        let mask = Tensor::<2>::ones([b, tokens], &device);
        let labels = Tensor::<1, Int>::from_data(
            TensorData::new((0..b as i64).map(|i| i % 8).collect::<Vec<_>>(), [b]),
            &device,
        );
        let batch = (ids, mask, labels);
        let ember = timed(timing, || {
            let m = model.take().expect(PUT_BACK);
            let (out, grads) = forward_backward(&m, &batch, Strategy::None, 1.0);
            model = Some(optimizer.step(1e-4, m, grads));
            let _ = out.loss.into_scalar::<f32>();
        });
        eprintln!("lora step: {:.1} ms", ember.seconds * 1e3);
        rows.push(Row {
            name: "lora_step".into(),
            what: format!(
                "MiniLM + LoRA r=8 (query, value) + head, batch {b}, {tokens} tokens: training step"
            ),
            ember,
            flops: None,
        });
    }
    Ok(rows)
}

/// One round: Ember's side, then PyTorch's, back to back.
struct Round {
    rows: Vec<Row>,
    /// Burn flex's (1 thread, all threads) rate for each of [`GEMM_SHAPES`].
    shapes: Option<Vec<(f64, f64)>>,
    /// Burn flex's best square matmul rate (GFLOP/s).
    flex_gflops: f64,
    /// The PyTorch script's output.
    torch: serde_json::Value,
}

/// A speed target of a workload (BENCHMARKS.md states them): Ember's
/// steps per second at least this many times PyTorch's, Ember's time at most
/// this fraction of PyTorch's, or Ember's FLOP rate at least this fraction of
/// the machine's reachable peak (the faster of the two GEMM probes).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Speedup(f64),
    TimeShare(f64),
    PeakShare(f64),
}

/// The targets each workload is held to.
fn targets(workload: &str) -> &'static [Target] {
    match workload {
        "mlp_h64_b32" | "mlp_h64_b512" => &[Target::Speedup(1.5)],
        "mlp_h1024_b32" => &[Target::Speedup(1.0)],
        "mlp_h1024_b512" => &[Target::Speedup(1.0), Target::PeakShare(0.7)],
        "residual" => &[Target::PeakShare(0.7)],
        "encode_b1" => &[Target::TimeShare(0.8)],
        "encode_b32" | "lora_step" => &[Target::TimeShare(1.0)],
        _ => &[],
    }
}

/// The machine's reachable f32 GEMM peak: the higher of the two probes
/// (PyTorch's BLAS, Burn flex), and which one it is. PyTorch's BLAS is
/// usually the faster, but not on every CPU: MKL runs its AVX2 kernels on
/// AMD's AVX-512 processors, where flex's run-time-dispatched AVX-512
/// kernels reach twice its rate, and a share of PyTorch's probe would then
/// exceed 100 %. Without a PyTorch side, flex's probe.
fn reachable_peak(torch_gflops: f64, flex_gflops: f64) -> (f64, &'static str) {
    if torch_gflops.is_finite() && !(flex_gflops > torch_gflops) {
        (torch_gflops, "PyTorch's BLAS")
    } else {
        (flex_gflops, "Burn flex")
    }
}

/// Whether `target` is met at a speed ratio (PyTorch's time over Ember's)
/// and a share of the probe's rate, and the text saying so and by how much;
/// `None` for whether when a figure is missing (no PyTorch side for a
/// ratio, no probe for a share of the peak).
fn verdict(target: Target, speed_ratio: f64, peak_share: Option<f64>) -> (Option<bool>, String) {
    let (goal, value, met) = match target {
        Target::Speedup(x) => (
            format!("≥ {x:.1}×"),
            format!("{speed_ratio:.2}×"),
            speed_ratio >= x,
        ),
        Target::TimeShare(x) => (
            format!("time ≤ {x:.1}× PyTorch's"),
            format!("{:.2}×", 1.0 / speed_ratio),
            1.0 / speed_ratio <= x,
        ),
        Target::PeakShare(x) => {
            let share = peak_share.unwrap_or(f64::NAN);
            (
                format!("≥ {:.0} % of peak", 100.0 * x),
                format!("{:.1} %", 100.0 * share),
                share >= x,
            )
        }
    };
    let known = match target {
        Target::PeakShare(_) => peak_share.is_some_and(f64::is_finite),
        _ => speed_ratio.is_finite() && speed_ratio > 0.0,
    };
    if !known {
        return (None, format!("{goal}: no figure"));
    }
    (
        Some(met),
        format!("{goal}: {} ({value})", if met { "met" } else { "missed" }),
    )
}

/// Runs Ember's workloads, its GEMM probes and then the PyTorch script once.
fn round(
    model_dir: &Path,
    timing: Timing,
    torch_script: &Path,
    selection: &Selection,
    threads: usize,
) -> Result<Round, String> {
    let cpu = ember_runtime::device::cpu();
    let normal = Distribution::Normal(0.0, 1.0);
    let rows = workloads(model_dir, &cpu, timing, selection)?;
    let shapes = selection
        .wants("gemm_shapes")
        .then(|| gemm_shapes(&cpu, timing));
    if let (true, None, Some(only)) = (rows.is_empty(), &shapes, &selection.only) {
        return Err(format!(
            "--only {only}: no workload's name contains it (mlp_h64_b32 … mlp_h1024_b512, residual, encode_b1, encode_b32, lora_step, gemm_shapes)"
        ));
    }

    // Burn flex's best f32 matmul rate, for comparison with PyTorch's BLAS.
    let mut flex_gflops = 0.0f64;
    for n in [256, 512, 1024, 2048] {
        let a = Tensor::<2>::random([n, n], normal, &cpu);
        let b = Tensor::<2>::random([n, n], normal, &cpu);
        flex_gflops = flex_gflops.max(matmul_gflops(&a, &b, timing));
    }

    let mut args = [
        arg("--model", model_dir.display()),
        arg("--threads", threads),
        arg("--warmup", timing.warmup),
        arg("--min-iters", timing.min_iters),
        arg("--seconds", timing.seconds),
    ]
    .concat();
    if selection.quick {
        args.push("--quick".into());
    }
    if let Some(only) = &selection.only {
        args.extend(arg("--only", only));
    }
    if shapes.is_some() {
        args.push("--gemm-shapes".into());
    }
    let torch = TorchSide {
        script: torch_script,
        needs: "torch, transformers, peft and sentence-transformers",
    }
    .run(&args, Some(&SENTENCES.join("\n")), &[])?;
    Ok(Round {
        rows,
        shapes,
        flex_gflops,
        torch,
    })
}

/// Runs the suite `rounds` times, Ember's side and PyTorch's alternating;
/// returns the table of medians (and writes JSON to `json` if given).
pub fn speed(
    model_dir: &Path,
    timing: Timing,
    torch_script: &Path,
    rounds: usize,
    json: Option<&PathBuf>,
    selection: &Selection,
) -> Result<String, String> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rounds = rounds.max(1);
    let mut done: Vec<Round> = Vec::with_capacity(rounds);
    for r in 0..rounds {
        if rounds > 1 {
            eprintln!("round {} of {rounds}", r + 1);
        }
        done.push(round(model_dir, timing, torch_script, selection, threads)?);
    }
    let last = done.last().expect("at least one round");
    let torch_gflops = median(
        done.iter()
            .map(|r| r.torch["gemm_gflops"].as_f64().unwrap_or(f64::NAN))
            .collect(),
    );
    let flex_gflops = median(done.iter().map(|r| r.flex_gflops).collect());
    let (peak, peak_from) = reachable_peak(torch_gflops, flex_gflops);

    let mut table = format!(
        "speed: {threads} threads; median per call{}; ratio = PyTorch time / Ember time (above 1: Ember is faster)\n\
         peak-GEMM probe (best f32 square matmul, 256–2048): PyTorch {torch_gflops:.1} GFLOP/s, Burn flex {flex_gflops:.1} GFLOP/s ({:.0} % of PyTorch's); \
         peak = the higher, {peak:.1} GFLOP/s ({peak_from})\n",
        if rounds > 1 {
            format!(
                ", median of {rounds} rounds (Ember's side, then PyTorch's); the ratio is the median of the rounds' ratios, lowest–highest in brackets"
            )
        } else {
            String::new()
        },
        100.0 * flex_gflops / torch_gflops
    );
    if !last.rows.is_empty() {
        table.push_str(
            "\n| workload | Ember (ms) | PyTorch (ms) | speed ratio | Ember GFLOP/s (% of peak) | Ember allocations/step (MiB) | target |\n\
             |---|---:|---:|---:|---:|---:|---|\n",
        );
    }
    let mut json_rows = Vec::new();
    for (i, r) in last.rows.iter().enumerate() {
        let ember_s: Vec<f64> = done.iter().map(|d| d.rows[i].ember.seconds).collect();
        let torch_s: Vec<f64> = done
            .iter()
            .map(|d| d.torch["seconds"][&r.name].as_f64().unwrap_or(f64::NAN))
            .collect();
        let ratios: Vec<f64> = ember_s.iter().zip(&torch_s).map(|(e, t)| t / e).collect();
        let (e, t, ratio) = (
            median(ember_s.clone()),
            median(torch_s.clone()),
            median(ratios.clone()),
        );
        let (lo, hi) = ratios
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        let rate = r.flops.map(|f| f / e / 1e9);
        let verdicts: Vec<(Option<bool>, String)> = targets(&r.name)
            .iter()
            .map(|&x| verdict(x, ratio, rate.map(|g| g / peak)))
            .collect();
        let target_text = if verdicts.is_empty() {
            "—".to_string()
        } else {
            verdicts
                .iter()
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        table.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.2}×{} | {} | {} ({:.1}) | {target_text} |\n",
            r.what,
            e * 1e3,
            t * 1e3,
            ratio,
            if rounds > 1 {
                format!(" ({lo:.2}–{hi:.2})")
            } else {
                String::new()
            },
            rate.map_or("—".into(), |g| format!(
                "{g:.1} ({:.0} %)",
                100.0 * g / peak
            )),
            r.ember.allocations,
            r.ember.allocated_bytes as f64 / 1048576.0,
        ));
        json_rows.push(serde_json::json!({
            "workload": r.name, "what": r.what,
            "ember_seconds": e, "pytorch_seconds": t, "speed_ratio": ratio,
            "ember_seconds_per_round": ember_s, "pytorch_seconds_per_round": torch_s, "speed_ratio_per_round": ratios,
            "ember_gflops": rate, "allocations_per_call": r.ember.allocations, "allocated_bytes_per_call": r.ember.allocated_bytes,
            "targets": verdicts.iter().map(|(met, text)| serde_json::json!({ "target": text, "met": met })).collect::<Vec<_>>(),
        }));
    }
    let mut json_shapes = Vec::new();
    if last.shapes.is_some() {
        table.push_str(&format!(
            "\nThe workloads' matrix products alone (f32 GFLOP/s{}; ᵀ: a transposed view):\n\n\
             | product | m×k×n | flex, 1 thread | PyTorch, 1 thread | flex, {threads} threads | PyTorch, {threads} threads | flex / PyTorch, {threads} threads |\n\
             |---|---|---:|---:|---:|---:|---:|\n",
            if rounds > 1 { ", medians of the rounds" } else { "" }
        ));
        for (i, &(name, m, k, n, ta, tb)) in GEMM_SHAPES.iter().enumerate() {
            let of = |f: &dyn Fn(&Round) -> f64| median(done.iter().map(f).collect());
            let flex1 = of(&|d| d.shapes.as_ref().map_or(f64::NAN, |s| s[i].0));
            let flex_n = of(&|d| d.shapes.as_ref().map_or(f64::NAN, |s| s[i].1));
            let torch1 = of(&|d| {
                d.torch["gemm_shapes"][name]["1"]
                    .as_f64()
                    .unwrap_or(f64::NAN)
            });
            let torch_n = of(&|d| {
                d.torch["gemm_shapes"][name][threads.to_string()]
                    .as_f64()
                    .unwrap_or(f64::NAN)
            });
            let op = format!(
                "{}·{}",
                if ta { "Aᵀ" } else { "A" },
                if tb { "Bᵀ" } else { "B" }
            );
            table.push_str(&format!(
                "| {name} ({op}) | {m}×{k}×{n} | {flex1:.1} | {torch1:.1} | {flex_n:.1} | {torch_n:.1} | {:.0} % |\n",
                100.0 * flex_n / torch_n
            ));
            json_shapes.push(serde_json::json!({
                "product": name, "m": m, "k": k, "n": n, "lhs_transposed": ta, "rhs_transposed": tb,
                "flex_gflops_1_thread": flex1, "pytorch_gflops_1_thread": torch1,
                "flex_gflops": flex_n, "pytorch_gflops": torch_n,
            }));
        }
    }
    if let Some(path) = json {
        let doc = serde_json::json!({
            "workload": "speed", "threads": threads, "rounds": rounds, "cpu": cpu_model(), "cpu_flags": cpu_flags(),
            "pytorch": last.torch["system"], "peak_gemm_gflops_pytorch": torch_gflops, "peak_gemm_gflops_flex": flex_gflops,
            "peak_gemm_gflops": peak, "rows": json_rows,
            "gemm_shapes": json_shapes,
        });
        std::fs::write(
            path,
            serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(table)
}

/// `model name` from /proc/cpuinfo (empty elsewhere).
fn cpu_model() -> String {
    cpuinfo_field("model name")
}

/// The SIMD flags of /proc/cpuinfo that matter for GEMM.
fn cpu_flags() -> String {
    let flags = cpuinfo_field("flags");
    flags
        .split_whitespace()
        .filter(|f| {
            [
                "avx",
                "avx2",
                "fma",
                "f16c",
                "avx512f",
                "avx512bw",
                "avx512_bf16",
                "avx512fp16",
                "amx_bf16",
                "neon",
                "asimd",
            ]
            .contains(f)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn cpuinfo_field(name: &str) -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// `ember-bench device`: the same Ember workloads on the CPU backend and on
/// `backend`, in one run; ratio = CPU time / device time.
pub fn devices(
    model_dir: &Path,
    backend: ember_runtime::device::Backend,
    timing: Timing,
    selection: &Selection,
    json: Option<&PathBuf>,
) -> Result<String, String> {
    let gpu = ember_runtime::device::init(backend).map_err(|e| e.to_string())?;
    let adapter = ember_runtime::device::description(backend).unwrap_or_else(|| format!("{gpu:?}"));
    eprintln!("on {backend} ({adapter}):");
    let on_device = workloads(model_dir, &gpu, timing, selection)?;
    eprintln!("on the CPU backend:");
    let on_cpu = workloads(model_dir, &ember_runtime::device::cpu(), timing, selection)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut table = format!(
        "device: {backend} ({adapter}) against the CPU backend ({threads} threads, {}); median per call;\n\
         ratio = CPU time / {backend} time (above 1: the device is faster)\n\n\
         | workload | CPU (ms) | {backend} (ms) | ratio |\n|---|---:|---:|---:|\n",
        cpu_model()
    );
    let mut json_rows = Vec::new();
    for (d, c) in on_device.iter().zip(&on_cpu) {
        let (td, tc) = (d.ember.seconds, c.ember.seconds);
        table.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.2}× |\n",
            d.what,
            tc * 1e3,
            td * 1e3,
            tc / td
        ));
        json_rows.push(serde_json::json!({"workload": d.name, "what": d.what, "cpu_seconds": tc, "device_seconds": td, "ratio": tc / td}));
    }
    if let Some(path) = json {
        let doc = serde_json::json!({
            "workload": "device", "backend": backend.name(), "device": adapter, "threads": threads, "cpu": cpu_model(), "rows": json_rows,
        });
        std::fs::write(
            path,
            serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_say_whether_they_are_met_and_by_how_much() {
        assert_eq!(
            verdict(Target::Speedup(1.5), 3.49, None),
            (Some(true), "≥ 1.5×: met (3.49×)".into())
        );
        assert_eq!(
            verdict(Target::Speedup(1.0), 0.88, Some(0.61)),
            (Some(false), "≥ 1.0×: missed (0.88×)".into())
        );
        // A speed ratio of 1.25 is Ember in 0.80× PyTorch's time.
        assert_eq!(
            verdict(Target::TimeShare(0.8), 1.25, None),
            (Some(true), "time ≤ 0.8× PyTorch's: met (0.80×)".into())
        );
        assert_eq!(
            verdict(Target::TimeShare(1.0), 0.79, None),
            (Some(false), "time ≤ 1.0× PyTorch's: missed (1.27×)".into())
        );
        assert_eq!(
            verdict(Target::PeakShare(0.7), 1.05, Some(0.56)),
            (Some(false), "≥ 70 % of peak: missed (56.0 %)".into())
        );
        assert_eq!(
            verdict(Target::PeakShare(0.7), f64::NAN, Some(0.71)),
            (Some(true), "≥ 70 % of peak: met (71.0 %)".into())
        );
        // Just below the target reads as below it, not as "70 %".
        assert_eq!(
            verdict(Target::PeakShare(0.7), 2.68, Some(0.697)),
            (Some(false), "≥ 70 % of peak: missed (69.7 %)".into())
        );
        // Without PyTorch's side there is no ratio; without a probe, no share.
        assert_eq!(verdict(Target::Speedup(1.5), f64::NAN, None).0, None);
        assert_eq!(
            verdict(Target::PeakShare(0.7), f64::NAN, Some(f64::NAN)).0,
            None
        );
        // Every workload with a target is one the bench runs.
        for w in [
            "mlp_h64_b32",
            "mlp_h64_b512",
            "mlp_h1024_b32",
            "mlp_h1024_b512",
            "residual",
            "encode_b1",
            "encode_b32",
            "lora_step",
        ] {
            assert!(!targets(w).is_empty(), "{w}");
        }
        assert!(targets("mlp_h256_b32").is_empty());
    }

    #[test]
    fn the_peak_is_the_faster_probe() {
        assert_eq!(reachable_peak(290.4, 234.9), (290.4, "PyTorch's BLAS"));
        assert_eq!(reachable_peak(192.7, 441.8), (441.8, "Burn flex"));
        assert_eq!(reachable_peak(f64::NAN, 441.8), (441.8, "Burn flex"));
    }
}
