//! `ember-bench`: Ember's benchmarks, side by side with the peers users would
//! pick instead, each in the same run on the same machine (the figures of
//! BENCHMARKS.md). Not part of the shipped `ember` binary.
//!
//! * `ember-bench speed` — training-step and encode speed against PyTorch,
//!   with a peak-GEMM probe and allocations per step;
//! * `ember-bench device --device wgpu` — the same workloads on a GPU
//!   backend and on the CPU backend, with ratios;
//! * `ember-bench embed --model DIR` — sentence embeddings against
//!   sentence-transformers on torch CPU;
//! * `ember-bench finetune` — the default `ember finetune` job against
//!   transformers + peft;
//! * `ember-bench memory` — step time and peak memory under fp32/f16/bf16
//!   and recomputation against PyTorch autocast and torch.utils.checkpoint.
//!
//! The PyTorch side of each is a script of `tools/reference/` (its Python
//! packages: `tools/reference/requirements.txt`); run from the repository
//! root.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ember_runtime::memory::Counting;

/// Every allocation goes through a counter, so the workloads can report
/// peak heap bytes and allocations per step.
#[global_allocator]
pub static HEAP: Counting<std::alloc::System> = Counting::new(std::alloc::System);

mod embed;
mod finetune;
mod measure;
mod memory;
mod reference;
mod sentences;
mod speed;

#[derive(Parser)]
#[command(
    name = "ember-bench",
    version,
    about = "Ember's benchmarks, side by side with PyTorch in the same run."
)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

/// What `ember-bench speed` and `ember-bench device` share: the model and
/// how long each workload is timed.
#[derive(clap::Args)]
struct SuiteArgs {
    /// Model directory (default: all-MiniLM-L6-v2 from the model cache).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Untimed calls before timing each workload.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// At least this many timed calls per workload (the median is reported)…
    #[arg(long, default_value_t = 5)]
    min_iters: usize,
    /// …and at least this many seconds per workload (at most 1000 calls).
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Skip the 32-block residual MLP (the slowest workload).
    #[arg(long)]
    quick: bool,
    /// Only the workloads whose name contains this (`mlp`, `mlp_h1024`,
    /// `residual`, `encode`, `lora_step`, `gemm_shapes`: the workloads'
    /// matrix products alone, on one thread and on all; the names of the
    /// JSON output).
    #[arg(long)]
    only: Option<String>,
}

impl SuiteArgs {
    fn timing(&self) -> speed::Timing {
        speed::Timing {
            warmup: self.warmup,
            min_iters: self.min_iters,
            seconds: self.seconds,
        }
    }

    fn selection(&self) -> speed::Selection {
        speed::Selection {
            quick: self.quick,
            only: self.only.clone(),
        }
    }
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
enum Workload {
    /// Training-step and encode speed against PyTorch on the same CPU: MLPs
    /// of three widths at two batch sizes, the 32-block residual MLP, MiniLM
    /// encode and a LoRA step, with a peak-GEMM probe and allocations per
    /// step (run from the repository root).
    Speed {
        #[command(flatten)]
        suite: SuiteArgs,
        /// The PyTorch side.
        #[arg(long, default_value = "tools/reference/bench_speed_torch.py")]
        torch_script: PathBuf,
        /// Alternate Ember's and PyTorch's runs this many times and report
        /// medians (and the spread of the ratios): on a machine whose speed
        /// drifts, a single pair of runs can be minutes apart.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
        rounds: u32,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The default fine-tuning job against transformers + peft: time, peak
    /// RSS, held-out accuracy (run from the repository root).
    Finetune {
        /// The `ember` binary [default: the one beside this binary, e.g.
        /// target/release/ember after `cargo build --release -p ember-cli`].
        #[arg(long)]
        ember: Option<PathBuf>,
        /// Model directory (default: all-MiniLM-L6-v2 from the model cache).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Epochs on each side.
        #[arg(long, default_value_t = 4)]
        epochs: usize,
        /// The PyTorch side.
        #[arg(long, default_value = "tools/reference/finetune_torch.py")]
        torch_script: PathBuf,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Step time and peak memory under fp32, f16, bf16 and recomputation,
    /// against PyTorch autocast and torch.utils.checkpoint.
    Memory {
        /// Model directory (default: all-MiniLM-L6-v2 from the model cache).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Timed steps per configuration (the median is reported).
        #[arg(long, default_value_t = 3)]
        iters: usize,
        /// Untimed warm-up steps.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Only the MiniLM rows.
        #[arg(long)]
        quick: bool,
        /// Only these configurations, as PRECISION/RECOMPUTE (e.g.
        /// `f16/balanced`); repeatable [default: all nine].
        #[arg(long = "only")]
        only: Vec<String>,
        /// The PyTorch side.
        #[arg(long, default_value = "tools/reference/bench_memory_torch.py")]
        torch_script: PathBuf,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The speed suite's workloads (training steps, MiniLM encode, LoRA step)
    /// on a GPU backend and on the CPU backend, in one run, with ratios.
    Device {
        /// The device to compare with the CPU backend (wgpu, vulkan, metal,
        /// cuda; it must be compiled in).
        #[arg(long)]
        device: String,
        #[command(flatten)]
        suite: SuiteArgs,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Sentence-embedding latency (batch 1 and 32), throughput, peak RSS.
    Embed {
        /// Model directory.
        #[arg(long)]
        model: PathBuf,
        /// Timed iterations (the median is reported).
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// Untimed warm-up iterations.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// The PyTorch side.
        #[arg(long, default_value = "tools/reference/bench_torch.py")]
        torch_script: PathBuf,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// all-MiniLM-L6-v2 from the model cache (fetched when absent) unless a
/// directory is given.
fn model_dir(model: Option<PathBuf>) -> Result<PathBuf, String> {
    use ember_models::fetch::{ALL_MINILM_L6_V2, cache_dir};
    match model {
        Some(dir) => Ok(dir),
        None => cache_dir()
            .and_then(|cache| {
                ALL_MINILM_L6_V2.fetch(&cache, &mut |line| eprintln!("ember-bench: {line}"))
            })
            .map_err(|e| format!("{e} (or pass --model DIR)")),
    }
}

/// The `ember` binary beside this one.
fn sibling_ember() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let ember = exe.with_file_name(format!("ember{}", std::env::consts::EXE_SUFFIX));
    if ember.is_file() {
        Ok(ember)
    } else {
        Err(format!(
            "{}: no `ember` binary here; build it (cargo build --release -p ember-cli) or pass --ember PATH",
            ember.display()
        ))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Steps free and allocate the same tensor sizes again: keep that memory
    // in the heap, as `ember` does.
    ember_runtime::memory::reuse_freed_memory();
    let result = match cli.workload {
        Workload::Speed {
            suite,
            torch_script,
            rounds,
            json,
        } => {
            let (timing, selection) = (suite.timing(), suite.selection());
            model_dir(suite.model).and_then(|m| {
                speed::speed(
                    &m,
                    timing,
                    &torch_script,
                    rounds as usize,
                    json.as_ref(),
                    &selection,
                )
            })
        }
        Workload::Device {
            device,
            suite,
            json,
        } => {
            let (timing, selection) = (suite.timing(), suite.selection());
            device
                .parse()
                .map_err(|e: ember_runtime::Error| e.to_string())
                .and_then(|backend| model_dir(suite.model).map(|m| (backend, m)))
                .and_then(|(backend, m)| {
                    speed::devices(&m, backend, timing, &selection, json.as_ref())
                })
        }
        Workload::Embed {
            model,
            iters,
            warmup,
            torch_script,
            json,
        } => embed::embed(&model, iters, warmup, &torch_script, json.as_ref()),
        Workload::Memory {
            model,
            iters,
            warmup,
            quick,
            only,
            torch_script,
            json,
        } => model_dir(model).and_then(|m| {
            memory::memory(
                &m,
                iters,
                warmup,
                &torch_script,
                json.as_ref(),
                quick,
                &only,
            )
        }),
        Workload::Finetune {
            ember,
            model,
            epochs,
            torch_script,
            json,
        } => ember
            .map_or_else(sibling_ember, Ok)
            .and_then(|ember| model_dir(model).map(|m| (ember, m)))
            .and_then(|(ember, m)| {
                finetune::finetune(&ember, &m, epochs, &torch_script, json.as_ref())
            }),
    };
    match result {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = writeln!(stdout, "{out}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("ember-bench: {message}");
            ExitCode::FAILURE
        }
    }
}
