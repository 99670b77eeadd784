//! `ember-bench finetune`: the default `ember finetune` job against the same
//! job in transformers + peft (`tools/reference/finetune_torch.py`): wall
//! time, training time, peak RSS and held-out accuracy, each side in its own
//! process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::reference::{TorchSide, arg};

/// `ember finetune` (defaults; the binary `ember`) against the same job in
/// transformers + peft.
pub fn finetune(
    ember: &Path,
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
    let started = Instant::now();
    let run = Command::new(ember)
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
        .map_err(|e| format!("{}: {e}", ember.display()))?;
    let ember_wall = started.elapsed().as_secs_f64();
    if !run.status.success() {
        let _ = std::fs::remove_dir_all(&out);
        return Err(format!(
            "ember finetune failed: {}",
            String::from_utf8_lossy(&run.stderr).trim()
        ));
    }
    // The run's figures, from the summary it writes beside its metrics.
    let summary_path = out.join("summary.json");
    let summary = std::fs::read_to_string(&summary_path)
        .map_err(|e| format!("{}: {e}", summary_path.display()))
        .and_then(|text| {
            serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| format!("{}: {e}", summary_path.display()))
        });
    let _ = std::fs::remove_dir_all(&out);
    let summary = summary?;
    let number = |key: &str| {
        summary[key]
            .as_f64()
            .ok_or_else(|| format!("ember finetune's summary.json has no number `{key}`"))
    };
    let steps = number("last_step")? - number("first_step")?;
    let train_seconds = number("train_seconds")?;
    let ember = serde_json::json!({
        "system": format!("ember {} (burn-flex)", env!("CARGO_PKG_VERSION")),
        "steps": steps,
        "wall_seconds": ember_wall,
        "train_seconds": train_seconds,
        "seconds_per_step": train_seconds / steps.max(1.0),
        "peak_rss_mib": number("peak_rss_mib")?,
        "accuracy_before": number("accuracy_before")?,
        "accuracy_after": number("accuracy_after")?,
    });

    let started = Instant::now();
    let mut torch = TorchSide {
        script: torch_script,
        needs: "torch, transformers and peft",
    }
    .run(
        &[
            arg("--model", model.display()),
            arg("--train", train),
            arg("--test", test),
            arg("--threads", threads),
            arg("--epochs", epochs),
        ]
        .concat(),
        None,
        &[],
    )?;
    let torch_wall = started.elapsed().as_secs_f64();
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
