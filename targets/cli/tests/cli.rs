//! The `ember` binary end to end: output formats, and bad input giving one
//! clear message on stderr with a non-zero exit (never a panic).

use std::process::Command;

fn ember(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ember")).args(args).output().expect("runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn fixture(name: &str) -> String {
    format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn inspect_json_lists_every_tensor() {
    let (ok, out, err) = ember(&["inspect", "--format", "json", &fixture("schedules.safetensors")]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tensors = v["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 6);
    assert_eq!(tensors[0]["dtype"], "F64");
    assert_eq!(tensors[0]["shape"], serde_json::json!([40]));
    assert_eq!(v["total_bytes"], 6 * 320);
    assert_eq!(v["metadata"]["generator"], "tools/reference/training_core.py");
}

#[test]
fn inspect_text_has_totals() {
    let (ok, out, _) = ember(&["inspect", &fixture("schedules.safetensors")]);
    assert!(ok);
    assert!(out.contains("6 tensors, 1920 bytes"), "{out}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let readme = format!("{}/../../README.md", env!("CARGO_MANIFEST_DIR"));
    for (args, needle) in [
        (vec!["inspect", "/no/such/file.safetensors"], "/no/such/file.safetensors"),
        (vec!["inspect", readme.as_str()], "not a valid safetensors file"),
        (vec!["embed", "--model", "/no/such/dir", "hello"], "/no/such/dir: not found"),
    ] {
        let (ok, out, err) = ember(&args);
        assert!(!ok, "{args:?} must fail");
        assert!(out.is_empty(), "{args:?} printed {out}");
        assert!(err.starts_with("ember: ") && err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

fn minilm() -> String {
    let script = format!("{}/../../tools/fetch-models.sh", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(&script).output().expect("fetch-models.sh runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The main job, shortened to 2 epochs: held-out accuracy must rise from
/// chance (8 intents: 12.5 %) to at least 80 %, and the outputs must exist.
#[test]
fn finetune_raises_held_out_accuracy_and_writes_its_outputs() {
    let data = format!("{}/../../data/intents", env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("ember-finetune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let model = minilm();
    let args = [
        "finetune", "--quiet", "--epochs", "2", "--model", &model,
        "--train", &format!("{data}/train.jsonl"), "--test", &format!("{data}/test.jsonl"),
        "--out", out.to_str().unwrap(),
    ];
    let (ok, stdout, stderr) = ember(&args);
    assert!(ok, "{stderr}");
    let line = stdout.lines().find(|l| l.starts_with("held-out accuracy")).expect(&stdout);
    let numbers: Vec<f64> = line.split(|c: char| !(c.is_ascii_digit() || c == '.')).filter_map(|s| s.parse().ok()).collect();
    let (before, after) = (numbers[0], numbers[1]);
    assert!(before < 30.0 && after >= 80.0, "{line}");
    for file in ["adapter/adapter_model.safetensors", "adapter/adapter_config.json", "head.safetensors", "labels.json", "metrics.jsonl"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    assert_eq!(std::fs::read_dir(out.join("checkpoints")).unwrap().count(), 2);
    // Resuming a finished run trains no further and keeps the accuracy.
    let mut resume = args.to_vec();
    resume.push("--resume");
    let (ok, stdout2, stderr2) = ember(&resume);
    assert!(ok, "{stderr2}");
    assert!(stderr2.contains("resuming from"), "{stderr2}");
    let line2 = stdout2.lines().find(|l| l.starts_with("held-out accuracy")).unwrap();
    assert!(line2.contains(&format!("{after:.1} % after")), "{line2} vs {line}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn finetune_rejects_unknown_test_labels() {
    let dir = std::env::temp_dir().join(format!("ember-ft-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("train.jsonl"), "{\"text\":\"a\",\"label\":\"x\"}\n").unwrap();
    std::fs::write(dir.join("test.jsonl"), "{\"text\":\"b\",\"label\":\"y\"}\n").unwrap();
    let (ok, _, err) = ember(&[
        "finetune", "--quiet", "--model", "/nonexistent",
        "--train", dir.join("train.jsonl").to_str().unwrap(),
        "--test", dir.join("test.jsonl").to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(!ok);
    assert!(err.contains("test.jsonl:1") && err.contains("label `y`"), "{err}");
}
