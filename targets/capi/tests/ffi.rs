//! The exported functions called as C calls them: bad pointers, lengths,
//! paths and files give status codes and messages, never crashes; and a
//! digits MLP fine-tuned through them reaches the accuracy the C example
//! states.
// Calling `unsafe extern "C"` functions is what this test is about.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char};
use std::path::PathBuf;
use std::ptr::{null, null_mut};

use ember_capi::ffi::*;
use ember_capi::{
    EmberFitReport, EmberMlp, EmberMlpConfig, EmberStatus, EmberTrainConfig, EmberTrainer,
};

fn last_error() -> String {
    unsafe { CStr::from_ptr(ember_last_error()) }
        .to_str()
        .unwrap()
        .to_string()
}

/// Asserts `status` and that the last error contains `needle`.
#[track_caller]
fn expect(status: EmberStatus, want: EmberStatus, needle: &str) {
    let message = last_error();
    assert_eq!(status, want, "{message}");
    if want == EmberStatus::Ok {
        assert_eq!(message, "");
    } else {
        assert!(
            message.contains(needle),
            "{message:?} does not contain {needle:?}"
        );
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-capi-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn c_path(path: &std::path::Path) -> CString {
    CString::new(path.to_str().unwrap()).unwrap()
}

const HIDDEN: [usize; 1] = [8];

fn shape() -> EmberMlpConfig {
    EmberMlpConfig {
        input: 4,
        hidden: HIDDEN.as_ptr(),
        hidden_len: 1,
        classes: 3,
        dropout: 0.0,
        seed: 0,
    }
}

fn new_model(config: &EmberMlpConfig) -> *mut EmberMlp {
    let mut model = null_mut();
    expect(
        unsafe { ember_mlp_new(config, &mut model) },
        EmberStatus::Ok,
        "",
    );
    assert!(!model.is_null());
    model
}

#[test]
fn creation_rejects_null_and_invalid_configurations() {
    let mut model: *mut EmberMlp = std::ptr::dangling_mut();
    expect(
        unsafe { ember_mlp_new(null(), &mut model) },
        EmberStatus::NullPointer,
        "ember_mlp_new: `config` is NULL",
    );
    assert!(model.is_null(), "model_out is reset on failure");
    expect(
        unsafe { ember_mlp_new(&shape(), null_mut()) },
        EmberStatus::NullPointer,
        "`model_out` is NULL",
    );
    let cases: [(EmberMlpConfig, EmberStatus, &str); 5] = [
        (
            EmberMlpConfig {
                input: 0,
                ..shape()
            },
            EmberStatus::InvalidArgument,
            "input is 0",
        ),
        (
            EmberMlpConfig {
                classes: 0,
                ..shape()
            },
            EmberStatus::InvalidArgument,
            "classes is 0",
        ),
        (
            EmberMlpConfig {
                hidden: null(),
                ..shape()
            },
            EmberStatus::NullPointer,
            "config->hidden",
        ),
        (
            EmberMlpConfig {
                dropout: f32::NAN,
                ..shape()
            },
            EmberStatus::InvalidArgument,
            "dropout",
        ),
        (
            EmberMlpConfig {
                hidden_len: 1000,
                ..shape()
            },
            EmberStatus::InvalidArgument,
            "hidden layers",
        ),
    ];
    for (config, status, needle) in cases {
        expect(
            unsafe { ember_mlp_new(&config, &mut model) },
            status,
            needle,
        );
        assert!(model.is_null());
    }
    // No hidden layer: a NULL `hidden` is fine with `hidden_len` 0.
    let model = new_model(&EmberMlpConfig {
        hidden: null(),
        hidden_len: 0,
        ..shape()
    });
    let (mut input, mut classes) = (0usize, 0usize);
    expect(
        unsafe { ember_mlp_dims(model, &mut input, &mut classes) },
        EmberStatus::Ok,
        "",
    );
    assert_eq!((input, classes), (4, 3));
    unsafe { ember_mlp_free(model) };
    unsafe { ember_mlp_free(null_mut()) };
    unsafe { ember_trainer_free(null_mut()) };
}

#[test]
fn inference_checks_pointers_lengths_and_values() {
    let model = new_model(&shape());
    let mut x = [0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
    let mut out = [0f32; 6];
    unsafe {
        expect(
            ember_mlp_predict(null(), x.as_ptr(), 2, out.as_mut_ptr(), 6),
            EmberStatus::NullPointer,
            "`model` is NULL",
        );
        expect(
            ember_mlp_predict(model, null(), 2, out.as_mut_ptr(), 6),
            EmberStatus::NullPointer,
            "`x` is NULL",
        );
        expect(
            ember_mlp_predict(model, x.as_ptr(), 2, null_mut(), 6),
            EmberStatus::NullPointer,
            "`logits_out` is NULL",
        );
        expect(
            ember_mlp_predict(model, x.as_ptr(), 2, out.as_mut_ptr(), 5),
            EmberStatus::Shape,
            "need 6",
        );
        expect(
            ember_mlp_predict(model, x.as_ptr(), 0, out.as_mut_ptr(), 6),
            EmberStatus::InvalidArgument,
            "`n` is 0",
        );
        expect(
            ember_mlp_predict(model, x.as_ptr(), usize::MAX, out.as_mut_ptr(), 6),
            EmberStatus::InvalidArgument,
            "overflows",
        );
        expect(
            ember_mlp_predict(
                model,
                x.as_ptr(),
                usize::MAX / 8,
                out.as_mut_ptr(),
                usize::MAX,
            ),
            EmberStatus::InvalidArgument,
            "do not fit in memory",
        );
        let misaligned = x.as_ptr().cast::<u8>().add(1).cast::<f32>();
        expect(
            ember_mlp_predict(model, misaligned, 1, out.as_mut_ptr(), 3),
            EmberStatus::InvalidArgument,
            "not aligned",
        );
        expect(
            ember_mlp_predict(model, x.as_ptr(), 1, x.as_mut_ptr().add(2), 3),
            EmberStatus::InvalidArgument,
            "overlap",
        );
        x[5] = f32::NAN;
        expect(
            ember_mlp_predict(model, x.as_ptr(), 2, out.as_mut_ptr(), 6),
            EmberStatus::NonFinite,
            "example 1, feature 1",
        );
        x[5] = 0.6;
        expect(
            ember_mlp_predict(model, x.as_ptr(), 2, out.as_mut_ptr(), 6),
            EmberStatus::Ok,
            "",
        );
        assert!(out.iter().all(|v| v.is_finite()));

        let mut labels = [0i32, 3];
        let mut accuracy = -1.0f64;
        expect(
            ember_mlp_accuracy(model, x.as_ptr(), labels.as_ptr(), 2, &mut accuracy),
            EmberStatus::InvalidArgument,
            "labels[1] is 3",
        );
        labels[1] = 2;
        expect(
            ember_mlp_accuracy(model, x.as_ptr(), labels.as_ptr(), 2, null_mut()),
            EmberStatus::NullPointer,
            "`accuracy_out`",
        );
        expect(
            ember_mlp_accuracy(model, x.as_ptr(), labels.as_ptr(), 2, &mut accuracy),
            EmberStatus::Ok,
            "",
        );
        assert!((0.0..=1.0).contains(&accuracy));
        ember_mlp_free(model);
    }
}

#[test]
fn files_give_io_format_and_mismatch_errors() {
    let dir = scratch("files");
    let model = new_model(&shape());
    let other = new_model(&EmberMlpConfig {
        input: 5,
        ..shape()
    });
    unsafe {
        expect(
            ember_mlp_load(model, null()),
            EmberStatus::NullPointer,
            "`path` is NULL",
        );
        expect(
            ember_mlp_load(null_mut(), c"x.safetensors".as_ptr()),
            EmberStatus::NullPointer,
            "`model` is NULL",
        );
        expect(
            ember_mlp_load(model, c"".as_ptr()),
            EmberStatus::InvalidArgument,
            "`path` is empty",
        );
        let missing = c_path(&dir.join("missing.safetensors"));
        expect(
            ember_mlp_load(model, missing.as_ptr()),
            EmberStatus::Io,
            "no such file",
        );
        expect(
            ember_mlp_load(model, c_path(&dir).as_ptr()),
            EmberStatus::Io,
            "no model.safetensors",
        );
        let not_utf8: &[u8] = b"\xff\xfe.safetensors\0";
        expect(
            ember_mlp_load(model, not_utf8.as_ptr().cast::<c_char>()),
            EmberStatus::InvalidArgument,
            "not UTF-8",
        );

        let corrupt = dir.join("corrupt.safetensors");
        std::fs::write(
            &corrupt,
            [0u8, 0, 0, 0, 0, 1, 0, 0, b'{', b'"', b'x', 0, 1, 2, 3, 4],
        )
        .unwrap();
        expect(
            ember_mlp_load(model, c_path(&corrupt).as_ptr()),
            EmberStatus::Format,
            "not a valid safetensors file",
        );
        let truncated = dir.join("truncated.safetensors");
        let good = dir.join("good.safetensors");
        expect(
            ember_mlp_save(model, c_path(&good).as_ptr()),
            EmberStatus::Ok,
            "",
        );
        let bytes = std::fs::read(&good).unwrap();
        std::fs::write(&truncated, &bytes[..bytes.len() - 7]).unwrap();
        expect(
            ember_mlp_load(model, c_path(&truncated).as_ptr()),
            EmberStatus::Format,
            "truncated.safetensors",
        );

        let five = dir.join("five.safetensors");
        expect(
            ember_mlp_save(other, c_path(&five).as_ptr()),
            EmberStatus::Ok,
            "",
        );
        expect(
            ember_mlp_load(model, c_path(&five).as_ptr()),
            EmberStatus::Mismatch,
            "module expects [4, 8], file has [5, 8]",
        );
        expect(
            ember_mlp_load_partial(model, c_path(&five).as_ptr()),
            EmberStatus::Mismatch,
            "module expects [4, 8]",
        );
        let no_dir = c_path(&dir.join("no-such-dir/model.safetensors"));
        expect(
            ember_mlp_save(model, no_dir.as_ptr()),
            EmberStatus::Io,
            "no-such-dir",
        );
        expect(
            ember_mlp_save(model, c_path(&dir).as_ptr()),
            EmberStatus::Io,
            "is a directory",
        );
        // Until a trainer freezes some, every parameter trains: all are saved.
        expect(
            ember_mlp_save_trainable(model, c_path(&dir.join("all.safetensors")).as_ptr()),
            EmberStatus::Ok,
            "",
        );
        // The good file loads, also through its directory.
        std::fs::copy(&good, dir.join("model.safetensors")).unwrap();
        expect(
            ember_mlp_load(model, c_path(&dir).as_ptr()),
            EmberStatus::Ok,
            "",
        );
        ember_mlp_free(other);
        ember_mlp_free(model);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn training_checks_its_arguments() {
    let model = new_model(&shape());
    let other = new_model(&shape());
    let x = [0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
    let mut labels = [0i32, 2];
    let mut config = EmberTrainConfig::default();
    let mut trainer: *mut EmberTrainer = null_mut();
    let mut loss = 0f32;
    unsafe {
        expect(
            ember_train_config_default(null_mut()),
            EmberStatus::NullPointer,
            "`config_out` is NULL",
        );
        expect(ember_train_config_default(&mut config), EmberStatus::Ok, "");
        for (bad, needle) in [
            (
                EmberTrainConfig {
                    learning_rate: -1.0,
                    ..config
                },
                "learning_rate is -1",
            ),
            (
                EmberTrainConfig {
                    weight_decay: f64::INFINITY,
                    ..config
                },
                "weight_decay",
            ),
            (
                EmberTrainConfig {
                    batch_size: 0,
                    ..config
                },
                "batch_size is 0",
            ),
            (
                EmberTrainConfig {
                    epochs: 0,
                    ..config
                },
                "epochs is 0",
            ),
            (
                EmberTrainConfig {
                    schedule: 5,
                    ..config
                },
                "schedule is 5",
            ),
            (
                EmberTrainConfig {
                    trainable: 42,
                    ..config
                },
                "trainable is 42",
            ),
        ] {
            expect(
                ember_trainer_new(model, &bad, &mut trainer),
                EmberStatus::InvalidArgument,
                needle,
            );
            assert!(trainer.is_null());
        }
        expect(
            ember_trainer_new(null_mut(), &config, &mut trainer),
            EmberStatus::NullPointer,
            "`model` is NULL",
        );
        expect(
            ember_trainer_new(model, null(), &mut trainer),
            EmberStatus::NullPointer,
            "`config` is NULL",
        );
        expect(
            ember_trainer_new(model, &config, null_mut()),
            EmberStatus::NullPointer,
            "`trainer_out` is NULL",
        );
        expect(
            ember_trainer_new(model, &config, &mut trainer),
            EmberStatus::Ok,
            "",
        );

        expect(
            ember_train_step(null_mut(), model, x.as_ptr(), labels.as_ptr(), 2, &mut loss),
            EmberStatus::NullPointer,
            "`trainer`",
        );
        expect(
            ember_train_step(
                trainer,
                null_mut(),
                x.as_ptr(),
                labels.as_ptr(),
                2,
                &mut loss,
            ),
            EmberStatus::NullPointer,
            "`model`",
        );
        expect(
            ember_train_step(trainer, other, x.as_ptr(), labels.as_ptr(), 2, &mut loss),
            EmberStatus::InvalidArgument,
            "not the one",
        );
        expect(
            ember_train_step(trainer, model, x.as_ptr(), null(), 2, &mut loss),
            EmberStatus::NullPointer,
            "`labels` is NULL",
        );
        expect(
            ember_train_step(trainer, model, x.as_ptr(), labels.as_ptr(), 0, &mut loss),
            EmberStatus::InvalidArgument,
            "`n` is 0",
        );
        labels[0] = -1;
        expect(
            ember_train_step(trainer, model, x.as_ptr(), labels.as_ptr(), 2, &mut loss),
            EmberStatus::InvalidArgument,
            "labels[0] is -1",
        );
        labels[0] = 0;
        let mut inf = x;
        inf[0] = f32::INFINITY;
        let mut report = EmberFitReport::default();
        expect(
            ember_fit(
                trainer,
                model,
                inf.as_ptr(),
                labels.as_ptr(),
                2,
                &mut report,
            ),
            EmberStatus::NonFinite,
            "is inf",
        );
        expect(
            ember_train_step(trainer, model, x.as_ptr(), labels.as_ptr(), 2, &mut loss),
            EmberStatus::Ok,
            "",
        );
        assert!(loss.is_finite() && loss > 0.0);
        expect(
            ember_fit(trainer, model, x.as_ptr(), labels.as_ptr(), 2, null_mut()),
            EmberStatus::Ok,
            "",
        );
        ember_trainer_free(trainer);
        ember_mlp_free(other);
        ember_mlp_free(model);
    }
}

#[test]
fn status_names_and_version() {
    let name = |code: i32| {
        unsafe { CStr::from_ptr(ember_status_name(code)) }
            .to_str()
            .unwrap()
    };
    assert_eq!(name(0), "EMBER_STATUS_OK");
    assert_eq!(name(EmberStatus::Mismatch as i32), "EMBER_STATUS_MISMATCH");
    assert_eq!(name(99), "EMBER_STATUS_UNKNOWN");
    assert_eq!(name(-1), "EMBER_STATUS_UNKNOWN");
    for code in 0..9 {
        assert_eq!(name(code), EmberStatus::from_code(code).unwrap().name());
    }
    let version = unsafe { CStr::from_ptr(ember_version()) }.to_str().unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
}

/// Pixels scaled to [0, 1] and labels of `data/digits/<split>.csv`.
fn digits(split: &str) -> (Vec<f32>, Vec<i32>) {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../data/digits/{split}.csv"));
    let text = std::fs::read_to_string(&path).unwrap();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("p0"))
    {
        let values: Vec<f32> = line.split(',').map(|v| v.trim().parse().unwrap()).collect();
        x.extend(values[..64].iter().map(|p| p / 16.0));
        y.push(values[64] as i32);
    }
    (x, y)
}

/// What examples/c/digits.c does, from Rust: the stated accuracy is 95 %.
#[test]
fn digits_fine_tuned_through_the_c_api_reach_95_percent() {
    let (train_x, train_y) = digits("train");
    let (test_x, test_y) = digits("test");
    let hidden = [128usize, 64];
    let config = EmberMlpConfig {
        input: 64,
        hidden: hidden.as_ptr(),
        hidden_len: 2,
        classes: 10,
        dropout: 0.1,
        seed: 0,
    };
    let model = new_model(&config);
    let mut trainer = null_mut();
    let mut report = EmberFitReport::default();
    let (mut before, mut after) = (0f64, 0f64);
    let dir = scratch("digits");
    unsafe {
        expect(
            ember_mlp_accuracy(
                model,
                test_x.as_ptr(),
                test_y.as_ptr(),
                test_y.len(),
                &mut before,
            ),
            EmberStatus::Ok,
            "",
        );
        expect(
            ember_trainer_new(model, &EmberTrainConfig::default(), &mut trainer),
            EmberStatus::Ok,
            "",
        );
        expect(
            ember_fit(
                trainer,
                model,
                train_x.as_ptr(),
                train_y.as_ptr(),
                train_y.len(),
                &mut report,
            ),
            EmberStatus::Ok,
            "",
        );
        expect(
            ember_mlp_accuracy(
                model,
                test_x.as_ptr(),
                test_y.as_ptr(),
                test_y.len(),
                &mut after,
            ),
            EmberStatus::Ok,
            "",
        );
        assert_eq!(report.steps, 20 * train_y.len().div_ceil(32) as u64);
        assert!(
            after >= 0.95,
            "test accuracy {before} → {after}, {report:?}"
        );

        // Save, and a head-only fine-tune of a reloaded copy whose head is
        // saved alone and applied to a third network.
        let full = c_path(&dir.join("digits.safetensors"));
        expect(ember_mlp_save(model, full.as_ptr()), EmberStatus::Ok, "");
        let copy = new_model(&EmberMlpConfig { seed: 1, ..config });
        expect(ember_mlp_load(copy, full.as_ptr()), EmberStatus::Ok, "");
        let mut head_trainer = null_mut();
        let head = EmberTrainConfig {
            trainable: 1,
            epochs: 1,
            learning_rate: 1e-3,
            schedule: 0,
            ..EmberTrainConfig::default()
        };
        expect(
            ember_trainer_new(copy, &head, &mut head_trainer),
            EmberStatus::Ok,
            "",
        );
        expect(
            ember_fit(
                head_trainer,
                copy,
                train_x.as_ptr(),
                train_y.as_ptr(),
                train_y.len(),
                null_mut(),
            ),
            EmberStatus::Ok,
            "",
        );
        let head_file = dir.join("head.safetensors");
        expect(
            ember_mlp_save_trainable(copy, c_path(&head_file).as_ptr()),
            EmberStatus::Ok,
            "",
        );
        let bytes = std::fs::read(&head_file).unwrap();
        let mut names = safetensors::SafeTensors::deserialize(&bytes)
            .unwrap()
            .names()
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        names.sort();
        // 64-128-64-10 with dropout: nn.Sequential indices 0, 3 and 6.
        assert_eq!(names, ["6.bias", "6.weight"]);
        let third = new_model(&EmberMlpConfig { seed: 2, ..config });
        expect(ember_mlp_load(third, full.as_ptr()), EmberStatus::Ok, "");
        expect(
            ember_mlp_load_partial(third, c_path(&head_file).as_ptr()),
            EmberStatus::Ok,
            "",
        );
        let (mut a, mut b) = ([0f32; 10], [0f32; 10]);
        expect(
            ember_mlp_predict(copy, test_x.as_ptr(), 1, a.as_mut_ptr(), 10),
            EmberStatus::Ok,
            "",
        );
        expect(
            ember_mlp_predict(third, test_x.as_ptr(), 1, b.as_mut_ptr(), 10),
            EmberStatus::Ok,
            "",
        );
        assert_eq!(a, b);
        for m in [model, copy, third] {
            ember_mlp_free(m);
        }
        ember_trainer_free(trainer);
        ember_trainer_free(head_trainer);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn handles_move_between_threads() {
    fn send<T: Send>() {}
    send::<EmberMlp>();
    send::<EmberTrainer>();
}
