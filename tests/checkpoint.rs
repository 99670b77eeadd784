//! Checkpoints: bit-identical resumption, keep-last-N, fallback from a
//! corrupt newest checkpoint, and survival of SIGKILL during writes.

use std::path::{Path, PathBuf};
use std::process::Command;

use ember::burn::module::Module;
use ember::burn::optim::{GradientsParams, ModuleOptimizer};
use ember::burn::tensor::{Device, Distribution, Tensor};
use ember::models::mlp::{Mlp, MlpConfig};
use ember::runtime::checkpoint::{Checkpointer, TrainState};
use ember::runtime::clip::GlobalNormClip;
use ember::runtime::loss::mse;
use ember::runtime::optim;
use ember::runtime::schedule::{Cosine, Schedule};

const SEED: u64 = 1234;

/// Burn's CPU random generator is process-wide: these tests seed it and rely
/// on the draws that follow, so they run one at a time.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rng() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn fresh(device: &Device) -> (Mlp, ModuleOptimizer) {
    device.seed(SEED);
    (MlpConfig::new(vec![8, 32, 32, 1]).with_dropout(0.1).init(device), optim::adamw(0.01).init())
}

fn data(device: &Device) -> (Tensor<2>, Tensor<2>) {
    device.seed(SEED + 1);
    let x = Tensor::<2>::random([64, 8], Distribution::Normal(0.0, 1.0), device);
    let y = x.clone().sum_dim(1).tanh();
    (x, y)
}

/// Steps `from..to` of a run: AdamW, cosine schedule, clipping, dropout whose
/// randomness depends only on the step.
fn train(mut model: Mlp, mut opt: ModuleOptimizer, from: u64, to: u64, device: &Device) -> (Mlp, ModuleOptimizer) {
    let (x, y) = data(device);
    let schedule = Cosine::new(1e-2, 40);
    for step in from..to {
        device.seed(SEED + 100 + step);
        let start = (step as usize % 4) * 16;
        let loss = mse(model.forward(x.clone().slice([start..start + 16])), y.clone().slice([start..start + 16]));
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        GlobalNormClip::new(1.0).clip(&model, &mut grads).unwrap();
        model = opt.step(schedule.lr(step as usize), model, grads);
    }
    (model, opt)
}

fn params(model: &Mlp) -> Vec<Vec<u32>> {
    ember::runtime::params::parameters(model, None)
        .into_iter()
        .map(|p| p.value.into_data().try_to_vec::<f32>().unwrap().into_iter().map(f32::to_bits).collect())
        .collect()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-ckpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn resume_is_bit_identical() {
    let _rng = rng();
    let device = Device::flex().autodiff();
    let (m, o) = fresh(&device);
    let (straight, _) = train(m, o, 0, 20, &device);

    let dir = temp("resume");
    let ckpt = Checkpointer::new(&dir, 2).unwrap();
    let (m, o) = fresh(&device);
    let (m, o) = train(m, o, 0, 10, &device);
    ckpt.save(&m, &o, &TrainState { step: 10, rng_seed: SEED, ..Default::default() }).unwrap();
    drop((m, o));

    let (m, o) = fresh(&device);
    let resumed = ckpt.resume(m, o).unwrap().expect("a checkpoint");
    assert_eq!(resumed.state.step, 10);
    assert!(resumed.skipped.is_empty());
    let (m, _) = train(resumed.model, resumed.optimizer, 10, 20, &device);
    assert_eq!(params(&m), params(&straight), "resumed run differs from the straight one");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn keeps_the_last_n_and_falls_back_from_a_corrupt_newest() {
    let _rng = rng();
    let device = Device::flex().autodiff();
    let dir = temp("fallback");
    let ckpt = Checkpointer::new(&dir, 3).unwrap();
    let (m, o) = fresh(&device);
    for step in 1..=5 {
        ckpt.save(&m, &o, &TrainState { step, ..Default::default() }).unwrap();
    }
    let steps: Vec<u64> = ckpt.list().into_iter().map(|(s, _)| s).collect();
    assert_eq!(steps, vec![3, 4, 5]);

    // Truncate the newest model file: resume takes step 4 and says why.
    let newest = dir.join("step-0000000005/model.bpk");
    let len = std::fs::metadata(&newest).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&newest).unwrap().set_len(len / 2).unwrap();
    let (m, o) = fresh(&device);
    let resumed = ckpt.resume(m, o).unwrap().unwrap();
    assert_eq!(resumed.state.step, 4);
    assert_eq!(resumed.skipped.len(), 1);
    assert!(resumed.skipped[0].contains("step-0000000005") && resumed.skipped[0].contains("model.bpk"), "{:?}", resumed.skipped);
    std::fs::remove_dir_all(&dir).ok();
}

/// Run as a child process by `survives_sigkill_during_writes`: saves
/// checkpoints in a loop until killed.
#[test]
#[ignore = "helper process of survives_sigkill_during_writes, not a test by itself"]
fn checkpoint_writer_child() {
    let Ok(dir) = std::env::var("EMBER_CKPT_CHILD_DIR") else { return };
    let device = Device::flex().autodiff();
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
        ckpt.save(&m, &o, &TrainState { step, rng_seed: SEED, ..Default::default() }).unwrap();
    }
}

fn kill_after(dir: &Path, millis: u64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["checkpoint_writer_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
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
    let device = Device::flex().autodiff();
    let dir = temp("sigkill");
    let ckpt = Checkpointer::new(&dir, 2).unwrap();
    // Pseudo-random kill times (fixed sequence, reproducible), 20 kills.
    let mut t: u64 = 0x9e37_79b9;
    let mut last_step = 0;
    for round in 0..20 {
        t = t.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        kill_after(&dir, 150 + (t >> 33) % 250);
        let (m, o) = fresh(&device);
        let resumed = ckpt.resume(m, o).unwrap();
        if let Some(r) = resumed {
            assert!(r.state.step >= last_step, "round {round}: went back from {last_step} to {}", r.state.step);
            last_step = r.state.step;
            // The restored model computes.
            let y = r.model.valid().forward(Tensor::<2>::ones([1, 8], &Device::flex()));
            assert!(y.into_data().try_to_vec::<f32>().unwrap()[0].is_finite());
        }
    }
    assert!(last_step > 0, "the writer never completed a checkpoint");
    std::fs::remove_dir_all(&dir).ok();
}
