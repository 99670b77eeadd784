//! The model behind an `EmberMlp*` handle: creation, inference, accuracy,
//! safetensors in and out. Safe Rust; the FFI layer hands it checked slices
//! and strings.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ember_models::mlp::{Mlp, MlpConfig};
use ember_runtime::freeze::{set_trainable, trainable_paths};
use ember_runtime::io::{
    LoadOptions, PathFilter, SaveOptions, load_safetensors_bytes, save_safetensors,
};

use crate::config::MlpSpec;
use crate::status::{EmberStatus, Failure};

/// Serialises the uses of Burn's CPU random-number generator, which is one
/// per process: seeding and the draws that follow (initialisation, dropout)
/// happen under this lock, so that concurrent calls on different handles
/// stay reproducible.
pub(crate) static RNG: Mutex<()> = Mutex::new(());

/// Examples per forward pass in inference, to bound memory on large inputs.
const INFERENCE_CHUNK: usize = 1024;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A multi-layer perceptron owned by C code (opaque in the header).
///
/// Created by `ember_mlp_new`, freed by `ember_mlp_free`.
#[derive(Debug)]
pub struct EmberMlp {
    model: Mlp,
    sizes: Vec<usize>,
    device: Device,
    id: u64,
    /// Set when an internal error interrupted a call that changes the model.
    pub(crate) poisoned: bool,
}

/// Where the parameters of a load ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// Parameters that received a tensor from the file.
    pub applied: usize,
}

impl EmberMlp {
    /// A network of `spec`'s shape with PyTorch's default initialisation,
    /// drawn from `spec.seed`.
    pub fn new(spec: &MlpSpec) -> Self {
        let device = ember_runtime::device::cpu().autodiff();
        let config = MlpConfig::new(spec.sizes.clone()).with_dropout(spec.dropout);
        let model = {
            let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
            device.seed(spec.seed);
            config.init(&device)
        };
        Self {
            model,
            sizes: spec.sizes.clone(),
            device,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            poisoned: false,
        }
    }

    /// Features per example.
    pub fn input_size(&self) -> usize {
        self.sizes[0]
    }

    /// Outputs per example.
    pub fn classes(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    /// Layer widths, input first.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// A number no other model of this process has (trainers remember the
    /// model they belong to by it).
    pub fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn model(&self) -> &Mlp {
        &self.model
    }

    pub(crate) fn set_model(&mut self, model: Mlp) {
        self.model = model;
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// Fails unless `x` holds finite values only.
    ///
    /// # Errors
    /// [`EmberStatus::NonFinite`] naming the first example and feature.
    pub fn check_features(&self, x: &[f32]) -> Result<(), Failure> {
        match x.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(i) => {
                let d = self.input_size();
                Err(Failure::non_finite(format!(
                    "x[{i}] (example {}, feature {}) is {}",
                    i / d,
                    i % d,
                    x[i]
                )))
            }
        }
    }

    /// Fails unless every label is a class index of this model.
    ///
    /// # Errors
    /// [`EmberStatus::InvalidArgument`] naming the first bad label.
    pub fn check_labels(&self, labels: &[i32]) -> Result<(), Failure> {
        let classes = self.classes();
        match labels.iter().position(|&l| l < 0 || l as usize >= classes) {
            None => Ok(()),
            Some(i) => Err(Failure::invalid(format!(
                "labels[{i}] is {}: labels must be in 0..{classes}",
                labels[i]
            ))),
        }
    }

    /// `x` (`n × input`) as a tensor on `device`.
    pub(crate) fn features(&self, x: &[f32], device: &Device) -> Tensor<2> {
        let n = x.len() / self.input_size();
        Tensor::from_data(TensorData::new(x.to_vec(), [n, self.input_size()]), device)
    }

    /// `labels` as a tensor on `device`.
    pub(crate) fn targets(labels: &[i32], device: &Device) -> Tensor<1, Int> {
        let y: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
        Tensor::from_data(TensorData::new(y, [labels.len()]), device)
    }

    /// Writes the logits of the examples in `x` (`n × input`, row-major) to
    /// `out` (`n × classes`, row-major), evaluating in inference mode
    /// (no dropout).
    ///
    /// # Errors
    /// [`EmberStatus::Shape`] when `x` is not a whole number of examples or
    /// `out` is too small, [`EmberStatus::NonFinite`] for NaN or infinite
    /// features.
    pub fn predict(&self, x: &[f32], out: &mut [f32]) -> Result<(), Failure> {
        let (d, c) = (self.input_size(), self.classes());
        if x.is_empty() || !x.len().is_multiple_of(d) {
            return Err(Failure::shape(format!(
                "{} features is not a positive multiple of the input size {d}",
                x.len()
            )));
        }
        let n = x.len() / d;
        if out.len() < n * c {
            return Err(Failure::shape(format!(
                "the output holds {} floats; {n} examples × {c} classes need {}",
                out.len(),
                n * c
            )));
        }
        self.check_features(x)?;
        let model = self.model.valid();
        let plain = self.device.clone().without_autodiff();
        for (chunk, dst) in x
            .chunks(INFERENCE_CHUNK * d)
            .zip(out.chunks_mut(INFERENCE_CHUNK * c))
        {
            let logits = model.forward(self.features(chunk, &plain));
            let values = logits.into_data().try_into_vec::<f32>().map_err(|e| {
                Failure::new(EmberStatus::Panic, format!("reading the logits: {e:?}"))
            })?;
            dst[..values.len()].copy_from_slice(&values);
        }
        Ok(())
    }

    /// The fraction of examples whose arg-max logit is their label.
    ///
    /// # Errors
    /// As [`predict`](Self::predict), and [`EmberStatus::Shape`] when
    /// `labels` does not have one entry per example,
    /// [`EmberStatus::InvalidArgument`] for labels outside the classes.
    pub fn accuracy(&self, x: &[f32], labels: &[i32]) -> Result<f64, Failure> {
        let (d, c) = (self.input_size(), self.classes());
        if labels.is_empty() || x.len() != labels.len() * d {
            return Err(Failure::shape(format!(
                "{} features and {} labels: expected {d} features per label",
                x.len(),
                labels.len()
            )));
        }
        self.check_labels(labels)?;
        let mut logits = vec![0.0f32; labels.len() * c];
        self.predict(x, &mut logits)?;
        let correct = logits
            .chunks(c)
            .zip(labels)
            .filter(|(row, label)| {
                let best = row
                    .iter()
                    .enumerate()
                    .fold(0, |best, (i, v)| if *v > row[best] { i } else { best });
                best == **label as usize
            })
            .count();
        Ok(correct as f64 / labels.len() as f64)
    }

    /// The parameters of the linear layers as PyTorch's
    /// `nn.Sequential(Linear, ReLU, [Dropout,] Linear, …)` names them:
    /// `(module path prefix, torch prefix)`, e.g. `("layers.1.", "2.")`.
    fn torch_prefixes(&self) -> Vec<(String, String)> {
        (0..self.sizes.len() - 1)
            .filter_map(|i| {
                let key = self.model.torch_key(&format!("layers.{i}.weight"))?;
                let index = key.strip_suffix(".weight")?;
                Some((format!("layers.{i}."), format!("{index}.")))
            })
            .collect()
    }

    /// Loads weights from a safetensors file, or from `model.safetensors`
    /// in a directory. Tensor names may be PyTorch's `nn.Sequential` names
    /// (`0.weight`, `2.bias`, …, as [`save`](Self::save) writes them) or
    /// Ember's module paths (`layers.0.weight`, as `ember finetune` writes
    /// them). With `strict`, every parameter must be in the file and every
    /// tensor of the file must be a parameter; otherwise the file may hold a
    /// subset (e.g. what [`save`](Self::save) wrote with `trainable_only`).
    /// Which parameters train is kept. On error the model is unchanged.
    ///
    /// # Errors
    /// [`EmberStatus::Io`] (missing or unreadable file),
    /// [`EmberStatus::Format`] (not safetensors), [`EmberStatus::Mismatch`]
    /// (tensors that do not fit, every one listed).
    pub fn load(&mut self, path: &Path, strict: bool) -> Result<Loaded, Failure> {
        let file: PathBuf = if path.is_dir() {
            path.join("model.safetensors")
        } else {
            path.to_path_buf()
        };
        let io = |message: String| {
            Failure::new(EmberStatus::Io, format!("{}: {message}", file.display()))
        };
        if !file.is_file() {
            return Err(io(if path.is_dir() {
                "no model.safetensors in this directory".into()
            } else {
                "no such file".into()
            }));
        }
        let bytes = std::fs::read(&file).map_err(|e| io(e.to_string()))?;
        let names: Vec<String> = match safetensors::SafeTensors::deserialize(&bytes) {
            Ok(st) => st.names().into_iter().map(String::from).collect(),
            Err(e) => {
                return Err(Failure::new(
                    EmberStatus::Format,
                    format!("{}: not a valid safetensors file: {e}", file.display()),
                ));
            }
        };
        let mut options = LoadOptions::default().strict(strict);
        if !names.iter().any(|n| n.starts_with("layers.")) {
            for (module, torch) in self.torch_prefixes() {
                options = options.remap(&format!("^{}", regex::escape(&torch)), &module);
            }
        }
        let flags = trainable_paths(&self.model);
        let (model, report) = load_safetensors_bytes(self.model.clone(), bytes, &file, &options)?;
        if report.applied.is_empty() {
            return Err(Failure::new(
                EmberStatus::Mismatch,
                format!(
                    "{}: no tensor of the file is a parameter of this model (found: {})",
                    file.display(),
                    names.join(", ")
                ),
            ));
        }
        let mut i = 0;
        self.model = set_trainable(model, |p| {
            let train = flags.get(i).is_none_or(|(q, t)| q != p.path || *t);
            i += 1;
            train
        });
        Ok(Loaded {
            applied: report.applied.len(),
        })
    }

    /// Writes the weights to `path` as safetensors with PyTorch's
    /// `nn.Sequential` names and layouts (`0.weight` is `[out, in]`),
    /// atomically. With `trainable_only`, only the parameters that train
    /// are written (after a head-only fine-tune: the new head).
    ///
    /// # Errors
    /// [`EmberStatus::Io`] when the file cannot be written,
    /// [`EmberStatus::InvalidArgument`] when no parameter trains and
    /// `trainable_only` is set.
    pub fn save(&self, path: &Path, trainable_only: bool) -> Result<(), Failure> {
        if path.is_dir() {
            return Err(Failure::new(
                EmberStatus::Io,
                format!("{}: is a directory; give a file name", path.display()),
            ));
        }
        let mut options = SaveOptions {
            metadata: vec![("ember.sizes".into(), join(&self.sizes))],
            ..Default::default()
        };
        for (module, torch) in self.torch_prefixes() {
            options
                .remap
                .push((format!("^{}", regex::escape(&module)), torch));
        }
        if trainable_only {
            let paths: Vec<String> = trainable_paths(&self.model)
                .into_iter()
                .filter(|(_, t)| *t)
                .map(|(p, _)| p)
                .collect();
            if paths.is_empty() {
                return Err(Failure::invalid(
                    "no parameter trains: there is nothing to save with trainable_only",
                ));
            }
            options.only = Some(PathFilter::new().with_full_paths(paths));
        }
        Ok(save_safetensors(&self.model.valid(), path, &options)?)
    }
}

fn join(sizes: &[usize]) -> String {
    sizes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(dropout: f32) -> EmberMlp {
        EmberMlp::new(&MlpSpec::new(4, &[8], 3, dropout, 1).unwrap())
    }

    #[test]
    fn the_same_seed_gives_the_same_weights() {
        let x = [0.1f32, 0.2, 0.3, 0.4];
        let (mut a, mut b) = ([0.0f32; 3], [0.0f32; 3]);
        net(0.0).predict(&x, &mut a).unwrap();
        net(0.0).predict(&x, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(a.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn torch_prefixes_skip_dropout_layers() {
        assert_eq!(
            net(0.0).torch_prefixes()[1],
            ("layers.1.".to_string(), "2.".to_string())
        );
        assert_eq!(
            net(0.5).torch_prefixes()[1],
            ("layers.1.".to_string(), "3.".to_string())
        );
    }

    #[test]
    fn save_and_load_round_trip_with_torch_names() {
        let dir = std::env::temp_dir().join(format!("ember-capi-mlp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("model.safetensors");
        let a = net(0.0);
        a.save(&file, false).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut names: Vec<&str> = st.names();
        names.sort();
        assert_eq!(names, ["0.bias", "0.weight", "2.bias", "2.weight"]);
        assert_eq!(st.tensor("0.weight").unwrap().shape(), [8, 4]);
        let mut b = EmberMlp::new(&MlpSpec::new(4, &[8], 3, 0.0, 99).unwrap());
        assert_eq!(b.load(&dir, true).unwrap().applied, 4);
        let x = [0.5f32, -1.0, 2.0, 0.0];
        let (mut ya, mut yb) = ([0.0f32; 3], [0.0f32; 3]);
        a.predict(&x, &mut ya).unwrap();
        b.predict(&x, &mut yb).unwrap();
        assert_eq!(ya, yb);
        let mut wrong = EmberMlp::new(&MlpSpec::new(5, &[8], 3, 0.0, 0).unwrap());
        let e = wrong.load(&file, true).unwrap_err();
        assert_eq!(e.status, EmberStatus::Mismatch, "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
