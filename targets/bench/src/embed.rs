//! `ember-bench embed`: sentence-embedding latency, throughput and peak
//! memory, Ember and sentence-transformers on torch CPU (same sentences,
//! threads, warm-up and iteration count).

use std::path::{Path, PathBuf};
use std::time::Instant;

use ember_models::sentence::SentenceEncoder;

use ember_runtime::memory::peak_rss_mib;

use crate::measure::median;
use crate::reference::{TorchSide, arg};
use crate::sentences::SENTENCES;

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
    let encoder = SentenceEncoder::from_dir(model, &ember_runtime::device::cpu())
        .map_err(|e| e.to_string())?;
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

    let torch = TorchSide {
        script: torch_script,
        needs: "torch and sentence-transformers",
    }
    .run(
        &[
            arg("--model", model.display()),
            arg("--threads", threads),
            arg("--iters", iters),
            arg("--warmup", warmup),
        ]
        .concat(),
        Some(&SENTENCES.join("\n")),
        &[],
    )?;

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
