//! Benchmarks side by side with PyTorch, in one run on the same machine:
//!
//! * `ember bench embed`: sentence-embedding latency, throughput and peak
//!   memory, Ember and sentence-transformers on torch CPU (same sentences,
//!   threads, warm-up and iteration count).
//! * `ember bench finetune`: the default `ember finetune` job against the
//!   same job in transformers + peft (`tools/reference/finetune_torch.py`):
//!   wall time, training time, peak RSS and held-out accuracy, each side in
//!   its own process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use burn::tensor::Device;
use ember_models::sentence::SentenceEncoder;

/// 32 on-device assistant requests of everyday length.
const SENTENCES: [&str; 32] = [
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
pub fn embed(model: &Path, iters: usize, warmup: usize, torch_script: &Path, json: Option<&PathBuf>) -> Result<String, String> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let encoder = SentenceEncoder::from_dir(model, &Device::flex()).map_err(|e| e.to_string())?;
    let time = |batch: &[&str]| -> Result<f64, String> {
        for _ in 0..warmup {
            encoder.encode(batch, batch.len()).map_err(|e| e.to_string())?;
        }
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters.max(1) {
            let t = Instant::now();
            encoder.encode(batch, batch.len()).map_err(|e| e.to_string())?;
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
        .args(["--model", &model.display().to_string(), "--threads", &threads.to_string()])
        .args(["--iters", &iters.to_string(), "--warmup", &warmup.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("python3 {}: {e}", torch_script.display()))?;
    child.stdin.take().expect("piped").write_all(SENTENCES.join("\n").as_bytes()).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{} failed (torch and sentence-transformers from tools/reference/requirements.txt are needed): {}",
            torch_script.display(),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ));
    }
    let torch: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("torch side output: {e}"))?;

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
        table.push_str(&format!("{label:<22} {e:>12.2} {t:>12.2} {:>7.2}×\n", e / t));
    }
    table.push_str("ratio = ember / pytorch (below 1 is better for latency and memory, above 1 for throughput)");
    if let Some(path) = json {
        let doc = serde_json::json!({"workload": "embed", "threads": threads, "iters": iters, "ember": ember, "pytorch": torch});
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(table)
}

/// The number after `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> Option<f64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    rest.split(|c: char| !(c.is_ascii_digit() || c == '.')).find(|s| !s.is_empty())?.parse().ok()
}

/// `ember finetune` (defaults) against the same job in transformers + peft.
pub fn finetune(model: &Path, epochs: usize, torch_script: &Path, json: Option<&PathBuf>) -> Result<String, String> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let (train, test) = ("data/intents/train.jsonl", "data/intents/test.jsonl");
    let out = std::env::temp_dir().join(format!("ember-bench-finetune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let run = Command::new(&exe)
        .args(["finetune", "--quiet", "--model", &model.display().to_string(), "--train", train, "--test", test])
        .args(["--epochs", &epochs.to_string(), "--out", &out.display().to_string()])
        .output()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let ember_wall = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    if !run.status.success() {
        return Err(format!("ember finetune failed: {}", String::from_utf8_lossy(&run.stderr).trim()));
    }
    let parse = |prefix: &str| number_after(&stdout, prefix).ok_or_else(|| format!("no `{prefix}` in ember finetune's output:\n{stdout}"));
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
        .args(["--model", &model.display().to_string(), "--train", train, "--test", test])
        .args(["--threads", &threads.to_string(), "--epochs", &epochs.to_string()])
        .output()
        .map_err(|e| format!("python3 {}: {e}", torch_script.display()))?;
    let torch_wall = started.elapsed().as_secs_f64();
    if !run.status.success() {
        return Err(format!(
            "{} failed (torch, transformers and peft from tools/reference/requirements.txt are needed): {}",
            torch_script.display(),
            String::from_utf8_lossy(&run.stderr).lines().last().unwrap_or("")
        ));
    }
    let mut torch: serde_json::Value = serde_json::from_slice(&run.stdout).map_err(|e| format!("torch side output: {e}"))?;
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
        table.push_str(&format!("{label:<26} {e:>10.2} {t:>10.2} {:>7.2}×\n", e / t));
    }
    table.push_str("ratio = ember / pytorch; the training loop includes a held-out evaluation and a checkpoint per epoch on both sides");
    if let Some(path) = json {
        let doc = serde_json::json!({"workload": "finetune", "threads": threads, "epochs": epochs, "ember": ember, "pytorch": torch});
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(table)
}
