//! The wgpu backend against the CPU backend (burn-flex), on the machine's
//! adapter — Mesa's lavapipe in CI.
//!
//! The same model, weights and inputs run on both devices; forward outputs,
//! every parameter's gradient and 50 AdamW steps must agree to 1e-4
//! relative, MiniLM's embeddings to 1e-3 (and to sentence-transformers').
//! The test build always has the wgpu backend (a dev-dependency feature).
//! The tests need a Vulkan, Metal or DX12 adapter; on a machine without one
//! each prints one line saying it was skipped and why, and passes — unless
//! `EMBER_REQUIRE_GPU=1` is set (`.ci/run` sets it), under which a missing
//! adapter fails them. An OpenGL adapter counts as missing: wgpu falls back
//! to Mesa's GL through EGL where no Vulkan driver is installed, and these
//! tests are not meant for it. Builds with `--cfg ember_no_gpu_tests` in
//! RUSTFLAGS (tools/cross.sh's ARM builds, tested under QEMU) have no GPU
//! backend and leave this file out.
#![cfg(not(ember_no_gpu_tests))]

mod common;

use common::*;
use ember::burn::module::Module;
use ember::burn::nn::LinearConfig;
use ember::burn::optim::GradientsParams;
use ember::burn::tensor::{DType, Device, Distribution, Int, Tensor, TensorData};
use ember::models::classifier::SentenceClassifier;
use ember::models::cnn::SmallCnnConfig;
use ember::models::mlp::MlpConfig;
use ember::models::residual::ResidualMlpConfig;
use ember::models::sentence::SentenceEncoder;
use ember::runtime::device::{self, Backend};
use ember::runtime::loss::{cross_entropy, mse};
use ember::runtime::params::parameters;
use ember::runtime::peft::LoraConfig;
use ember::runtime::precision::{self, Precision};

/// f32 on a GPU against f32 on the CPU: other reduction orders and fused
/// multiply-adds move results by ~1e-6 relative; the acceptance bound for
/// forward outputs, gradients and 50 optimizer steps is 1e-4.
const GPU_VS_CPU: Tol = Tol {
    name: "GPU_VS_CPU",
    rtol: 1e-4,
    atol: 1e-6,
};
/// Sentence embeddings (unit vectors) on a GPU against the CPU and against
/// sentence-transformers: the acceptance bound.
const GPU_EMBEDDINGS: Tol = Tol {
    name: "GPU_EMBEDDINGS",
    rtol: 0.0,
    atol: 1e-3,
};
/// f16 compute on both devices: inputs and weights rounded to f16 (relative
/// step 2^-11), products accumulated over 64 terms in f16 or f32 depending on
/// the kernel — a few f16 steps apart.
const GPU_F16: Tol = Tol {
    name: "GPU_F16",
    rtol: 1e-2,
    atol: 1e-2,
};

/// Set to `1` (as `.ci/run` does), a missing adapter fails the GPU tests
/// instead of skipping them.
const REQUIRE_GPU: &str = "EMBER_REQUIRE_GPU";

/// The wgpu device `test` runs on. Without a Vulkan, Metal or DX12 adapter:
/// `None`, after one line on the terminal naming the test and the reason
/// (written past the test harness's capture, so a skip is never silent), or
/// a failure under `EMBER_REQUIRE_GPU=1`.
fn gpu(test: &str) -> Option<Device> {
    match gpu_adapter() {
        Ok(device) => Some(device),
        Err(why) if gpu_required() => {
            panic!("{test}: {why}; {REQUIRE_GPU} is set, so a missing adapter is a failure")
        }
        Err(why) => {
            use std::io::Write;
            // libtest captures `eprintln!`, not writes to the stderr handle.
            let _ = writeln!(
                std::io::stderr(),
                "gpu: {test} skipped: {why} (set {REQUIRE_GPU}=1 to make this a failure)"
            );
            None
        }
    }
}

fn gpu_adapter() -> Result<Device, String> {
    let device = device::init(Backend::Wgpu).map_err(|e| {
        format!("no wgpu adapter ({e}); lavapipe: apt-get install mesa-vulkan-drivers")
    })?;
    let described = device::description(Backend::Wgpu).unwrap_or_default();
    if device::graphics_api(Backend::Wgpu) == Some(device::GraphicsApi::Gl) {
        return Err(format!(
            "only an OpenGL adapter ({described}), no Vulkan, Metal or DX12 one; lavapipe: apt-get install mesa-vulkan-drivers"
        ));
    }
    eprintln!("wgpu: {described}");
    Ok(device)
}

fn gpu_required() -> bool {
    std::env::var(REQUIRE_GPU).is_ok_and(|v| !matches!(v.as_str(), "" | "0"))
}

fn cpu() -> Device {
    ember::runtime::device::cpu()
}

/// Compares GPU values with the CPU's, naming the worst element.
fn assert_matches_cpu(what: &str, gpu: &[f64], cpu: &[f64], tol: Tol) {
    assert_eq!(
        gpu.len(),
        cpu.len(),
        "{what}: {} values on the GPU, {} on the CPU",
        gpu.len(),
        cpu.len()
    );
    let worst = gpu
        .iter()
        .zip(cpu)
        .enumerate()
        .map(|(i, (g, c))| (i, (g - c).abs() / (tol.atol + tol.rtol * c.abs())))
        .fold(
            (0, 0.0f64),
            |w, x| if x.1.is_nan() || x.1 > w.1 { x } else { w },
        );
    assert!(
        worst.1 <= 1.0,
        "{what}: element {} is {} on the GPU and {} on the CPU ({:.1}× over {} = atol {:e} + rtol {:e}·|cpu|)",
        worst.0,
        gpu[worst.0],
        cpu[worst.0],
        worst.1,
        tol.name,
        tol.atol,
        tol.rtol
    );
}

/// Every parameter (and, with `grads`, its gradient) of two copies of a
/// model, one per device.
fn assert_params_match<M: Module>(
    what: &str,
    on_gpu: &M,
    gpu_grads: Option<&GradientsParams>,
    on_cpu: &M,
    cpu_grads: Option<&GradientsParams>,
) {
    let (g, c) = (parameters(on_gpu, gpu_grads), parameters(on_cpu, cpu_grads));
    assert_eq!(g.len(), c.len());
    for (g, c) in g.into_iter().zip(c) {
        assert_eq!(g.path, c.path);
        assert_matches_cpu(
            &format!("{what}: {}", g.path),
            &values(g.value),
            &values(c.value),
            GPU_VS_CPU,
        );
        match (g.grad, c.grad) {
            (Some(gg), Some(cg)) => assert_matches_cpu(
                &format!("{what}: gradient of {}", g.path),
                &values(gg),
                &values(cg),
                GPU_VS_CPU,
            ),
            (None, None) => {} // frozen, or a buffer such as batch norm's running mean
            (gg, cg) => panic!(
                "{what}: {} has a gradient on the {} only",
                g.path,
                if gg.is_some() && cg.is_none() {
                    "GPU"
                } else {
                    "CPU"
                }
            ),
        }
    }
}

#[test]
fn mlp_forward_gradients_and_50_adamw_steps_match_the_cpu() {
    let Some(g) = gpu("mlp_forward_gradients_and_50_adamw_steps_match_the_cpu") else {
        return;
    };
    let (c, g) = (cpu().autodiff(), g.autodiff());
    c.seed(7);
    let model_c = MlpConfig::new(vec![16, 64, 64, 1]).init(&c);
    let x = Tensor::<2>::random([128, 16], Distribution::Normal(0.0, 1.0), &c);
    let y = x.clone().slice([0..128, 0..1]).sin() + x.clone().slice([0..128, 1..2]).mul_scalar(0.5);
    let model_g = model_c.clone().fork(&g);
    let (xg, yg) = (x.clone().to_device(&g), y.clone().to_device(&g));

    // Forward and gradients.
    let out_c = model_c.forward(x.clone());
    let out_g = model_g.forward(xg.clone());
    assert_matches_cpu(
        "mlp forward",
        &values(out_g.clone()),
        &values(out_c.clone()),
        GPU_VS_CPU,
    );
    let grads_c = GradientsParams::from_grads(mse(out_c, y.clone()).backward(), &model_c);
    let grads_g = GradientsParams::from_grads(mse(out_g, yg.clone()).backward(), &model_g);
    assert_params_match("mlp", &model_g, Some(&grads_g), &model_c, Some(&grads_c));

    // 50 AdamW steps on each device from the same start.
    let (mut mc, mut mg) = (model_c, model_g);
    let (mut oc, mut og) = (
        ember::runtime::optim::adamw(0.01).init(),
        ember::runtime::optim::adamw(0.01).init(),
    );
    let (mut lc, mut lg) = (Vec::new(), Vec::new());
    for _ in 0..50 {
        let loss = mse(mc.forward(x.clone()), y.clone());
        lc.push(values(loss.clone())[0]);
        let grads = GradientsParams::from_grads(loss.backward(), &mc);
        mc = oc.step(1e-2, mc, grads);
        let loss = mse(mg.forward(xg.clone()), yg.clone());
        lg.push(values(loss.clone())[0]);
        let grads = GradientsParams::from_grads(loss.backward(), &mg);
        mg = og.step(1e-2, mg, grads);
    }
    assert!(lc[49] < 0.5 * lc[0], "the CPU run did not learn: {lc:?}");
    assert_matches_cpu("mlp losses over 50 AdamW steps", &lg, &lc, GPU_VS_CPU);
    assert_params_match("mlp after 50 AdamW steps", &mg, None, &mc, None);
}

#[test]
fn residual_mlp_and_cnn_forward_and_gradients_match_the_cpu() {
    let Some(g) = gpu("residual_mlp_and_cnn_forward_and_gradients_match_the_cpu") else {
        return;
    };
    let (c, g) = (cpu().autodiff(), g.autodiff());
    c.seed(11);
    let res_c = ResidualMlpConfig::new(32, 64, 3, 4).init(&c);
    let res_g = res_c.clone().fork(&g);
    let x = Tensor::<2>::random([16, 32], Distribution::Normal(0.0, 1.0), &c);
    let (out_c, out_g) = (res_c.forward(x.clone()), res_g.forward(x.to_device(&g)));
    assert_matches_cpu(
        "residual forward",
        &values(out_g.clone()),
        &values(out_c.clone()),
        GPU_VS_CPU,
    );
    let grads_c = GradientsParams::from_grads(out_c.powi_scalar(2).mean().backward(), &res_c);
    let grads_g = GradientsParams::from_grads(out_g.powi_scalar(2).mean().backward(), &res_g);
    assert_params_match("residual", &res_g, Some(&grads_g), &res_c, Some(&grads_c));

    let cnn_c = SmallCnnConfig::new().init(&c);
    let cnn_g = cnn_c.clone().fork(&g);
    let x = Tensor::<4>::random([8, 1, 8, 8], Distribution::Uniform(0.0, 1.0), &c);
    let labels =
        Tensor::<1, Int>::from_data(TensorData::new((0..8i64).collect::<Vec<_>>(), [8]), &c);
    let (out_c, out_g) = (cnn_c.forward(x.clone()), cnn_g.forward(x.to_device(&g)));
    assert_matches_cpu(
        "cnn forward",
        &values(out_g.clone()),
        &values(out_c.clone()),
        GPU_VS_CPU,
    );
    let grads_c =
        GradientsParams::from_grads(cross_entropy(out_c, labels.clone()).backward(), &cnn_c);
    let grads_g = GradientsParams::from_grads(
        cross_entropy(out_g, labels.to_device(&g)).backward(),
        &cnn_g,
    );
    assert_params_match("cnn", &cnn_g, Some(&grads_g), &cnn_c, Some(&grads_c));
}

#[test]
fn minilm_embeddings_match_the_cpu_and_sentence_transformers() {
    let Some(g) = gpu("minilm_embeddings_match_the_cpu_and_sentence_transformers") else {
        return;
    };
    let f = Fixture::load("minilm_embeddings.safetensors");
    let texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The girl is carrying a baby.",
        "A man is riding a horse.",
        "Set an alarm for seven tomorrow morning",
        "What is the weather like in Paris?",
    ];
    let on_gpu = SentenceEncoder::from_dir(minilm_dir(), &g).expect("model loads on wgpu");
    let on_cpu = SentenceEncoder::from_dir(minilm_dir(), &cpu()).expect("model loads on the CPU");
    let e_gpu = on_gpu.encode(&texts, 4).unwrap();
    let e_cpu = on_cpu.encode(&texts, 4).unwrap();
    let flat = |e: &Vec<Vec<f32>>| e.iter().flatten().map(|&v| v as f64).collect::<Vec<_>>();
    assert_matches_cpu(
        "MiniLM embeddings",
        &flat(&e_gpu),
        &flat(&e_cpu),
        GPU_EMBEDDINGS,
    );

    // The fixture's sentences, batched as the CPU test does, against
    // sentence-transformers itself.
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_embeddings.safetensors"
    ))
    .unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let all: Vec<String> =
        serde_json::from_str(meta.metadata().as_ref().unwrap().get("sentences").unwrap()).unwrap();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let e = on_gpu.encode(&refs, 8).unwrap();
    let (expected, _) = f.values("embeddings");
    assert_matches_cpu(
        "MiniLM embeddings against sentence-transformers",
        &flat(&e),
        &expected,
        GPU_EMBEDDINGS,
    );
}

#[test]
fn lora_classifier_gradients_match_the_cpu() {
    let Some(g) = gpu("lora_classifier_gradients_match_the_cpu") else {
        return;
    };
    let (c, g) = (cpu().autodiff(), g.autodiff());
    c.seed(3);
    let encoder = SentenceEncoder::from_dir(minilm_dir(), &c).expect("model loads");
    let lora = LoraConfig::new(4)
        .with_alpha(8.0)
        .with_target_modules(vec!["query".into(), "value".into()]);
    let bert = encoder.model().clone().with_lora(&lora, &c);
    let model_c = ember::runtime::params::materialize(SentenceClassifier::new(bert, 3, &c));
    // LoRA's B starts at zero; give it values so A's gradient is not zero too.
    let model_c = perturb(model_c);
    let model_g = model_c.clone().fork(&g);
    let (ids, mask) = encoder
        .tokenize(&[
            "turn the lights off",
            "play some jazz please",
            "what time is it",
        ])
        .unwrap();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2], [3]), &c);
    let out_c = model_c.forward(ids.clone().to_device(&c), mask.clone().to_device(&c));
    let out_g = model_g.forward(ids.to_device(&g), mask.to_device(&g));
    assert_matches_cpu(
        "classifier logits",
        &values(out_g.clone()),
        &values(out_c.clone()),
        GPU_VS_CPU,
    );
    let grads_c =
        GradientsParams::from_grads(cross_entropy(out_c, labels.clone()).backward(), &model_c);
    let grads_g = GradientsParams::from_grads(
        cross_entropy(out_g, labels.to_device(&g)).backward(),
        &model_g,
    );
    assert_params_match(
        "LoRA classifier",
        &model_g,
        Some(&grads_g),
        &model_c,
        Some(&grads_c),
    );
    let trained = parameters(&model_c, Some(&grads_c))
        .into_iter()
        .filter(|p| p.grad.is_some())
        .count();
    assert_eq!(
        trained,
        6 * 4 + 2,
        "LoRA A and B of query and value in 6 layers, and the head"
    );
}

/// Adds small deterministic values to every LoRA `B` (zero at init).
fn perturb<M: Module>(model: M) -> M {
    struct Perturb(Vec<String>);
    impl ember::burn::module::ModuleMapper for Perturb {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn map_float<const D: usize>(
            &mut self,
            param: ember::burn::module::Param<Tensor<D>>,
        ) -> ember::burn::module::Param<Tensor<D>> {
            if self.0.iter().any(|n| n == "lora_B") {
                param.map(|t| {
                    let n = t.shape().num_elements();
                    let v: Vec<f32> = (0..n)
                        .map(|i| ((i * 7919 % 101) as f32 - 50.0) * 1e-3)
                        .collect();
                    Tensor::<1>::from_data(TensorData::new(v, [n]), &t.device())
                        .reshape(t.shape())
                        .require_grad()
                })
            } else {
                param
            }
        }
    }
    model.map(&mut Perturb(Vec::new()))
}

/// Mixed precision on the GPU computes in real f16 when the adapter has
/// shader f16 (lavapipe does): the linear layer's product is an f16 tensor,
/// it matches the CPU's f16 result, and the gradient reaching the fp32
/// master weight matches too.
#[test]
fn f16_autocast_computes_in_f16_on_the_gpu() {
    let Some(g) = gpu("f16_autocast_computes_in_f16_on_the_gpu") else {
        return;
    };
    let (c, g) = (cpu().autodiff(), g.autodiff());
    let described = device::description(Backend::Wgpu).unwrap();
    assert!(
        described.contains("shader f16: yes"),
        "this adapter has no f16 arithmetic: {described}"
    );
    c.seed(5);
    let layer_c = LinearConfig::new(64, 32).init(&c);
    let layer_g = layer_c.clone().fork(&g);
    let x = Tensor::<2>::random([16, 64], Distribution::Normal(0.0, 1.0), &c);
    let yc = precision::autocast(Precision::F16, || precision::linear(&layer_c, x.clone()));
    let yg = precision::autocast(Precision::F16, || {
        precision::linear(&layer_g, x.to_device(&g))
    });
    assert_eq!(yg.dtype(), DType::F16, "the GPU product is not f16");
    assert_matches_cpu(
        "f16 linear",
        &values(yg.clone()),
        &values(yc.clone()),
        GPU_F16,
    );
    let grads_c = GradientsParams::from_grads(
        yc.cast(DType::F32).powi_scalar(2).mean().backward(),
        &layer_c,
    );
    let grads_g = GradientsParams::from_grads(
        yg.cast(DType::F32).powi_scalar(2).mean().backward(),
        &layer_g,
    );
    let (pc, pg) = (
        parameters(&layer_c, Some(&grads_c)),
        parameters(&layer_g, Some(&grads_g)),
    );
    for (pg, pc) in pg.into_iter().zip(pc) {
        assert_eq!(
            pg.value.dtype(),
            DType::F32,
            "{}: master weights stay fp32",
            pg.path
        );
        let (gg, gc) = (pg.grad.unwrap(), pc.grad.unwrap());
        assert_eq!(
            gg.dtype(),
            DType::F32,
            "{}: gradient of the fp32 master weight",
            pg.path
        );
        assert_matches_cpu(
            &format!("f16 gradient of {}", pg.path),
            &values(gg),
            &values(gc),
            GPU_F16,
        );
    }
}

/// GELU's gradient on the GPU is the exact one (Burn 0.22.1's generic
/// `gelu_backward`, which the GPU backends use, differentiates the tanh
/// approximation instead: off by up to 3e-3 here; `ember_runtime::ops::gelu`).
///
/// Both sides approximate erf, so the bound per element comes from their
/// documented errors, not from a relative tolerance (GELU of a negative `x`
/// is nearly 0, but erf's absolute error still moves it by up to ½·|x|·err):
/// the CPU's rational erf keeps GELU within 4e-7·max(|x|, 1) of the exact
/// value and its derivative within 4e-7 (the unit tests of
/// `ops::gelu`); the GPU's polynomial erf (1.5e-7) moves GELU by up
/// to 0.75e-7·|x| and the derivative by 0.75e-7, plus f32 rounding of the
/// few operations around it. Inputs are fixed (evenly spaced over [−8, 8]),
/// not drawn from the device's generator, which tests running in parallel
/// share.
#[test]
fn gelu_gradient_is_exact_on_the_gpu() {
    use ember::runtime::ops::gelu;
    let Some(g) = gpu("gelu_gradient_is_exact_on_the_gpu") else {
        return;
    };
    let (c, g) = (cpu().autodiff(), g.autodiff());
    let n = 64 * 384;
    let xs: Vec<f32> = (0..n)
        .map(|i| -8.0 + 16.0 * i as f32 / (n - 1) as f32)
        .collect();
    // Weights in [−1, 1) from a multiplicative hash of the index.
    let ws: Vec<f32> = (0..n as u64)
        .map(|i| ((i.wrapping_mul(2_654_435_761) % 2000) as f32 / 1000.0) - 1.0)
        .collect();
    let x = Tensor::<2>::from_data(TensorData::new(xs.clone(), [64, 384]), &c);
    let w = Tensor::<2>::from_data(TensorData::new(ws.clone(), [64, 384]), &c);
    let (xc, xg) = (x.clone().require_grad(), x.to_device(&g).require_grad());
    let (yc, yg) = (gelu(xc.clone()), gelu(xg.clone()));
    let gc = (yc.clone() * w.clone()).sum().backward();
    let gg = (yg.clone() * w.to_device(&g)).sum().backward();
    let check = |what: &str, gpu: &[f64], cpu: &[f64], bound: &dyn Fn(usize) -> f64| {
        let worst = (0..n)
            .map(|i| (i, (gpu[i] - cpu[i]).abs() / bound(i)))
            .fold(
                (0, 0.0f64),
                |w, x| if x.1.is_nan() || x.1 > w.1 { x } else { w },
            );
        let i = worst.0;
        assert!(
            worst.1 <= 1.0,
            "{what}: at x = {}, {} on the GPU and {} on the CPU ({:.1}× over the bound {:e})",
            xs[i],
            gpu[i],
            cpu[i],
            worst.1,
            bound(i)
        );
    };
    check("gelu", &values(yg), &values(yc), &|i| {
        1e-7 + 5e-7 * (xs[i].abs() as f64).max(1.0)
    });
    let (grad_g, grad_c) = (values(xg.grad(&gg).unwrap()), values(xc.grad(&gc).unwrap()));
    check("gelu gradient", &grad_g, &grad_c, &|i| {
        1e-7 + 1e-6 * ws[i].abs() as f64
    });
}

/// On a machine without a GPU driver a GPU test passes after saying it was
/// skipped, and fails under `EMBER_REQUIRE_GPU=1`: one of them, run again
/// from this test binary in a child process where neither the Vulkan loader
/// nor EGL can find a driver (pointing `VK_ICD_FILENAMES` alone at a missing
/// file is not enough: wgpu then falls back to Mesa's GL through EGL). Only
/// on Linux, where those two variables hide every adapter.
#[test]
#[cfg(target_os = "linux")]
fn without_an_adapter_gpu_tests_say_they_are_skipped_or_fail_when_required() {
    let test = "gelu_gradient_is_exact_on_the_gpu";
    let run = |required: bool| {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child
            .args(["--exact", test, "--test-threads=1"])
            .env("VK_ICD_FILENAMES", "/nonexistent/vulkan-icd.json")
            .env(
                "__EGL_VENDOR_LIBRARY_FILENAMES",
                "/nonexistent/egl-vendor.json",
            )
            .env_remove(REQUIRE_GPU);
        if required {
            child.env(REQUIRE_GPU, "1");
        }
        let out = child.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (passed, text) = run(false);
    assert!(passed, "without {REQUIRE_GPU} the test must pass:\n{text}");
    assert!(
        text.contains(&format!("gpu: {test} skipped: no wgpu adapter")),
        "the skip must be said:\n{text}"
    );
    assert!(text.contains("1 passed"), "{text}");
    let (passed, text) = run(true);
    assert!(
        !passed,
        "under {REQUIRE_GPU}=1 a missing adapter must fail the test:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "{REQUIRE_GPU} is set, so a missing adapter is a failure"
        )),
        "{text}"
    );
}
