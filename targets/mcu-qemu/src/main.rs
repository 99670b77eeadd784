//! Firmware for QEMU's `mps2-an386` (Cortex-M4F): an `ember_mcu::Learner`
//! reads a simulated I²C sensor (the same signal as the host test: two sines
//! plus noise from a fixed-seed generator), learns online with Adam within a
//! 64 KiB heap budget, and reports the held-out error before and after and
//! the peak heap over semihosting. It exits with a semihosting exit code:
//! failure if the error did not fall at least tenfold, if the heap went past
//! the budget, if a larger model was not refused, or if restored weights
//! predict differently. `tools/mcu-qemu.sh` builds and runs it.
#![no_std]
#![no_main]

extern crate alloc;

mod platform;
mod sim;

use alloc::vec::Vec;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use ember_mcu::{Error, I2cSensor, Learner, LearnerConfig, Optimizer, RamStorage};

use crate::platform::HEAP;
use crate::sim::{SimSensorBus, SpinDelay};

const BUDGET: usize = 64 * 1024;
const CONVERGENCE_FACTOR: f32 = 10.0;
const TRAIN: usize = 2000;
const HELD_OUT: usize = 200;
const SCALE: f32 = 1.0 / 1000.0;

fn predictions(learner: &Learner, samples: &[f32]) -> Vec<f32> {
    let w = learner.config().window;
    (w..samples.len())
        .map(|i| learner.predict_from(&samples[i - w..i]).unwrap_or(f32::NAN))
        .collect()
}

fn check(ok: bool, what: &str, failed: &mut usize) {
    hprintln!("{}  {}", if ok { "ok    " } else { "FAILED" }, what);
    if !ok {
        *failed += 1;
    }
}

#[entry]
fn main() -> ! {
    platform::init_heap();
    let mut failed = 0;
    check(
        platform::fpu_enabled(),
        "FPU enabled (CPACR CP10/CP11 full access)",
        &mut failed,
    );

    // Held-out samples: later in the signal than the training stream, with
    // their own noise, read through the same I2C protocol.
    let mut held_sensor = I2cSensor::new(
        SimSensorBus::new(TRAIN as u32, 0x9E37_79B9),
        sim::ADDRESS,
        sim::REGISTER,
        SCALE,
    );
    let held_out: Vec<f32> = (0..HELD_OUT)
        .map(|_| ember_mcu::Sensor::read(&mut held_sensor).unwrap_or(f32::NAN))
        .collect();
    let mut sensor = I2cSensor::new(
        SimSensorBus::new(0, 0x2545_F491),
        sim::ADDRESS,
        sim::REGISTER,
        SCALE,
    );
    let mut flash = RamStorage::new(4096);
    let config = LearnerConfig::new(8, 8)
        .with_optimizer(Optimizer::Adam)
        .with_lr(0.01)
        .with_heap_budget(BUDGET);

    let base = HEAP.stats().current_bytes;
    HEAP.set_budget(base + BUDGET);
    HEAP.reset_peak();
    let mut learner = match Learner::new(config) {
        Ok(l) => l,
        Err(e) => {
            hprintln!("FAIL: Learner::new: {}", e);
            debug::exit(debug::EXIT_FAILURE);
            loop {}
        }
    };
    let before = learner.evaluate(&held_out).unwrap_or(f32::NAN);
    let run = learner.run(&mut sensor, &mut SpinDelay, TRAIN, 100_000);
    let after = learner.evaluate(&held_out).unwrap_or(f32::NAN);
    let saved = learner.save(&mut flash);
    let stats = HEAP.stats();
    let peak = stats.peak_bytes - base;
    let estimate = config.heap_estimate().total;
    match run {
        Ok(run) => hprintln!(
            "learnt from {} samples over I2C ({} updates, online MSE {})",
            run.samples,
            run.updates,
            run.mse
        ),
        Err(e) => hprintln!("sensor error: {:?}", e),
    }
    hprintln!(
        "held-out MSE before {} after {} ({}x lower)",
        before,
        after,
        before / after
    );
    hprintln!(
        "peak heap {} bytes above {} live before the learner (budget {}, estimate {}, {} refused)",
        peak,
        base,
        BUDGET,
        estimate,
        stats.refused
    );
    check(run.is_ok(), "every sensor read succeeded", &mut failed);
    check(
        after * CONVERGENCE_FACTOR <= before,
        "held-out error falls at least 10x",
        &mut failed,
    );
    check(
        peak <= BUDGET && stats.refused == 0,
        "peak heap within 64 KiB",
        &mut failed,
    );
    check(
        peak <= estimate,
        "peak heap within the learner's estimate",
        &mut failed,
    );
    check(saved.is_ok(), "weights saved as safetensors", &mut failed);

    let expected = predictions(&learner, &held_out);
    drop(learner);
    let restored =
        Learner::new(config.with_seed(99)).and_then(|mut l| l.restore(&mut flash).map(|()| l));
    let same = match &restored {
        Ok(l) => predictions(l, &held_out)
            .iter()
            .map(|v| v.to_bits())
            .eq(expected.iter().map(|v| v.to_bits())),
        Err(_) => false,
    };
    check(
        same,
        "restored weights give bit-identical predictions",
        &mut failed,
    );
    drop(restored);

    let large = Learner::new(LearnerConfig::new(64, 128).with_heap_budget(BUDGET));
    if let Err(e) = &large {
        hprintln!("larger model: {}", e);
    }
    check(
        matches!(large, Err(Error::HeapBudget { .. })),
        "a larger model is refused with Error::HeapBudget",
        &mut failed,
    );

    hprintln!("{} failed", failed);
    debug::exit(if failed == 0 {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {}
}
