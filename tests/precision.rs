//! Mixed precision and recomputation: the loss scaler against
//! `torch.amp.GradScaler` (fixture from `tools/reference/precision.py`),
//! autocast's types and fp32 master weights, gradients with and without
//! segment recomputation (dropout included), and the memory recomputation
//! and reduced precision save, measured by a counting allocator.

mod common;

use common::{F32_OP, Fixture, assert_close, load_torch_params, minilm_dir, values};
use ember::burn::module::Module;
use ember::burn::nn::{Linear, LinearConfig};
use ember::burn::optim::GradientsParams;
use ember::burn::tensor::{DType, Device, Distribution, FloatDType, Int, Tensor, TensorData};
use ember::models::classifier::SentenceClassifier;
use ember::models::mlp::MlpConfig;
use ember::models::residual::ResidualMlpConfig;
use ember::models::sentence::SentenceEncoder;
use ember::runtime::loss::mse;
use ember::runtime::memory::Counting;
use ember::runtime::optim;
use ember::runtime::params::{materialize, parameters};
use ember::runtime::peft::LoraConfig;
use ember::runtime::precision::{self, LossScalerConfig, Precision};
use ember::runtime::recompute::{Segmented, Strategy, forward_backward};
use ember::runtime::schedule::Constant;
use ember::runtime::train::{Dataset, Event, ForwardFn, Objective, Output, Trainer, TrainerConfig};

#[global_allocator]
static HEAP: Counting<std::alloc::System> = Counting::new(std::alloc::System);

/// The device RNG and the allocator's counters are process-wide: these tests
/// run one at a time.
static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Gradients of recomputed segments equal the plain graph's: the same ops on
/// the same values. The bound of the acceptance criterion (1e-6, f32).
const RECOMPUTE: common::Tol = common::Tol {
    name: "RECOMPUTE_F32",
    rtol: 0.0,
    atol: 1e-6,
};

// ---------------------------------------------------------------------------
// Loss scaler
// ---------------------------------------------------------------------------

/// The regression of the fixture as a data set: all 8 rows in every batch.
struct Regression {
    x: Vec<f32>,
    y: Vec<f32>,
}

impl Dataset for Regression {
    type Batch = (Tensor<2>, Tensor<2>);
    fn len(&self) -> usize {
        8
    }
    fn batch(&self, _: &[usize], device: &Device) -> Result<Self::Batch, ember::runtime::Error> {
        Ok((
            Tensor::from_data(TensorData::new(self.x.clone(), [8, 4]), device),
            Tensor::from_data(TensorData::new(self.y.clone(), [8, 3]), device),
        ))
    }
}

/// The plain objective, with an overflow injected into `weight[0][0]`'s
/// gradient at the fixture's steps (after the scaled backward, before
/// unscaling — where an f16 overflow would appear).
struct Injecting<'a> {
    steps: Vec<i64>,
    nan: Vec<bool>,
    calls: std::cell::Cell<i64>,
    forward: ForwardFn<&'a LinearForward>,
}

type LinearForward = dyn Fn(&Linear, &(Tensor<2>, Tensor<2>)) -> Output;

impl Objective<Linear, (Tensor<2>, Tensor<2>)> for Injecting<'_> {
    fn forward(&self, model: &Linear, batch: &(Tensor<2>, Tensor<2>)) -> Output {
        self.forward.forward(model, batch)
    }
    fn forward_backward(
        &self,
        model: &Linear,
        batch: &(Tensor<2>, Tensor<2>),
        scale: f64,
    ) -> (Output, GradientsParams) {
        let (out, mut grads) = self.forward.forward_backward(model, batch, scale);
        let step = self.calls.get();
        self.calls.set(step + 1);
        if let Some(i) = self.steps.iter().position(|&s| s == step) {
            let g = grads.remove::<2>(model.weight.id).unwrap();
            let bad = if self.nan[i] { f32::NAN } else { f32::INFINITY };
            let patch = Tensor::<2>::from_data(TensorData::new(vec![bad], [1, 1]), &g.device());
            grads.register(model.weight.id, g.slice_assign([0..1, 0..1], patch));
        }
        (out, grads)
    }
}

fn scaler_run(f: &Fixture, run: &str, growth_interval: u64) {
    let device = ember::runtime::device::cpu().autodiff();
    let linear = LinearConfig::new(4, 3).init(&device);
    let linear = load_torch_params(linear, f, |p| Some(format!("{run}.init.{p}")));
    let data = Regression {
        x: f.f32s(&format!("{run}.x")),
        y: f.f32s(&format!("{run}.y")),
    };
    let forward = |m: &Linear, (x, y): &(Tensor<2>, Tensor<2>)| {
        Output::new(mse(m.forward(x.clone()), y.clone()), 8)
    };
    let objective = Injecting {
        steps: f.ints("inject_steps"),
        nan: f.f32s("inject_nan").iter().map(|&v| v != 0.0).collect(),
        calls: std::cell::Cell::new(0),
        forward: ForwardFn(&forward),
    };
    let steps = f.values(&format!("{run}.loss")).0.len() as u64;
    let config = TrainerConfig::new(8)
        .with_max_steps(steps)
        .with_shuffle(false)
        .with_loss_scaler(LossScalerConfig::default().with_growth_interval(growth_interval))
        .with_grad_warning_threshold(f64::INFINITY);
    let mut skipped = Vec::new();
    let fit = Trainer::new(config, Constant::new(0.1), device)
        .with_callback(|e: &Event<'_>| {
            if let Event::Overflow { step, .. } = e {
                skipped.push(*step);
            }
        })
        .fit_with(linear, optim::sgd(0.0).init(), &data, None, objective)
        .unwrap();

    // Skipped steps: exactly the fixture's.
    let expected_skips: Vec<u64> = f
        .values(&format!("{run}.skipped"))
        .0
        .iter()
        .enumerate()
        .filter(|(_, s)| **s != 0.0)
        .map(|(i, _)| i as u64)
        .collect();
    assert_eq!(skipped, expected_skips, "{run}: skipped steps");
    assert_eq!(
        fit.history
            .overflows
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>(),
        expected_skips
    );
    // The scale that overflowed at each skipped step equals GradScaler's.
    let used_expected = f.values(&format!("{run}.scale_used")).0;
    for (step, scale) in &fit.history.overflows {
        assert_eq!(
            *scale, used_expected[*step as usize],
            "{run}: scale used at step {step}"
        );
    }
    // The final scale and every loss of a taken step.
    let after_expected = f.values(&format!("{run}.scale_after")).0;
    assert_eq!(
        fit.state.loss_scale,
        *after_expected.last().unwrap(),
        "{run}: final scale"
    );
    let losses = f.values(&format!("{run}.loss")).0;
    for s in &fit.history.steps {
        assert_close(
            &format!("{run}: loss at step {}", s.step),
            &[s.loss],
            &[losses[s.step as usize]],
            F32_OP,
        );
    }
    // The parameters after the last step (SGD on unscaled gradients).
    let w = f.values(&format!("{run}.weight")).0;
    let last = &w[w.len() - 12..];
    let actual = values(fit.model.weight.val().transpose());
    assert_close(
        &format!("{run}: final weight"),
        &actual,
        last,
        common::F32_REDUCE,
    );
}

#[test]
fn loss_scaler_matches_torch_grad_scaler() {
    let _g = lock();
    let f = Fixture::load("grad_scaler.safetensors");
    scaler_run(&f, "interval3", 3);
    scaler_run(&f, "default", 2000);
}

#[test]
fn scaler_scale_trajectory_matches_torch_step_by_step() {
    // The LossScaler alone, step by step against the fixture's trajectory.
    let f = Fixture::load("grad_scaler.safetensors");
    for (run, interval) in [("interval3", 3), ("default", 2000)] {
        let mut scaler = LossScalerConfig::default()
            .with_growth_interval(interval)
            .init();
        let used = f.values(&format!("{run}.scale_used")).0;
        let after = f.values(&format!("{run}.scale_after")).0;
        let skipped = f.values(&format!("{run}.skipped")).0;
        for step in 0..used.len() {
            assert_eq!(
                scaler.scale(),
                used[step],
                "{run}: scale used at step {step}"
            );
            scaler.update(skipped[step] != 0.0);
            assert_eq!(
                scaler.scale(),
                after[step],
                "{run}: scale after step {step}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Autocast
// ---------------------------------------------------------------------------

#[test]
fn autocast_computes_low_and_keeps_fp32_master_weights() {
    let _g = lock();
    let device = ember::runtime::device::cpu().autodiff();
    device.seed(3);
    let model = MlpConfig::new(vec![8, 16, 4]).init(&device);
    let x = Tensor::<2>::random([5, 8], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 3, 0], [5]), &device);
    let fp32 = Output::classification(model.forward(x.clone()), y.clone())
        .loss
        .into_scalar::<f32>();
    for p in [Precision::F16, Precision::Bf16] {
        let logits = precision::autocast(p, || model.forward(x.clone()));
        assert_eq!(
            logits.dtype(),
            DType::from(p.dtype()),
            "{p}: logits in the compute type"
        );
        let loss = precision::autocast(p, || Output::classification(logits, y.clone()).loss);
        assert_eq!(loss.dtype(), DType::F32, "{p}: the loss is fp32");
        let value = loss.clone().into_scalar::<f32>();
        // bf16 keeps 8 bits of mantissa, f16 11: the loss moves, a little.
        assert!(
            (value - fp32).abs() < 0.05 * fp32.abs(),
            "{p}: loss {value} vs fp32 {fp32}"
        );
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        for e in parameters(&model, Some(&grads)) {
            let g = e
                .grad
                .unwrap_or_else(|| panic!("{p}: no gradient for {}", e.path));
            assert_eq!(g.dtype(), DType::F32, "{p}: gradient of {} is fp32", e.path);
            assert_eq!(e.value.dtype(), DType::F32, "{p}: {} stays fp32", e.path);
        }
    }
    // Outside autocast everything is fp32 again.
    assert_eq!(precision::current(), Precision::Fp32);
    assert_eq!(model.forward(x).dtype(), DType::from(FloatDType::F32));
}

/// `precision::linear` under autocast against Burn's composition
/// `linear(cast(x), cast(w), cast(b))` on the input flattened to 2-D (as
/// PyTorch's linear folds the leading dimensions into one product): the same
/// casts and products, so the same output and gradients (input, weight,
/// bias), for a 3-D input.
#[test]
fn autocast_linear_matches_the_composed_casts() {
    let _g = lock();
    let device = ember::runtime::device::cpu().autodiff();
    device.seed(5);
    let layer = LinearConfig::new(12, 6).init(&device);
    let x0 = Tensor::<3>::random([2, 5, 12], Distribution::Normal(0.0, 1.0), &device);
    // A loss whose gradient differs per element.
    let weights = Tensor::<3>::random([2, 5, 6], Distribution::Normal(0.0, 1.0), &device).detach();
    for p in [Precision::F16, Precision::Bf16] {
        let dt = p.dtype();
        let run = |composed: bool| {
            let x = x0.clone().detach().require_grad();
            let y = precision::autocast(p, || {
                if composed {
                    ember::burn::tensor::module::linear(
                        x.clone().reshape([10, 12]).cast(dt),
                        layer.weight.val().cast(dt),
                        layer.bias.as_ref().map(|b| b.val().cast(dt)),
                    )
                    .reshape([2, 5, 6])
                } else {
                    precision::linear(&layer, x.clone())
                }
            });
            assert_eq!(
                y.dtype(),
                DType::from(dt),
                "{p}: output in the compute type"
            );
            let grads = precision::to_f32(y.clone())
                .mul(weights.clone())
                .sum()
                .backward();
            let gx = x.grad(&grads).expect("input gradient");
            let gw = layer.weight.val().grad(&grads).expect("weight gradient");
            let gb = layer
                .bias
                .as_ref()
                .unwrap()
                .val()
                .grad(&grads)
                .expect("bias gradient");
            assert_eq!(
                gx.dtype(),
                DType::F32,
                "{p}: the input's gradient in the input's type"
            );
            assert_eq!(gw.dtype(), DType::F32, "{p}: the weight's gradient is fp32");
            [
                values(precision::to_f32(y.inner())),
                values(gx),
                values(gw),
                values(gb),
            ]
        };
        let composed = run(true);
        let ours = run(false);
        for (name, (a, b)) in [
            "output",
            "input gradient",
            "weight gradient",
            "bias gradient",
        ]
        .iter()
        .zip(ours.iter().zip(&composed))
        {
            assert_close(
                &format!("{p} {name} (expected: the composed casts)"),
                a,
                b,
                F32_OP,
            );
        }
    }
}

/// Under f16/bf16 the graph keeps the input of each linear layer in the low
/// type and the fp32 weight itself, not a low-precision copy of the weight:
/// for a network whose weights outweigh its activations, the memory held
/// between forward and backward falls below fp32's instead of rising above it.
#[test]
fn reduced_precision_keeps_no_weight_copies_for_backward() {
    let _g = lock();
    let device = ember::runtime::device::cpu().autodiff();
    device.seed(15);
    // 8 blocks of two 256×256 layers (4 MiB of fp32 weights, 2 MiB as f16
    // copies) and a batch of 16 (16 KiB per fp32 activation).
    let model = materialize(
        ResidualMlpConfig::new(256, 256, 1, 8)
            .with_batch_norm(false)
            .init(&device),
    );
    let x = Tensor::<2>::random([16, 256], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::<2>::random([16, 1], Distribution::Normal(0.0, 1.0), &device);
    let held = |p: Precision| {
        let before = HEAP.stats().current_bytes;
        let loss = precision::autocast(p, || mse(model.forward(x.clone()), y.clone()));
        let bytes = HEAP.stats().current_bytes.saturating_sub(before);
        drop(loss.backward());
        bytes
    };
    let _warm = held(Precision::Fp32);
    let fp32 = held(Precision::Fp32);
    let f16 = held(Precision::F16);
    let bf16 = held(Precision::Bf16);
    eprintln!(
        "bytes held for backward: fp32 {fp32}, f16 {f16}, bf16 {bf16} (f16 weight copies would add {})",
        8 * 2 * 256 * 256 * 2
    );
    for (p, b) in [(Precision::F16, f16), (Precision::Bf16, bf16)] {
        assert!(
            (b as f64) < 0.75 * fp32 as f64,
            "{p}: {b} bytes held for backward vs fp32 {fp32}"
        );
    }
}

// ---------------------------------------------------------------------------
// Recomputation
// ---------------------------------------------------------------------------

fn grads_of<const D: usize, M: Segmented<D>>(
    model: &M,
    batch: &M::Batch,
    strategy: Strategy,
    seed: u64,
) -> Vec<(String, Vec<f64>)> {
    let device = model.devices()[0].clone();
    device.seed(seed);
    let (_, grads) = forward_backward(model, batch, strategy, 1.0);
    parameters(model, Some(&grads))
        .into_iter()
        .filter_map(|e| e.grad.map(|g| (e.path, values(g))))
        .collect()
}

fn assert_same_grads(what: &str, a: &[(String, Vec<f64>)], b: &[(String, Vec<f64>)]) {
    assert_eq!(a.len(), b.len(), "{what}: number of gradients");
    assert!(!a.is_empty(), "{what}: no gradients");
    for ((pa, ga), (pb, gb)) in a.iter().zip(b) {
        assert_eq!(pa, pb);
        assert_close(&format!("{what}: gradient of {pa}"), ga, gb, RECOMPUTE);
    }
}

fn max_diff(a: &[(String, Vec<f64>)], b: &[(String, Vec<f64>)]) -> f64 {
    a.iter()
        .zip(b)
        .flat_map(|((_, x), (_, y))| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f64::max)
}

#[test]
fn recomputed_gradients_equal_plain_ones_with_dropout() {
    let _g = lock();
    let device = ember::runtime::device::cpu().autodiff();
    device.seed(11);
    // Parameters get their values now, not at first use (which would draw
    // from the RNG between the per-block seeds).
    let model = materialize(
        MlpConfig::new(vec![16, 32, 32, 32, 32, 32, 32, 32, 4])
            .with_dropout(0.3)
            .init(&device),
    );
    let x = Tensor::<2>::random([12, 16], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::<1, Int>::from_data(
        TensorData::new((0..12).map(|i| i % 4).collect::<Vec<i64>>(), [12]),
        &device,
    );
    let batch = (x, y);
    let plain = grads_of(&model, &batch, Strategy::None, 5);
    for s in [Strategy::EveryK(1), Strategy::EveryK(3), Strategy::Auto] {
        assert_same_grads(
            &format!("mlp, recompute {s}"),
            &grads_of(&model, &batch, s, 5),
            &plain,
        );
    }
    // The check has teeth: dropout is active, other masks give other gradients.
    let other = grads_of(&model, &batch, Strategy::None, 6);
    assert!(
        max_diff(&plain, &other) > 1e-3,
        "dropout should change the gradients"
    );
}

#[test]
fn recomputed_gradients_equal_plain_ones_in_a_residual_mlp() {
    let _g = lock();
    let device = ember::runtime::device::cpu().autodiff();
    device.seed(12);
    let model = materialize(
        ResidualMlpConfig::new(8, 32, 2, 9)
            .with_batch_norm(false)
            .init(&device),
    );
    let x = Tensor::<2>::random([16, 8], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::<2>::random([16, 2], Distribution::Normal(0.0, 1.0), &device);
    let batch = (x, y);
    let plain = grads_of(&model, &batch, Strategy::None, 1);
    for s in [Strategy::EveryK(2), Strategy::Auto] {
        assert_same_grads(
            &format!("residual, recompute {s}"),
            &grads_of(&model, &batch, s, 1),
            &plain,
        );
    }
}

#[test]
fn recomputed_gradients_equal_plain_ones_for_minilm_with_lora_dropout() {
    let _g = lock();
    let device = ember::runtime::device::cpu().autodiff();
    device.seed(13);
    let encoder = SentenceEncoder::from_dir(minilm_dir(), &device).unwrap();
    let lora = LoraConfig::new(4)
        .with_alpha(8.0)
        .with_dropout(0.1)
        .with_target_modules(vec!["query".into(), "value".into()]);
    let bert = encoder.model().clone().with_lora(&lora, &device);
    let model = materialize(SentenceClassifier::new(bert, 3, &device));
    // B starts at zero; give it values so that A's gradients are not zero.
    let model = model.map(&mut NudgeLoraB);
    let (ids, mask) = encoder
        .tokenize(&[
            "turn on the lights",
            "what's the weather tomorrow",
            "play some jazz",
            "hi",
        ])
        .unwrap();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 0], [4]), &device);
    let batch = (ids.to_device(&device), mask.to_device(&device), labels);
    let plain = grads_of(&model, &batch, Strategy::None, 9);
    assert!(
        plain.iter().any(|(p, _)| p.contains("lora_A")),
        "LoRA A gets gradients"
    );
    assert_same_grads(
        "minilm+lora, recompute auto",
        &grads_of(&model, &batch, Strategy::Auto, 9),
        &plain,
    );
    assert_same_grads(
        "minilm+lora, recompute every:1",
        &grads_of(&model, &batch, Strategy::EveryK(1), 9),
        &plain,
    );
    let other = grads_of(&model, &batch, Strategy::None, 10);
    assert!(
        max_diff(&plain, &other) > 1e-6,
        "LoRA dropout should change the gradients"
    );
}

/// Sets every `lora_B` weight to small non-zero values.
struct NudgeLoraB;

impl ember::burn::module::ModuleMapper for NudgeLoraB {
    fn map_float<const D: usize>(
        &mut self,
        param: ember::burn::module::Param<Tensor<D>>,
    ) -> ember::burn::module::Param<Tensor<D>> {
        param.map(|t| {
            let shape = t.shape();
            if D == 2 && shape.dims::<D>()[0] == 4 {
                let device = t.device();
                Tensor::random(
                    shape,
                    Distribution::Normal(0.0, 0.02),
                    &device.without_autodiff(),
                )
                .autodiff()
                .require_grad()
            } else {
                t
            }
        })
    }
}

#[test]
fn recompute_and_reduced_precision_lower_peak_memory() {
    let _g = lock();
    let device = ember::runtime::device::cpu().autodiff();
    device.seed(14);
    // Narrow and long, with a large batch: activations (16 blocks × 3 saved
    // [1024, 64] tensors) dominate the gradients (16 × 2 × 64² floats).
    let model = materialize(
        ResidualMlpConfig::new(64, 64, 1, 16)
            .with_batch_norm(false)
            .init(&device),
    );
    let x = Tensor::<2>::random([1024, 64], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::<2>::random([1024, 1], Distribution::Normal(0.0, 1.0), &device);
    let batch = (x, y);
    let peak = |p: Precision, s: Strategy| {
        let (_, stats) = HEAP
            .measure(|| precision::autocast(p, || drop(forward_backward(&model, &batch, s, 1.0))));
        stats.peak_bytes
    };
    let _warm = peak(Precision::Fp32, Strategy::None);
    let plain = peak(Precision::Fp32, Strategy::None);
    let auto = peak(Precision::Fp32, Strategy::Auto);
    let bf16 = peak(Precision::Bf16, Strategy::None);
    eprintln!("peak bytes above the model: fp32 {plain}, fp32+recompute auto {auto}, bf16 {bf16}");
    // √16 = 4 segments: 4 boundaries plus one segment's activations.
    assert!(
        (auto as f64) < 0.5 * plain as f64,
        "recompute auto: {auto} vs {plain}"
    );
    assert!((bf16 as f64) < plain as f64, "bf16: {bf16} vs {plain}");
}
