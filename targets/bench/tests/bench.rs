//! `ember-bench` as a user runs it: bad settings are one clear line and a
//! non-zero exit before any work.

use std::process::Command;

fn ember_bench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ember-bench"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn speed_rejects_what_it_cannot_run() {
    let (ok, out, err) = ember_bench(&[
        "speed",
        "--model",
        "/nonexistent",
        "--only",
        "no_such_workload",
    ]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains("--only no_such_workload: no workload's name contains it"),
        "{err}"
    );
    let (ok, _, err) = ember_bench(&["speed", "--model", "/nonexistent", "--rounds", "0"]);
    assert!(!ok && err.contains("--rounds"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn finetune_names_a_missing_ember_binary() {
    let (ok, out, err) = ember_bench(&[
        "finetune",
        "--ember",
        "/nonexistent/ember",
        "--model",
        "/nonexistent",
    ]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.starts_with("ember-bench: /nonexistent/ember:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
