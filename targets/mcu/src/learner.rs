//! The online learner: a window of recent samples → two linear layers → the
//! next sample.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use embedded_hal::delay::DelayNs;
use ember_runtime::loss::mse;
use ember_runtime::optim;
use ember_runtime::rng::SplitMix64;
use safetensors::tensor::{Dtype, TensorView};

use crate::error::Error;
use crate::sensor::Sensor;
use crate::storage::Storage;

/// The update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Optimizer {
    /// Plain SGD (`torch.optim.SGD`), no state.
    Sgd,
    /// Adam with PyTorch's defaults (`torch.optim.Adam`), two moments per
    /// parameter: three times the parameter memory in all.
    Adam,
}

/// What a learner is and how much heap it may use.
///
/// ```
/// use ember_mcu::{LearnerConfig, Optimizer};
///
/// let config = LearnerConfig::new(16, 8).with_optimizer(Optimizer::Sgd).with_lr(0.05).with_heap_budget(48 * 1024);
/// assert_eq!(config.num_params(), 16 * 8 + 8 + 8 + 1);
/// // ~32 KiB, or ~42 KiB where a GPU backend is compiled into the same binary.
/// assert!(config.heap_estimate().total <= 48 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct LearnerConfig {
    /// Samples the model sees to predict the next one (its input size).
    pub window: usize,
    /// Width of the hidden layer.
    pub hidden: usize,
    /// The update rule (default Adam).
    pub optimizer: Optimizer,
    /// Learning rate (default 0.01).
    pub lr: f64,
    /// Examples per update: 1 learns from every sample, `n` collects `n`
    /// (window, next sample) pairs and takes one step on their mean loss.
    pub batch: usize,
    /// The most heap bytes the learner may use, everything included
    /// (default 64 KiB); see [`heap_estimate`](Self::heap_estimate).
    pub heap_budget: usize,
    /// Seed of the weight initialisation.
    pub seed: u64,
}

impl LearnerConfig {
    /// A model reading `window` samples through `hidden` units, with the
    /// defaults: Adam, learning rate 0.01, batch 1, 64 KiB of heap, seed 0.
    pub fn new(window: usize, hidden: usize) -> Self {
        Self {
            window,
            hidden,
            optimizer: Optimizer::Adam,
            lr: 0.01,
            batch: 1,
            heap_budget: 64 * 1024,
            seed: 0,
        }
    }

    /// Sets the update rule.
    pub fn with_optimizer(mut self, optimizer: Optimizer) -> Self {
        self.optimizer = optimizer;
        self
    }

    /// Sets the learning rate.
    pub fn with_lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }

    /// Sets the mini-batch size.
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Sets the heap budget in bytes.
    pub fn with_heap_budget(mut self, bytes: usize) -> Self {
        self.heap_budget = bytes;
        self
    }

    /// Sets the initialisation seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Number of trainable parameters: `window·hidden + hidden` (first layer)
    /// `+ hidden + 1` (second layer).
    pub fn num_params(&self) -> usize {
        self.window * self.hidden + self.hidden + self.hidden + 1
    }

    /// What the learner needs on the heap with this configuration (an upper
    /// bound, see [`HeapEstimate`]).
    pub fn heap_estimate(&self) -> HeapEstimate {
        const F32: usize = core::mem::size_of::<f32>();
        let p = self.num_params() * F32;
        let optimizer = match self.optimizer {
            Optimizer::Sgd => 0,
            Optimizer::Adam => 2 * p,
        };
        // Optimizer step: the new parameters, the new moments (Adam) and
        // one temporary exist next to the old ones and the gradients.
        let update = p + optimizer + p;
        // Per example: the broadcast product of each layer (`in × out`
        // values, see `dense`), the input, hidden and output values and their
        // gradients, and the pending batch buffer.
        let activations = self.batch * (self.window * self.hidden + self.hidden) * F32
            + self.batch * (self.window + 2 * self.hidden + 1) * F32 * 2
            + self.batch * (self.window + 1) * F32;
        // Saving builds the safetensors file (data + header) from a copy of
        // each tensor's data, transposed.
        let persistence = 2 * p + SAFETENSORS_HEADER;
        // Burn's global state, autodiff graph nodes, tensor handles,
        // parameter ids, the optimizer's per-parameter map, the window.
        let gpu = ember_runtime::device::Backend::ALL
            .iter()
            .any(|b| *b != ember_runtime::device::Backend::Cpu && b.is_compiled());
        let overhead =
            OVERHEAD_FIXED + if gpu { OVERHEAD_GPU_HANDLES } else { 0 } + self.window * F32;
        // The phases do not overlap: the forward/backward pass, the update,
        // saving. Parameters and optimizer state live throughout.
        let phase = (p + activations).max(p + update).max(persistence);
        let total = overhead + (p + optimizer + phase) * MARGIN_NUM / MARGIN_DEN;
        HeapEstimate {
            parameters: p,
            gradients: p,
            optimizer,
            update,
            activations,
            persistence,
            overhead,
            total,
        }
    }
}

/// The safetensors header of the four tensors (JSON, padded), with margin.
const SAFETENSORS_HEADER: usize = 512;
/// The part of the heap that does not scale with the model: about 20 KiB
/// measured on the host for the smallest model, 28 KiB for the first learner
/// of a process (Burn's lazily created global state), 64-bit pointers (so an
/// upper bound for 32-bit targets); see `docs/mcu.md` for the calibration.
const OVERHEAD_FIXED: usize = 28 * 1024;
/// When a GPU backend is compiled into the same binary (as in the
/// workspace's test build, which has wgpu), Burn's tensor and device handles
/// are larger: the 64 KiB host test then peaks at 37.7 KiB instead of under
/// 32 KiB. Firmware never has a GPU backend.
const OVERHEAD_GPU_HANDLES: usize = 10 * 1024;
/// Margin on the part that scales with the model (×5/4).
const MARGIN_NUM: usize = 5;
const MARGIN_DEN: usize = 4;

/// The heap a learner needs, by part, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeapEstimate {
    /// The parameters (f32).
    pub parameters: usize,
    /// Their gradients.
    pub gradients: usize,
    /// Optimizer state (Adam's two moments; none for SGD).
    pub optimizer: usize,
    /// Transient copies while an update is applied.
    pub update: usize,
    /// Activations, the layers' broadcast products and the gradients for one
    /// mini-batch, and the batch buffer.
    pub activations: usize,
    /// Serialising the weights to safetensors.
    pub persistence: usize,
    /// Autodiff graph, tensor handles, optimizer bookkeeping, the window.
    pub overhead: usize,
    /// What [`Learner::new`] checks against the budget:
    /// `overhead + (parameters + optimizer + max(gradients + activations,
    /// gradients + update, persistence)) × 5/4` (the phases do not overlap;
    /// the factor is a margin on the measured peaks).
    pub total: usize,
}

/// The model: `nn.Sequential(nn.Linear(window, hidden), nn.ReLU(), nn.Linear(hidden, 1))`.
#[derive(Module, Debug)]
struct Net {
    l0: Linear,
    l2: Linear,
}

impl Net {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        dense(&self.l2, relu(dense(&self.l0, x)))
    }
}

/// `x·W + b` as a broadcast product summed over the input dimension, not a
/// matrix multiplication: Burn flex's matmul goes through the `gemm` crate,
/// which allocates packing buffers sized for the CPU's caches (hundreds of
/// KiB, whatever the matrix size) on every call without `std`. For the tiny
/// layers of this learner the product (`batch × in × out` values) is smaller
/// than those buffers by orders of magnitude, and autodiff needs only
/// elementwise and reduction ops.
fn dense(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    let [batch, d_in] = x.dims();
    let weight = layer.weight.val(); // [in, out]
    let d_out = weight.dims()[1];
    let y = x
        .reshape([batch, d_in, 1])
        .mul(weight.unsqueeze::<3>())
        .sum_dim(1)
        .reshape([batch, d_out]);
    match &layer.bias {
        Some(bias) => y.add(bias.val().unsqueeze::<2>()),
        None => y,
    }
}

/// What [`Learner::run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct RunStats {
    /// Samples read.
    pub samples: usize,
    /// Samples that were predicted before being learnt (the window was full).
    pub predicted: usize,
    /// Mean squared error of those predictions.
    pub mse: f32,
    /// Optimizer steps taken.
    pub updates: usize,
}

/// An online learner for a stream of samples: it predicts each sample from the
/// `window` before it, then learns from the truth.
///
/// ```
/// use ember_mcu::{Learner, LearnerConfig, RamStorage};
///
/// let mut a = Learner::new(LearnerConfig::new(4, 4))?;
/// for t in 0..50 { a.observe((t % 5) as f32 * 0.1); }
/// let mut flash = RamStorage::new(1024);
/// a.save(&mut flash)?;
///
/// let mut b = Learner::new(LearnerConfig::new(4, 4).with_seed(7))?;
/// b.restore(&mut flash)?;
/// let window = [0.1, 0.2, 0.3, 0.4];
/// assert_eq!(a.predict_from(&window)?, b.predict_from(&window)?);
/// # Ok::<(), ember_mcu::Error>(())
/// ```
pub struct Learner {
    config: LearnerConfig,
    /// The autodiff device (training) and the plain one (predictions).
    device: Device,
    plain: Device,
    net: Option<Net>,
    optim: ModuleOptimizer,
    /// The most recent samples, oldest first; `filled` of them are valid.
    window: Vec<f32>,
    filled: usize,
    /// The pending mini-batch: inputs (row-major) and targets.
    inputs: Vec<f32>,
    targets: Vec<f32>,
    updates: usize,
}

impl fmt::Debug for Learner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Learner")
            .field("config", &self.config)
            .field("filled", &self.filled)
            .field("pending", &self.targets.len())
            .field("updates", &self.updates)
            .finish_non_exhaustive()
    }
}

/// Uniform in `[-bound, bound)`, for the initialisation.
fn uniform(rng: &mut SplitMix64, bound: f32) -> f32 {
    (2.0 * rng.next_unit_f32() - 1.0) * bound
}

fn make_optimizer(config: &LearnerConfig) -> ModuleOptimizer {
    match config.optimizer {
        Optimizer::Sgd => optim::sgd(0.0).init(),
        Optimizer::Adam => optim::adam(0.0).init(),
    }
}

/// A Burn `Linear` (weight `[in, out]`) from PyTorch-layout data (weight
/// `[out, in]`, row-major).
fn linear(
    weight_out_in: &[f32],
    bias: &[f32],
    d_in: usize,
    d_out: usize,
    device: &Device,
) -> Linear {
    let mut w = vec![0.0f32; d_in * d_out];
    for o in 0..d_out {
        for i in 0..d_in {
            w[i * d_out + o] = weight_out_in[o * d_in + i];
        }
    }
    Linear {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(w, [d_in, d_out]), device)),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias.to_vec(), [d_out]),
            device,
        ))),
    }
}

/// PyTorch-layout data (`[out, in]`) of a Burn `Linear`'s weight, and its bias.
fn linear_data(layer: &Linear) -> (Vec<f32>, Vec<f32>) {
    let [d_in, d_out] = layer.weight.shape().dims();
    let data = layer.weight.val().into_data();
    let w = data.as_slice::<f32>().expect("f32 weights");
    let mut out = vec![0.0f32; d_in * d_out];
    for i in 0..d_in {
        for o in 0..d_out {
            out[o * d_in + i] = w[i * d_out + o];
        }
    }
    let bias = match &layer.bias {
        Some(b) => b
            .val()
            .into_data()
            .as_slice::<f32>()
            .expect("f32 bias")
            .to_vec(),
        None => vec![0.0; d_out],
    };
    (out, bias)
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

impl Learner {
    /// A learner with freshly initialised weights (PyTorch's `nn.Linear`
    /// default, `U(−1/√fan_in, 1/√fan_in)`, from [`LearnerConfig::seed`]).
    ///
    /// Fails with [`Error::InvalidConfig`] for a zero window, hidden size or
    /// batch or a non-positive learning rate, and with [`Error::HeapBudget`]
    /// when [`LearnerConfig::heap_estimate`] exceeds
    /// [`LearnerConfig::heap_budget`] — before allocating anything.
    pub fn new(config: LearnerConfig) -> Result<Self, Error> {
        if config.window == 0 {
            return Err(Error::InvalidConfig("window must be at least 1"));
        }
        if config.hidden == 0 {
            return Err(Error::InvalidConfig("hidden must be at least 1"));
        }
        if config.batch == 0 {
            return Err(Error::InvalidConfig("batch must be at least 1"));
        }
        if !(config.lr > 0.0 && config.lr.is_finite()) {
            return Err(Error::InvalidConfig("lr must be positive and finite"));
        }
        let needed = config.heap_estimate().total;
        if needed > config.heap_budget {
            return Err(Error::HeapBudget {
                needed,
                budget: config.heap_budget,
            });
        }

        let plain = ember_runtime::device::cpu();
        let device = plain.clone().autodiff();
        let (w, h) = (config.window, config.hidden);
        let mut rng = SplitMix64::new(config.seed);
        let k0 = 1.0 / libm::sqrtf(w as f32);
        let k2 = 1.0 / libm::sqrtf(h as f32);
        let w0: Vec<f32> = (0..h * w).map(|_| uniform(&mut rng, k0)).collect();
        let b0: Vec<f32> = (0..h).map(|_| uniform(&mut rng, k0)).collect();
        let w2: Vec<f32> = (0..h).map(|_| uniform(&mut rng, k2)).collect();
        let b2: Vec<f32> = vec![uniform(&mut rng, k2)];
        let net = Net {
            l0: linear(&w0, &b0, w, h, &device),
            l2: linear(&w2, &b2, h, 1, &device),
        };
        Ok(Self {
            optim: make_optimizer(&config),
            config,
            device,
            plain,
            net: Some(net),
            window: vec![0.0; w],
            filled: 0,
            inputs: Vec::with_capacity(config.batch * w),
            targets: Vec::with_capacity(config.batch),
            updates: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LearnerConfig {
        &self.config
    }

    /// Optimizer steps taken so far.
    pub fn updates(&self) -> usize {
        self.updates
    }

    fn net(&self) -> &Net {
        self.net
            .as_ref()
            .expect("the model is only taken out during a step")
    }

    /// The model's prediction of the sample that follows `window` (oldest
    /// first, exactly [`LearnerConfig::window`] samples). Learns nothing.
    pub fn predict_from(&self, window: &[f32]) -> Result<f32, Error> {
        if window.len() != self.config.window {
            return Err(Error::InvalidConfig(
                "the window passed to predict_from has the wrong length",
            ));
        }
        // Without autodiff: Burn's autodiff keeps the graph of a forward pass
        // that is never differentiated until the next backward pass (about
        // 10 KB per prediction here), so predictions use the plain model.
        let net = self.net().valid();
        let x = Tensor::<2>::from_data(
            TensorData::new(window.to_vec(), [1, self.config.window]),
            &self.plain,
        );
        let y = net.forward(x).into_data();
        Ok(y.as_slice::<f32>().expect("f32 output")[0])
    }

    /// The prediction of the next sample from the last `window` observed
    /// ones; `None` until that many have been observed.
    pub fn predict(&self) -> Option<f32> {
        (self.filled == self.config.window)
            .then(|| self.predict_from(&self.window).expect("window length"))
    }

    /// Feeds one sample: returns the prediction that was made for it from the
    /// samples before (`None` while the window fills), then learns from it —
    /// at once with `batch = 1`, or when the mini-batch is complete.
    pub fn observe(&mut self, sample: f32) -> Option<f32> {
        let prediction = self.predict();
        if prediction.is_some() {
            self.inputs.extend_from_slice(&self.window);
            self.targets.push(sample);
            if self.targets.len() == self.config.batch {
                self.step();
            }
        }
        if self.filled < self.config.window {
            self.window[self.filled] = sample;
            self.filled += 1;
        } else {
            self.window.copy_within(1.., 0);
            *self.window.last_mut().expect("window is not empty") = sample;
        }
        prediction
    }

    /// One optimizer step on the pending mini-batch (mean squared error).
    fn step(&mut self) {
        let n = self.targets.len();
        let x = Tensor::<2>::from_data(
            TensorData::new(self.inputs.clone(), [n, self.config.window]),
            &self.device,
        );
        let y = Tensor::<2>::from_data(TensorData::new(self.targets.clone(), [n, 1]), &self.device);
        self.inputs.clear();
        self.targets.clear();
        let net = self.net.take().expect("the model is present between steps");
        let loss = mse(net.forward(x), y);
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        self.net = Some(self.optim.step(self.config.lr, net, grads));
        self.updates += 1;
    }

    /// Mean squared error of one-step-ahead predictions over `samples`
    /// (each sample from the `window` before it, inside `samples`), with the
    /// current weights; learns nothing. `None` when `samples` is not longer
    /// than the window.
    pub fn evaluate(&self, samples: &[f32]) -> Option<f32> {
        let w = self.config.window;
        if samples.len() <= w {
            return None;
        }
        let mut sum = 0.0f64;
        for i in w..samples.len() {
            let e = self
                .predict_from(&samples[i - w..i])
                .expect("window length")
                - samples[i];
            sum += f64::from(e) * f64::from(e);
        }
        Some((sum / (samples.len() - w) as f64) as f32)
    }

    /// Reads `samples` samples from `sensor`, one every `period_ns`
    /// nanoseconds (waiting with `delay` after each read), and learns from
    /// them with [`observe`](Self::observe).
    ///
    /// ```
    /// use ember_mcu::{I2cSensor, Learner, LearnerConfig};
    /// use embedded_hal_mock::eh1::delay::NoopDelay;
    /// use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
    ///
    /// let reads: Vec<_> = (0..20i16)
    ///     .map(|t| Transaction::write_read(0x48, vec![0x00], (t * 100).to_be_bytes().to_vec()))
    ///     .collect();
    /// let mut sensor = I2cSensor::new(Mock::new(&reads), 0x48, 0x00, 1e-3);
    /// let mut learner = Learner::new(LearnerConfig::new(4, 4))?;
    /// let stats = learner.run(&mut sensor, &mut NoopDelay::new(), 20, 10_000_000).unwrap();
    /// assert_eq!((stats.samples, stats.predicted, stats.updates), (20, 16, 16));
    /// sensor.release().done();
    /// # Ok::<(), ember_mcu::Error>(())
    /// ```
    pub fn run<S: Sensor, D: DelayNs>(
        &mut self,
        sensor: &mut S,
        delay: &mut D,
        samples: usize,
        period_ns: u32,
    ) -> Result<RunStats, S::Error> {
        let updates = self.updates;
        let mut stats = RunStats::default();
        let mut sum = 0.0f64;
        for _ in 0..samples {
            let x = sensor.read()?;
            stats.samples += 1;
            if let Some(p) = self.observe(x) {
                stats.predicted += 1;
                sum += f64::from(p - x) * f64::from(p - x);
            }
            delay.delay_ns(period_ns);
        }
        if stats.predicted > 0 {
            stats.mse = (sum / stats.predicted as f64) as f32;
        }
        stats.updates = self.updates - updates;
        Ok(stats)
    }

    /// The weights as a safetensors file, with PyTorch's names and layouts
    /// for `nn.Sequential(nn.Linear(window, hidden), nn.ReLU(), nn.Linear(hidden, 1))`:
    /// `0.weight` `[hidden, window]`, `0.bias` `[hidden]`, `2.weight`
    /// `[1, hidden]`, `2.bias` `[1]`, all f32.
    pub fn to_safetensors(&self) -> Vec<u8> {
        let (w, h) = (self.config.window, self.config.hidden);
        let (w0, b0) = linear_data(&self.net().l0);
        let (w2, b2) = linear_data(&self.net().l2);
        let (w0, b0, w2, b2) = (
            f32_bytes(&w0),
            f32_bytes(&b0),
            f32_bytes(&w2),
            f32_bytes(&b2),
        );
        let view = |shape: Vec<usize>, data| {
            TensorView::new(Dtype::F32, shape, data).expect("consistent shape")
        };
        let tensors = [
            ("0.weight", view(vec![h, w], &w0)),
            ("0.bias", view(vec![h], &b0)),
            ("2.weight", view(vec![1, h], &w2)),
            ("2.bias", view(vec![1], &b2)),
        ];
        safetensors::serialize(tensors, None).expect("four small tensors serialise")
    }

    /// Replaces the weights with those in a safetensors file written by
    /// [`to_safetensors`](Self::to_safetensors) (or by PyTorch for the same
    /// `nn.Sequential`). Every tensor must be present, f32, with this
    /// configuration's shape. The optimizer state and a pending mini-batch
    /// are reset; the sample window is kept.
    pub fn load_safetensors(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let (w, h) = (self.config.window, self.config.hidden);
        let file = safetensors::SafeTensors::deserialize(bytes).map_err(|_| Error::Weights {
            tensor: "",
            reason: "not a valid safetensors file",
        })?;
        let get = |name: &'static str, shape: &[usize]| -> Result<Vec<f32>, Error> {
            let t = file.tensor(name).map_err(|_| Error::Weights {
                tensor: name,
                reason: "missing",
            })?;
            if t.dtype() != Dtype::F32 {
                return Err(Error::Weights {
                    tensor: name,
                    reason: "not f32",
                });
            }
            if t.shape() != shape {
                return Err(Error::Weights {
                    tensor: name,
                    reason: "shape differs from the configuration",
                });
            }
            let values: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if values.iter().any(|v| !v.is_finite()) {
                return Err(Error::Weights {
                    tensor: name,
                    reason: "non-finite values",
                });
            }
            Ok(values)
        };
        let w0 = get("0.weight", &[h, w])?;
        let b0 = get("0.bias", &[h])?;
        let w2 = get("2.weight", &[1, h])?;
        let b2 = get("2.bias", &[1])?;
        // Drop the old model and optimizer state before building the new one.
        self.net = None;
        self.optim = make_optimizer(&self.config);
        self.inputs.clear();
        self.targets.clear();
        self.net = Some(Net {
            l0: linear(&w0, &b0, w, h, &self.device),
            l2: linear(&w2, &b2, h, 1, &self.device),
        });
        Ok(())
    }

    /// Writes the weights ([`to_safetensors`](Self::to_safetensors)) to `storage`.
    pub fn save(&self, storage: &mut impl Storage) -> Result<(), Error> {
        storage.write(&self.to_safetensors())?;
        Ok(())
    }

    /// Reads weights from `storage` ([`load_safetensors`](Self::load_safetensors)).
    pub fn restore(&mut self, storage: &mut impl Storage) -> Result<(), Error> {
        let bytes = storage.read()?;
        self.load_safetensors(&bytes)
    }
}
