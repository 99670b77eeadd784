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
