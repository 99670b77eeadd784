//! The trainer and its checkpoints: bit-identical resumption, keep-last-N,
//! fallback from a corrupt newest checkpoint, survival of SIGKILL during
//! writes, gradient accumulation, early stopping, anomaly detection with
//! rollback, the learning-rate range test and freezing.

use std::path::{Path, PathBuf};
use std::process::Command;

use ember::burn::module::Module;
use ember::burn::optim::{GradientsParams, ModuleOptimizer};
use ember::burn::tensor::TensorData;
use ember::burn::tensor::{Device, Distribution, Tensor};
use ember::models::mlp::{Mlp, MlpConfig};
use ember::runtime::Error;
use ember::runtime::checkpoint::{Checkpointer, TrainState};
use ember::runtime::clip::GlobalNormClip;
use ember::runtime::freeze::{TrainMode, set_trainable, trainable_count};
use ember::runtime::loss::mse;
use ember::runtime::lr_find::LrFinder;
use ember::runtime::optim;
use ember::runtime::schedule::{Constant, Cosine, Schedule};
use ember::runtime::train::{
    AnomalyKind, Callback, Dataset, EarlyStopping, Event, Output, StopReason, Trainer,
    TrainerConfig,
};

const SEED: u64 = 1234;

/// Burn's CPU random generator is process-wide: these tests seed it and rely
/// on the draws that follow, so they run one at a time.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rng() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn fresh(device: &Device) -> (Mlp, ModuleOptimizer) {
    device.seed(SEED);
    (
        MlpConfig::new(vec![8, 32, 32, 1])
            .with_dropout(0.1)
            .init(device),
        optim::adamw(0.01).init(),
    )
}

fn data(device: &Device) -> (Tensor<2>, Tensor<2>) {
    device.seed(SEED + 1);
    let x = Tensor::<2>::random([64, 8], Distribution::Normal(0.0, 1.0), device);
    let y = x.clone().sum_dim(1).tanh();
    (x, y)
}

/// Steps `from..to` of a run: AdamW, cosine schedule, clipping, dropout whose
/// randomness depends only on the step.
fn train(
    mut model: Mlp,
    mut opt: ModuleOptimizer,
    from: u64,
    to: u64,
    device: &Device,
) -> (Mlp, ModuleOptimizer) {
    let (x, y) = data(device);
    let schedule = Cosine::new(1e-2, 40);
    for step in from..to {
        device.seed(SEED + 100 + step);
        let start = (step as usize % 4) * 16;
        let loss = mse(
            model.forward(x.clone().slice([start..start + 16])),
            y.clone().slice([start..start + 16]),
        );
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        GlobalNormClip::new(1.0).clip(&model, &mut grads).unwrap();
        model = opt.step(schedule.lr(step as usize), model, grads);
    }
    (model, opt)
}

fn params(model: &Mlp) -> Vec<Vec<u32>> {
    ember::runtime::params::parameters(model, None)
        .into_iter()
        .map(|p| {
            p.value
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
                .into_iter()
                .map(f32::to_bits)
                .collect()
        })
        .collect()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-ckpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Rows of features and targets held in memory.
struct Rows {
    x: Vec<f32>,
    y: Vec<f32>,
    dim: usize,
    /// Rows whose features are replaced by NaN when batched.
    poisoned: Vec<usize>,
}

impl Rows {
    /// `n` rows of `dim` normal features, target `tanh(sum)` (or its negation).
    fn new(n: usize, dim: usize, seed: u64, flip: bool, device: &Device) -> Self {
        device.seed(seed);
        let x = Tensor::<2>::random([n, dim], Distribution::Normal(0.0, 1.0), device);
        let mut y = x.clone().sum_dim(1).tanh();
        if flip {
            y = y.neg();
        }
        let x = x.into_data().try_to_vec::<f32>().unwrap();
        let y = y.into_data().try_to_vec::<f32>().unwrap();
        Self {
            x,
            y,
            dim,
            poisoned: Vec::new(),
        }
    }
}

impl Dataset for Rows {
    type Batch = (Tensor<2>, Tensor<2>);
    fn len(&self) -> usize {
        self.y.len()
    }
    fn batch(&self, indices: &[usize], device: &Device) -> Result<Self::Batch, Error> {
        let mut x = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            let row = &self.x[i * self.dim..(i + 1) * self.dim];
            if self.poisoned.contains(&i) {
                x.extend(row.iter().map(|_| f32::NAN));
            } else {
                x.extend_from_slice(row);
            }
        }
        let y: Vec<f32> = indices.iter().map(|&i| self.y[i]).collect();
        let n = indices.len();
        Ok((
            Tensor::from_data(TensorData::new(x, [n, self.dim]), device),
            Tensor::from_data(TensorData::new(y, [n, 1]), device),
        ))
    }
}

fn regression(model: &Mlp, (x, y): &(Tensor<2>, Tensor<2>)) -> Output {
    Output::new(mse(model.forward(x.clone()), y.clone()), x.dims()[0])
}

fn all_finite(model: &Mlp) -> bool {
    params(model)
        .iter()
        .flatten()
        .all(|b| f32::from_bits(*b).is_finite())
}

/// 10 steps straight against 5 steps, a stop, and 5 resumed steps; with
/// `partial`, only biases and the last layer train and checkpoints hold only them.
fn resume_matches_straight_run(name: &str, partial: bool) {
    let device = ember::runtime::device::cpu().autodiff();
    let data = Rows::new(64, 8, SEED + 1, false, &device);
    let mode = TrainMode::BiasOnly {
        also: vec!["layers.2".into()],
    };
    let model = || {
        let (m, o) = fresh(&device);
        (
            if partial {
                set_trainable(m, |p| mode.trains(p))
            } else {
                m
            },
            o,
        )
    };
    // 64 rows / batch 16 = 4 steps per epoch; 10 steps cross epoch boundaries.
    let config = || {
        TrainerConfig::new(16)
            .with_max_steps(10)
            .with_clip(GlobalNormClip::new(1.0))
            .with_seed(SEED)
            .with_checkpoint_every(1)
    };
    let checkpointer = |dir: &Path| Checkpointer::new(dir, 2).unwrap().trainable_only(partial);
    let run = |config: TrainerConfig, dir: &Path, resume: bool| {
        let (m, o) = model();
        Trainer::new(config, Cosine::new(1e-2, 10), device.clone())
            .with_checkpointer(checkpointer(dir))
            .resume(resume)
            .fit(m, o, &data, None, regression)
            .unwrap()
    };
    let straight_dir = temp(&format!("{name}-straight"));
    let straight = run(config(), &straight_dir, false);
    assert_eq!(straight.state.step, 10);

    let dir = temp(name);
    let first = run(config().with_max_steps(5), &dir, false);
    assert_eq!(
        (
            first.state.step,
            first.state.epoch,
            first.state.data_position
        ),
        (5, 1, 1)
    );
    let file = if partial {
        "trainable.bpk"
    } else {
        "model.bpk"
    };
    assert!(dir.join("step-0000000005").join(file).is_file());
    let messages = std::cell::RefCell::new(Vec::new());
    let (m, o) = model();
    let resumed = Trainer::new(config(), Cosine::new(1e-2, 10), device.clone())
        .with_checkpointer(checkpointer(&dir))
        .resume(true)
        .with_callback(|e: &Event| {
            if let Event::Message(m) = e {
                messages.borrow_mut().push(m.to_string());
            }
        })
        .fit(m, o, &data, None, regression)
        .unwrap();
    assert!(
        messages.borrow().iter().any(|m| m.contains("step 5")),
        "{:?}",
        messages.borrow()
    );
    assert_eq!(resumed.history.steps.first().unwrap().step, 5);
    assert_same(&resumed.model, &straight.model);
    for d in [dir, straight_dir] {
        std::fs::remove_dir_all(d).ok();
    }
}

/// Bit-identical parameters, or the path of the first that differs.
fn assert_same(a: &Mlp, b: &Mlp) {
    let paths = ember::runtime::params::parameters(a, None)
        .into_iter()
        .map(|p| p.path);
    for ((path, x), y) in paths.zip(params(a)).zip(params(b)) {
        assert!(x == y, "`{path}` differs from the straight run");
    }
}

#[test]
fn trainer_resume_is_bit_identical() {
    let _rng = rng();
    resume_matches_straight_run("resume", false);
}

#[test]
fn trainable_only_checkpoints_resume_bit_identically() {
    let _rng = rng();
    resume_matches_straight_run("resume-partial", true);
}

#[test]
fn gradient_accumulation_equals_the_large_batch() {
    let _rng = rng();
    let device = ember::runtime::device::cpu().autodiff();
    let data = Rows::new(64, 8, SEED + 1, false, &device);
    let run = |config: TrainerConfig| {
        // No dropout: one batch of 16 and two of 8 draw different masks.
        device.seed(SEED);
        let m = MlpConfig::new(vec![8, 32, 32, 1]).init(&device);
        Trainer::new(
            config.with_shuffle(false).with_epochs(3),
            Constant::new(0.05),
            device.clone(),
        )
        .fit(m, optim::sgd(0.0).init(), &data, None, regression)
        .unwrap()
    };
    let big = run(TrainerConfig::new(16));
    let accumulated = run(TrainerConfig::new(8).with_grad_accumulation(2));
    assert_eq!(big.history.steps.len(), 12);
    assert_eq!(accumulated.history.steps.len(), 12);
    for (a, b) in params(&big.model)
        .iter()
        .flatten()
        .zip(params(&accumulated.model).iter().flatten())
    {
        let (a, b) = (f32::from_bits(*a), f32::from_bits(*b));
        assert!((a - b).abs() <= 1e-6 + 1e-5 * a.abs(), "{a} vs {b}");
    }
}

#[test]
fn early_stopping_keeps_the_best_model() {
    let _rng = rng();
    let device = ember::runtime::device::cpu().autodiff();
    let train = Rows::new(64, 8, SEED + 1, false, &device);
    // The validation targets are the negated training targets: the better the
    // fit to the training data, the worse the validation loss.
    let valid = Rows::new(64, 8, SEED + 1, true, &device);
    let (m, o) = fresh(&device);
    let fit = Trainer::new(
        TrainerConfig::new(16)
            .with_epochs(50)
            .with_eval_every(2)
            .with_early_stopping(EarlyStopping::new(3)),
        Constant::new(1e-2),
        device.clone(),
    )
    .fit(m, o, &train, Some(&valid), regression)
    .unwrap();
    let StopReason::EarlyStopped { best_step } = fit.stop else {
        panic!("did not stop early: {:?}", fit.stop)
    };
    assert!(fit.state.step < 200, "ran {} steps", fit.state.step);
    let best = fit
        .history
        .evals
        .iter()
        .find(|e| e.step == best_step)
        .unwrap();
    assert!(fit.history.evals.iter().all(|e| e.loss >= best.loss));
    assert_eq!(
        fit.history.evals.len(),
        fit.history
            .evals
            .iter()
            .position(|e| e.step == best_step)
            .unwrap()
            + 4
    );
    // The returned model is the best one.
    let again = ember::runtime::train::evaluate(
        &fit.model.valid(),
        &valid,
        16,
        &ember::runtime::device::cpu(),
        regression,
    )
    .unwrap();
    assert!(
        (again.loss - best.loss).abs() < 1e-6,
        "{} vs {}",
        again.loss,
        best.loss
    );
}

/// Sets the gradient of one parameter to NaN at chosen steps.
struct PoisonGrad {
    steps: Vec<u64>,
    layer: usize,
}

impl Callback<Mlp> for PoisonGrad {
    fn on_gradients(&mut self, step: u64, model: &Mlp, grads: &mut GradientsParams) {
        if self.steps.contains(&step) {
            let id = model.layers[self.layer].weight.id;
            let g = grads.remove::<2>(id).unwrap();
            grads.register::<2>(id, g.mul_scalar(f32::NAN));
        }
    }
}

#[test]
fn nan_in_a_batch_and_in_a_gradient_skip_the_step_and_name_the_parameter() {
    let _rng = rng();
    let device = ember::runtime::device::cpu().autodiff();
    let mut data = Rows::new(64, 8, SEED + 1, false, &device);
    data.poisoned = vec![5];
    let events = std::cell::RefCell::new(Vec::new());
    let (m, o) = fresh(&device);
    let fit = Trainer::new(
        TrainerConfig::new(16).with_epochs(3).with_shuffle(false),
        Constant::new(1e-2),
        device.clone(),
    )
    .with_callback(PoisonGrad {
        steps: vec![6],
        layer: 1,
    })
    .with_callback(|e: &Event| {
        if let Event::Anomaly(a) = e {
            events.borrow_mut().push(a.to_string());
        }
    })
    .fit(m, o, &data, None, regression)
    .unwrap();
    let a = &fit.history.anomalies;
    // Row 5 is in the first batch of every epoch (no shuffling): steps 0, 4, 8.
    let steps: Vec<u64> = a.iter().map(|a| a.step).collect();
    assert_eq!(steps, vec![0, 4, 6, 8], "{a:?}");
    assert_eq!(a[0].kind, AnomalyKind::Loss);
    assert_eq!(a[0].path.as_deref(), Some("layers.0.weight"), "{a:?}");
    assert_eq!(a[2].kind, AnomalyKind::Gradient);
    assert_eq!(a[2].path.as_deref(), Some("layers.1.weight"), "{a:?}");
    assert!(
        events.borrow()[2].contains("`layers.1.weight` is not finite"),
        "{:?}",
        events.borrow()
    );
    assert_eq!(fit.history.steps.len(), 8);
    assert!(fit.history.rollbacks.is_empty());
    assert!(all_finite(&fit.model));
}

#[test]
fn repeated_bad_steps_roll_back_and_endless_ones_fail_clearly() {
    let _rng = rng();
    let device = ember::runtime::device::cpu().autodiff();
    let data = Rows::new(64, 8, SEED + 1, false, &device);
    let config = TrainerConfig::new(16)
        .with_epochs(4)
        .with_anomaly_policy(3, 1);
    let rollbacks = std::cell::RefCell::new(Vec::new());
    let (m, o) = fresh(&device);
    let fit = Trainer::new(config.clone(), Constant::new(1e-2), device.clone())
        .with_callback(PoisonGrad {
            steps: vec![9, 10, 11],
            layer: 0,
        })
        .with_callback(|e: &Event| {
            if let Event::Rollback { step, to_step } = e {
                rollbacks.borrow_mut().push((*step, *to_step));
            }
        })
        .fit(m, o, &data, None, regression)
        .unwrap();
    // Good state saved at the end of epoch 2 (step 8); three bad steps in a row
    // at 9, 10, 11 roll back to it; the run completes.
    assert_eq!(*rollbacks.borrow(), vec![(11, 8)]);
    assert_eq!(fit.state.step, 16);
    assert!(all_finite(&fit.model));

    let (m, o) = fresh(&device);
    let err = Trainer::new(config, Constant::new(1e-2), device.clone())
        .with_callback(PoisonGrad {
            steps: (0..16).collect(),
            layer: 0,
        })
        .fit(m, o, &data, None, regression)
        .err()
        .expect("an endless run of NaN gradients must fail");
    assert!(matches!(err, Error::Diverged { rollbacks: 1, .. }), "{err}");
    assert!(err.to_string().contains("diverged"), "{err}");
}

#[test]
fn lr_finder_suggests_a_rate_that_trains() {
    let _rng = rng();
    let device = ember::runtime::device::cpu().autodiff();
    let data = Rows::new(256, 8, SEED + 1, false, &device);
    let (m, o) = fresh(&device);
    let curve = LrFinder::new(32)
        .with_range(1e-6, 10.0)
        .with_steps(80)
        .with_seed(SEED)
        .run(&m, &o, &data, &device, regression)
        .unwrap();
    let lr = curve.suggested.expect("a suggestion");
    assert!(curve.points.len() >= 10);
    assert!(
        lr > 1e-5 && lr < curve.points.last().unwrap().lr,
        "suggested {lr}"
    );
    assert!(curve.to_csv().starts_with("lr,loss,smoothed\n"));
    // The suggestion trains better in 40 steps than a rate 100× smaller.
    let final_loss = |lr: f64| {
        let (m, o) = fresh(&device);
        let fit = Trainer::new(
            TrainerConfig::new(32).with_max_steps(40),
            Constant::new(lr),
            device.clone(),
        )
        .fit(m, o, &data, Some(&data), regression)
        .unwrap();
        fit.history.evals.last().unwrap().loss
    };
    let (suggested, small) = (final_loss(lr), final_loss(lr / 100.0));
    assert!(
        suggested < small,
        "suggested lr {lr}: {suggested} vs {small}"
    );
}

#[test]
fn head_only_and_bias_only_train_only_those_parameters() {
    let _rng = rng();
    let device = ember::runtime::device::cpu().autodiff();
    let data = Rows::new(64, 8, SEED + 1, false, &device);
    for (mode, trained) in [
        (
            TrainMode::HeadOnly {
                prefix: "layers.2".into(),
            },
            vec![false, false, false, false, true, true],
        ),
        (
            TrainMode::BiasOnly { also: vec![] },
            vec![false, true, false, true, false, true],
        ),
    ] {
        let (m, o) = fresh(&device);
        let before = params(&m);
        let m = set_trainable(m, |p| mode.trains(p));
        let (n, total) = trainable_count(&m);
        assert!(n < total);
        let fit = Trainer::new(TrainerConfig::new(16), Constant::new(1e-2), device.clone())
            .fit(m, o, &data, None, regression)
            .unwrap();
        let after = params(&fit.model);
        let changed: Vec<bool> = before.iter().zip(&after).map(|(a, b)| a != b).collect();
        assert_eq!(changed, trained, "{mode:?}");
    }
    // Freezing by path pattern, on top of an earlier choice.
    let (m, _) = fresh(&device);
    let m = ember::runtime::freeze::freeze_matching(m, &[r"^layers\.0\.", r"\.bias$"]).unwrap();
    let trainable: Vec<String> = ember::runtime::freeze::trainable_paths(&m)
        .into_iter()
        .filter(|(_, t)| *t)
        .map(|(p, _)| p)
        .collect();
    assert_eq!(trainable, ["layers.1.weight", "layers.2.weight"]);
    let err = ember::runtime::freeze::freeze_matching(m, &["("])
        .expect_err("an invalid pattern is an error");
    assert!(
        err.to_string().contains("regex") || err.to_string().contains("unclosed"),
        "{err}"
    );
}

#[test]
fn keeps_the_last_n_and_falls_back_from_a_corrupt_newest() {
    let _rng = rng();
    let device = ember::runtime::device::cpu().autodiff();
    let dir = temp("fallback");
    let ckpt = Checkpointer::new(&dir, 3).unwrap();
    let (m, o) = fresh(&device);
    for step in 1..=5 {
        ckpt.save(
            &m,
            &o,
            &TrainState {
                step,
                ..Default::default()
            },
        )
        .unwrap();
    }
    let steps: Vec<u64> = ckpt.list().into_iter().map(|(s, _)| s).collect();
    assert_eq!(steps, vec![3, 4, 5]);

    // Truncate the newest model file: resume takes step 4 and says why.
    let newest = dir.join("step-0000000005/model.bpk");
    let len = std::fs::metadata(&newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (m, o) = fresh(&device);
    let resumed = ckpt.resume(m, o).unwrap().unwrap();
    assert_eq!(resumed.state.step, 4);
    assert_eq!(resumed.skipped.len(), 1);
    assert!(
        resumed.skipped[0].contains("step-0000000005") && resumed.skipped[0].contains("model.bpk"),
        "{:?}",
        resumed.skipped
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Run as a child process by `survives_sigkill_during_writes`: saves
/// checkpoints in a loop until killed.
#[test]
#[ignore = "helper process of survives_sigkill_during_writes, not a test by itself"]
fn checkpoint_writer_child() {
    let Ok(dir) = std::env::var("EMBER_CKPT_CHILD_DIR") else {
        return;
    };
    let device = ember::runtime::device::cpu().autodiff();
    let ckpt = Checkpointer::new(&dir, 2).unwrap();
    let (mut m, mut o) = fresh(&device);
    let start = ckpt.resume(m.clone(), o.clone()).unwrap().map(|r| {
        let s = r.state.step;
        m = r.model;
        o = r.optimizer;
        s
    });
    let mut step = start.unwrap_or(0);
    loop {
        step += 1;
        let (m2, o2) = train(m, o, step - 1, step, &device);
        m = m2;
        o = o2;
        ckpt.save(
            &m,
            &o,
            &TrainState {
                step,
                rng_seed: SEED,
                ..Default::default()
            },
        )
        .unwrap();
    }
}

fn kill_after(dir: &Path, millis: u64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "checkpoint_writer_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("EMBER_CKPT_CHILD_DIR", dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(millis));
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
}

#[test]
fn survives_sigkill_during_writes() {
    let _rng = rng();
    let device = ember::runtime::device::cpu().autodiff();
    let dir = temp("sigkill");
    let ckpt = Checkpointer::new(&dir, 2).unwrap();
    // Pseudo-random kill times (fixed sequence, reproducible), 20 kills.
    let mut t: u64 = 0x9e37_79b9;
    let mut last_step = 0;
    for round in 0..20 {
        t = t
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        kill_after(&dir, 150 + (t >> 33) % 250);
        let (m, o) = fresh(&device);
        let resumed = ckpt.resume(m, o).unwrap();
        if let Some(r) = resumed {
            assert!(
                r.state.step >= last_step,
                "round {round}: went back from {last_step} to {}",
                r.state.step
            );
            last_step = r.state.step;
            // The restored model computes.
            let y = r
                .model
                .valid()
                .forward(Tensor::<2>::ones([1, 8], &ember::runtime::device::cpu()));
            assert!(y.into_data().try_to_vec::<f32>().unwrap()[0].is_finite());
        }
    }
    assert!(last_step > 0, "the writer never completed a checkpoint");
    std::fs::remove_dir_all(&dir).ok();
}
