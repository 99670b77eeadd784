//! Shared helpers of the parity tests: fixtures written by
//! `tools/reference/*.py`, and named, dtype-aware tolerances.
#![allow(dead_code)]

use std::path::PathBuf;

use ember::burn::module::{Module, ModuleMapper, Param};
use ember::burn::tensor::{DType, Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

/// The all-MiniLM-L6-v2 directory: `$EMBER_MINILM_DIR`, or what
/// `tools/fetch-models.sh` prints (it downloads the model when it is not
/// cached, so tests needing the model never skip).
pub fn minilm_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("EMBER_MINILM_DIR") {
        return PathBuf::from(dir);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/fetch-models.sh");
    let out = std::process::Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Where tests leave exports for `tools/reference/check_exports.py`, which
/// `.ci/run` runs after `cargo test` to load them in PyTorch.
pub fn export_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ember-exports");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `output` as the single tensor `output` of `export_dir()/{name}`.
pub fn write_output(name: &str, output: Tensor<2>) {
    let dims = output.dims();
    let values = output
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(Dtype::F32, dims.to_vec(), &bytes).unwrap();
    std::fs::write(
        export_dir().join(name),
        safetensors::serialize([("output", view)], None).unwrap(),
    )
    .unwrap();
}

/// A safetensors fixture from `tests/fixtures/`.
pub struct Fixture {
    name: String,
    bytes: Vec<u8>,
}

impl Fixture {
    /// Loads `tests/fixtures/{name}`; panics with the command that makes it.
    pub fn load(name: &str) -> Self {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate with `python tools/reference/training_core.py`",
                path.display()
            )
        });
        Self {
            name: name.to_string(),
            bytes,
        }
    }

    fn view(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("fixture is valid safetensors")
    }

    /// Whether the fixture holds `key`.
    pub fn has(&self, key: &str) -> bool {
        self.view().tensor(key).is_ok()
    }

    /// A float tensor as f64 values (F32 and F64 fixtures), with its shape.
    pub fn values(&self, key: &str) -> (Vec<f64>, Vec<usize>) {
        let view = self.view();
        let t = view
            .tensor(key)
            .unwrap_or_else(|_| panic!("{}: no tensor `{key}`", self.name));
        let data = t.data();
        let values = match t.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            other => panic!("{}: `{key}` has dtype {other:?}", self.name),
        };
        (values, t.shape().to_vec())
    }

    /// An I64 tensor's values.
    pub fn ints(&self, key: &str) -> Vec<i64> {
        let view = self.view();
        let t = view
            .tensor(key)
            .unwrap_or_else(|_| panic!("{}: no tensor `{key}`", self.name));
        assert_eq!(t.dtype(), Dtype::I64, "{}: `{key}` is not I64", self.name);
        t.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// A float tensor as f32 values.
    pub fn f32s(&self, key: &str) -> Vec<f32> {
        self.values(key).0.into_iter().map(|v| v as f32).collect()
    }

    /// The single value of a one-element tensor.
    pub fn scalar(&self, key: &str) -> f64 {
        let (v, _) = self.values(key);
        assert_eq!(v.len(), 1, "{}: `{key}` is not a scalar", self.name);
        v[0]
    }

    /// A float tensor on `device`, in f32.
    pub fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        self.tensor_as(key, device, DType::F32)
    }

    /// A float tensor on `device`, in `dtype` (F32 or F64).
    pub fn tensor_as<const D: usize>(&self, key: &str, device: &Device, dtype: DType) -> Tensor<D> {
        let (v, shape) = self.values(key);
        assert_eq!(
            shape.len(),
            D,
            "{}: `{key}` has rank {}",
            self.name,
            shape.len()
        );
        let data = match dtype {
            DType::F64 => TensorData::new(v, shape),
            _ => TensorData::new(v.into_iter().map(|x| x as f32).collect::<Vec<f32>>(), shape),
        };
        Tensor::from_data(data, (device, dtype))
    }
}

/// A tolerance `|actual − expected| ≤ atol + rtol·|expected|` (the form of
/// `torch.testing.assert_close`), named after what it is for.
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    pub name: &'static str,
    pub rtol: f64,
    pub atol: f64,
}

/// One f32 op or a single forward/backward of a small layer: a few ulps.
pub const F32_OP: Tol = Tol {
    name: "F32_OP",
    rtol: 1e-6,
    atol: 1e-7,
};
/// A short f32 computation with reductions (norms, batch statistics).
pub const F32_REDUCE: Tol = Tol {
    name: "F32_REDUCE",
    rtol: 1e-5,
    atol: 1e-6,
};
/// Parameters and losses after up to 300 optimizer steps in f32: rounding
/// differences compound over the trajectory.
pub const F32_TRAJECTORY: Tol = Tol {
    name: "F32_TRAJECTORY",
    rtol: 1e-4,
    atol: 1e-6,
};
/// Parameters and losses after 300 optimizer steps in f64, against PyTorch in
/// f64 (the acceptance bound for the 300-step optimizer trajectories).
pub const F64_TRAJECTORY: Tol = Tol {
    name: "F64_TRAJECTORY",
    rtol: 1e-4,
    atol: 1e-9,
};
/// Learning rates, computed in f64.
pub const F64_SCHEDULE: Tol = Tol {
    name: "F64_SCHEDULE",
    rtol: 0.0,
    atol: 1e-9,
};

/// Asserts `actual` matches `expected` elementwise under `tol`; the message
/// names the quantity, the worst element and the tolerance.
pub fn assert_close(what: &str, actual: &[f64], expected: &[f64], tol: Tol) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: {} values, expected {}",
        actual.len(),
        expected.len()
    );
    let mut worst: Option<(usize, f64)> = None;
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let err = (a - e).abs();
        let bound = tol.atol + tol.rtol * e.abs();
        if !(err <= bound) {
            let excess = if err.is_nan() {
                f64::INFINITY
            } else {
                err / bound
            };
            if worst.is_none_or(|(_, w)| excess > w) {
                worst = Some((i, excess));
            }
        }
    }
    if let Some((i, excess)) = worst {
        panic!(
            "{what}: element {i} is {} but PyTorch gives {} ({excess:.1}× over {} = atol {:e} + rtol {:e}·|expected|)",
            actual[i], expected[i], tol.name, tol.atol, tol.rtol
        );
    }
}

/// Reads a tensor back as f64 values.
pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f64> {
    tensor
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .unwrap()
}

/// Compares a tensor with fixture key `key`.
pub fn assert_tensor<const D: usize>(fixture: &Fixture, key: &str, actual: Tensor<D>, tol: Tol) {
    let (expected, shape) = fixture.values(key);
    assert_eq!(actual.dims().to_vec(), shape, "{key}: shape");
    assert_close(key, &values(actual), &expected, tol);
}

/// Sets every float parameter of `module` from the fixture, keyed by
/// `key_of(path)` (a PyTorch `state_dict` key; `None` leaves it as is), transposing `Linear`
/// weights from PyTorch's `[out, in]` to Burn's `[in, out]`. Parameter ids
/// are kept. Panics when a key is missing.
pub fn load_torch_params<M: Module>(
    module: M,
    fixture: &Fixture,
    key_of: impl Fn(&str) -> Option<String>,
) -> M {
    load_torch_params_as(module, fixture, DType::F32, key_of)
}

/// [`load_torch_params`] with the parameters stored in `dtype`.
pub fn load_torch_params_as<M: Module>(
    module: M,
    fixture: &Fixture,
    dtype: DType,
    key_of: impl Fn(&str) -> Option<String>,
) -> M {
    struct Load<'a, F: Fn(&str) -> Option<String>> {
        fixture: &'a Fixture,
        dtype: DType,
        key_of: F,
        path: Vec<String>,
        containers: Vec<String>,
    }
    impl<F: Fn(&str) -> Option<String>> ModuleMapper for Load<'_, F> {
        fn enter_module(&mut self, name: &str, container: &str) {
            self.path.push(name.to_string());
            self.containers.push(container.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
            self.containers.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let path = self.path.join(".");
            let Some(key) = (self.key_of)(&path) else {
                return param;
            };
            let device = param.lazy_device();
            let parent = self.containers.last().map(String::as_str).unwrap_or("");
            let mut value = self.fixture.tensor_as::<D>(&key, &device, self.dtype);
            if D == 2 && parent.ends_with("Linear") && path.ends_with("weight") {
                value = value.transpose();
            }
            let id = param.id;
            param.transform_for_load(value, id)
        }
    }
    module.map(&mut Load {
        fixture,
        dtype,
        key_of,
        path: Vec::new(),
        containers: Vec::new(),
    })
}
