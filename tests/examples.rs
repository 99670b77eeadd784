//! Every example runs and its loss behaves as the ML Core notes say it does.
//!
//! The examples are compiled into this test binary as modules, so the test
//! exercises exactly the code `cargo run --example NAME` runs.

use std::sync::Mutex;

/// Burn's CPU random generator is process-wide: tests that seed it and then
/// draw (initialisation, data, dropout) run one at a time, so each example
/// runs exactly as `cargo run --example` runs it.
static RNG: Mutex<()> = Mutex::new(());

fn rng() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

#[path = "../examples/backprop_trace.rs"]
mod backprop_trace;
#[path = "../examples/batchnorm_residual.rs"]
mod batchnorm_residual;
#[path = "../examples/optimizer_compare.rs"]
mod optimizer_compare;
#[path = "../examples/regularization.rs"]
mod regularization;
#[path = "../examples/simple_net.rs"]
mod simple_net;
#[path = "../examples/training_loop.rs"]
mod training_loop;

#[test]
fn simple_net_loss_decreases() {
    let _rng = rng();
    let losses = simple_net::run(false);
    assert_eq!(losses.len(), 10);
    // Dropout makes single epochs noisy: compare the first and last three.
    let first: f32 = losses[..3].iter().sum::<f32>() / 3.0;
    let last: f32 = losses[7..].iter().sum::<f32>() / 3.0;
    assert!(last < first, "{losses:?}");
}

#[test]
fn backprop_trace_step_lowers_loss() {
    let _rng = rng();
    let (before, after) = backprop_trace::run(false);
    assert!(after < before, "{before} → {after}");
}

#[test]
fn optimizer_compare_both_train() {
    let _rng = rng();
    let (adam, adamw) = optimizer_compare::run(false);
    for r in [&adam, &adamw] {
        assert!(
            r.last_train_loss < 0.9 * r.first_train_loss,
            "{} → {}",
            r.first_train_loss,
            r.last_train_loss
        );
        assert!(r.val_loss.is_finite());
    }
    // Same data and init: only the decay rule differs, and it must matter.
    assert_ne!(adam.val_loss, adamw.val_loss);
}

#[test]
fn regularization_shrinks_the_gap() {
    let _rng = rng();
    let (plain, regularized) = regularization::run(false);
    assert!(
        plain.train < plain.val,
        "the plain net must overfit: {plain:?}"
    );
    assert!(
        regularized.gap() < plain.gap(),
        "plain {plain:?}, regularized {regularized:?}"
    );
    assert!(
        regularized.train > plain.train,
        "regularisation must fit the noise less"
    );
}

#[test]
fn training_loop_converges_and_warns_on_large_norms() {
    let _rng = rng();
    let outcome = training_loop::run(false);
    let l = &outcome.epoch_losses;
    assert!(l[l.len() - 1] < 0.2 * l[0], "{l:?}");
    assert!(
        outcome.large_grad_steps > 0,
        "the first steps have norms above 5.0"
    );
}

#[test]
fn residual_blocks_keep_gradients_alive() {
    let _rng = rng();
    let (residual, plain) = batchnorm_residual::run(false);
    assert!(
        residual.last_loss < 0.5 * residual.first_loss,
        "{residual:?}"
    );
    assert!(
        residual.first_layer_grad > 100.0 * plain.first_layer_grad,
        "{residual:?} vs {plain:?}"
    );
}
