//! The learner against a simulated I²C sensor, under a counting global
//! allocator with a fixed budget. A plain `main` (`harness = false`): no test
//! threads or harness allocations are counted.
//!
//! The sensor (an `embedded-hal-mock` I²C bus) answers register reads with a
//! signal of two sines plus uniform noise from a fixed-seed generator. The
//! checks:
//!
//! * the learner's one-step-ahead error on held-out samples falls by at least
//!   [`CONVERGENCE_FACTOR`] after learning online from the sensor;
//! * the heap above what was live before the learner peaks within 64 KiB and
//!   within the learner's own estimate (the global allocator refuses anything
//!   past the budget, so overshooting would fail, not pass silently);
//! * a larger model is refused by `Learner::new` with `Error::HeapBudget`
//!   before it allocates (no refused allocation);
//! * weights saved to storage and restored into a learner with different
//!   initial weights give bit-identical predictions;
//! * the estimate bounds the measured peak for other sizes and optimizers.

use std::alloc::System;
use std::process::ExitCode;

use embedded_hal_mock::eh1::delay::NoopDelay;
use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use ember_mcu::{Error, I2cSensor, Learner, LearnerConfig, Optimizer, RamStorage};
use ember_runtime::memory::Counting;

#[global_allocator]
static HEAP: Counting<System> = Counting::new(System);

/// The heap the learner may use above what was live before it.
const BUDGET: usize = 64 * 1024;
/// Held-out error after learning must be at most this fraction of before.
const CONVERGENCE_FACTOR: f32 = 10.0;
const ADDRESS: u8 = 0x48;
const REGISTER: u8 = 0x00;
const SCALE: f32 = 1.0 / 1000.0;
const TRAIN: usize = 2000;
const HELD_OUT: usize = 200;

#[derive(Default)]
struct Checks {
    passed: usize,
    failed: usize,
}

impl Checks {
    fn check(&mut self, what: &str, ok: bool) {
        if ok {
            self.passed += 1;
            println!("ok      {what}");
        } else {
            self.failed += 1;
            println!("FAILED  {what}");
        }
    }
}

/// xorshift32 with a fixed seed: the sensor's noise.
struct Noise(u32);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0 as f32 / u32::MAX as f32 * 2.0 - 1.0
    }
}

/// Raw register values: `1000 · (sin(0.3 t) + 0.3 sin(0.71 t) + 0.05 u)`, `u ∈ [-1, 1]`.
fn signal(n: usize) -> Vec<i16> {
    let mut noise = Noise(0x2545_F491);
    (0..n)
        .map(|t| {
            let t = t as f32;
            let x = (0.3 * t).sin() + 0.3 * (0.71 * t).sin() + 0.05 * noise.next();
            (x * 1000.0).round() as i16
        })
        .collect()
}

fn predictions(learner: &Learner, samples: &[f32]) -> Vec<f32> {
    let w = learner.config().window;
    (w..samples.len())
        .map(|i| learner.predict_from(&samples[i - w..i]).unwrap())
        .collect()
}

fn main() -> ExitCode {
    let mut checks = Checks::default();
    let raw = signal(TRAIN + HELD_OUT);
    let held_out: Vec<f32> = raw[TRAIN..].iter().map(|&r| f32::from(r) * SCALE).collect();
    let bus = {
        let reads: Vec<Transaction> = raw[..TRAIN]
            .iter()
            .map(|r| Transaction::write_read(ADDRESS, vec![REGISTER], r.to_be_bytes().to_vec()))
            .collect();
        Mock::new(&reads)
    };
    let mut sensor = I2cSensor::new(bus, ADDRESS, REGISTER, SCALE);
    let config = LearnerConfig::new(8, 8)
        .with_optimizer(Optimizer::Adam)
        .with_lr(0.01)
        .with_heap_budget(BUDGET);
    let mut flash = RamStorage::new(4096);

    // Everything from here on counts: the learner may use BUDGET bytes more
    // than what is live now, and the allocator refuses anything past that.
    let base = HEAP.stats().current_bytes;
    HEAP.set_budget(base + BUDGET);
    HEAP.reset_peak();

    let mut learner = match Learner::new(config) {
        Ok(l) => l,
        Err(e) => {
            println!("FAILED  Learner::new: {e}");
            println!("0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    let before = learner.evaluate(&held_out).unwrap();
    let run = learner
        .run(&mut sensor, &mut NoopDelay::new(), TRAIN, 10_000_000)
        .unwrap();
    let after = learner.evaluate(&held_out).unwrap();
    learner.save(&mut flash).unwrap();
    let stats = HEAP.stats();
    let peak = stats.peak_bytes - base;
    let estimate = config.heap_estimate();
    println!(
        "model: window {} hidden {} ({} parameters), Adam lr {}, {} samples read over I2C, {} updates",
        config.window,
        config.hidden,
        config.num_params(),
        config.lr,
        run.samples,
        run.updates
    );
    println!(
        "held-out MSE (one step ahead, {HELD_OUT} samples): before {before:.5}, after {after:.5} ({:.1}x lower)",
        before / after
    );
    println!(
        "online MSE over the {} predicted training samples: {:.5}",
        run.predicted, run.mse
    );
    println!(
        "peak heap above the {base} bytes live before the learner: {peak} bytes (budget {BUDGET}, estimate {}, {} allocations, {} refused)",
        estimate.total, stats.allocations, stats.refused
    );
    println!("estimate by part: {estimate:?}");
    checks.check(
        &format!("held-out error falls at least {CONVERGENCE_FACTOR}x"),
        after * CONVERGENCE_FACTOR <= before,
    );
    checks.check(
        "every sample was read and learnt from",
        run.samples == TRAIN && run.updates == TRAIN - config.window,
    );
    checks.check(
        "peak heap within 64 KiB",
        peak <= BUDGET && stats.refused == 0,
    );
    checks.check(
        "peak heap within the learner's estimate",
        peak <= estimate.total,
    );
    sensor.release().done();
    checks.check("the I2C bus saw exactly the expected register reads", true);

    // Persist and restore: a learner initialised differently gets the same
    // predictions once restored. One learner lives at a time.
    let expected = predictions(&learner, &held_out);
    drop(learner);
    let mut restored = Learner::new(config.with_seed(99)).unwrap();
    let fresh = predictions(&restored, &held_out);
    restored.restore(&mut flash).unwrap();
    let got = predictions(&restored, &held_out);
    println!("safetensors file: {} bytes", flash.len());
    checks.check("fresh weights predict differently", fresh != expected);
    checks.check(
        "restored weights give bit-identical predictions",
        got.iter()
            .map(|v| v.to_bits())
            .eq(expected.iter().map(|v| v.to_bits())),
    );
    drop(restored);

    // A larger model is refused with the budget error, before allocating.
    let large = LearnerConfig::new(64, 128).with_heap_budget(BUDGET);
    HEAP.reset_peak();
    let live = HEAP.stats().current_bytes;
    let result = Learner::new(large);
    let after_large = HEAP.stats();
    match &result {
        Err(e) => println!("larger model (window 64, hidden 128): {e}"),
        Ok(_) => println!("larger model (window 64, hidden 128) was accepted"),
    }
    checks.check(
        "a larger model fails with Error::HeapBudget naming needed and budget bytes",
        matches!(result, Err(Error::HeapBudget { needed, budget }) if needed > budget && budget == BUDGET
            && needed == large.heap_estimate().total),
    );
    checks.check(
        "the refused model allocated nothing",
        after_large.refused == 0 && after_large.peak_bytes == live,
    );
    let message = result.unwrap_err().to_string();
    checks.check(
        "the error message states both numbers",
        message.contains("bytes of heap") && message.contains(&BUDGET.to_string()),
    );

    // Calibration: the estimate bounds the measured peak for other shapes,
    // optimizers and batch sizes.
    HEAP.set_budget(usize::MAX);
    let sizes = [
        LearnerConfig::new(4, 4).with_optimizer(Optimizer::Sgd),
        LearnerConfig::new(16, 16),
        LearnerConfig::new(32, 32).with_batch(8),
        LearnerConfig::new(32, 64)
            .with_optimizer(Optimizer::Sgd)
            .with_batch(4),
        LearnerConfig::new(64, 64),
    ];
    for c in sizes {
        let c = c.with_heap_budget(usize::MAX);
        let signal: Vec<f32> = raw[..400].iter().map(|&r| f32::from(r) * SCALE).collect();
        let mut store = RamStorage::new(1 << 20);
        let ((), s) = HEAP.measure(|| {
            let mut l = Learner::new(c).unwrap();
            for &x in &signal {
                l.observe(x);
            }
            l.save(&mut store).unwrap();
        });
        let e = c.heap_estimate().total;
        println!(
            "calibration: window {:>2} hidden {:>2} batch {} {:?}: {:>6} parameters, peak {:>7} bytes, estimate {:>7} ({:.2}x)",
            c.window,
            c.hidden,
            c.batch,
            c.optimizer,
            c.num_params(),
            s.peak_bytes,
            e,
            e as f64 / s.peak_bytes as f64
        );
        checks.check(
            &format!(
                "estimate bounds the peak for window {} hidden {} batch {}",
                c.window, c.hidden, c.batch
            ),
            s.peak_bytes <= e,
        );
    }

    println!("{} passed, {} failed", checks.passed, checks.failed);
    if checks.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
