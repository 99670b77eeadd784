//! Safetensors loading: PyTorch layouts, strict reporting, bad files.

mod common;

use ember::burn::module::Module;
use ember::burn::nn::{Linear, LinearConfig};
use ember::burn::tensor::Tensor;
use ember::runtime::Error;
use ember::runtime::io::{LoadOptions, SaveOptions, load_safetensors, save_safetensors};

/// A safetensors file from `(name, dtype, shape, f32 data)` entries and an
/// optional raw header override.
fn file(entries: &[(&str, &str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, values) in entries {
        let start = data.len();
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    with_header(&serde_json::Value::Object(header).to_string(), &data)
}

fn with_header(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn linear_file() -> Vec<u8> {
    // PyTorch layout: weight [out=2, in=3].
    file(&[
        (
            "weight",
            "F32",
            vec![2, 3],
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        ),
        ("bias", "F32", vec![2], vec![0.5, -0.5]),
    ])
}

fn write(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn load(name: &str, bytes: &[u8]) -> Result<Linear, Error> {
    let path = write(name, bytes);
    load_safetensors(
        LinearConfig::new(3, 2).init(&ember::runtime::device::cpu()),
        &path,
        &LoadOptions::default(),
    )
    .map(|(m, _)| m)
}

fn err(name: &str, bytes: &[u8]) -> String {
    load(name, bytes).expect_err("must fail").to_string()
}

#[test]
fn pytorch_layout_loads_and_computes() {
    let linear = load("ok.safetensors", &linear_file()).unwrap();
    let y = linear.forward(Tensor::<2>::from_floats(
        [[1.0, 0.0, 0.0]],
        &ember::runtime::device::cpu(),
    ));
    // x·Wᵀ + b with W = [[1,2,3],[4,5,6]] → [1 + 0.5, 4 − 0.5].
    assert_eq!(
        y.into_data().convert::<f32>().try_to_vec::<f32>().unwrap(),
        vec![1.5, 3.5]
    );
}

#[test]
fn round_trip_through_a_file() {
    let device = ember::runtime::device::cpu();
    let linear = LinearConfig::new(3, 2).init(&device);
    let path = write("roundtrip.safetensors", b"");
    save_safetensors(&linear, &path, &SaveOptions::default()).unwrap();
    let (back, report) = load_safetensors(
        LinearConfig::new(3, 2).init(&device),
        &path,
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(report.applied.len(), 2);
    let x = Tensor::<2>::from_floats([[0.3, -1.0, 2.0]], &device);
    assert_eq!(
        linear.forward(x.clone()).into_data(),
        back.forward(x).into_data()
    );
    // The file holds PyTorch's layout: weight is [out, in].
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("weight").unwrap().shape(), &[2, 3]);
}

#[test]
fn truncated_file() {
    let bytes = linear_file();
    let e = err("truncated.safetensors", &bytes[..bytes.len() - 5]);
    assert!(
        e.contains("truncated.safetensors") && e.contains("not a valid safetensors file"),
        "{e}"
    );
}

#[test]
fn header_length_past_the_end() {
    let mut bytes = linear_file();
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = err("hugeheader.safetensors", &bytes);
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn header_not_json() {
    let e = err("notjson.safetensors", &with_header("{not json", &[0; 8]));
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn overlapping_and_out_of_bounds_offsets() {
    let h = r#"{"weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}"#;
    let e = err("overlap.safetensors", &with_header(h, &[0; 24]));
    assert!(e.contains("not a valid safetensors file"), "{e}");
    let h = r#"{"weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,240]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[240,248]}}"#;
    let e = err("oob.safetensors", &with_header(h, &[0; 32]));
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn unknown_dtype() {
    let h = r#"{"weight":{"dtype":"F99","shape":[2,3],"data_offsets":[0,24]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[24,32]}}"#;
    let e = err("dtype.safetensors", &with_header(h, &[0; 32]));
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn wrong_shape_missing_and_unexpected_are_listed_together() {
    let bytes = file(&[
        ("weight", "F32", vec![4, 3], vec![0.0; 12]),
        ("extra.weight", "F32", vec![1], vec![0.0]),
    ]);
    match load("mismatch.safetensors", &bytes) {
        Err(Error::Load {
            missing,
            unexpected,
            mismatched,
            ..
        }) => {
            assert_eq!(missing, vec!["bias".to_string()]);
            assert_eq!(unexpected, vec!["extra.weight".to_string()]);
            assert_eq!(mismatched.len(), 1, "{mismatched:?}");
            assert!(mismatched[0].starts_with("weight"), "{mismatched:?}");
        }
        other => panic!("expected a load error, got {other:?}"),
    }
    let e = err("mismatch2.safetensors", &bytes);
    assert!(
        e.contains("missing (1): bias") && e.contains("unexpected (1): extra.weight"),
        "{e}"
    );
}

#[test]
fn non_strict_load_reports_instead_of_failing() {
    let bytes = file(&[("weight", "F32", vec![2, 3], vec![1.0; 6])]);
    let path = write("partial.safetensors", &bytes);
    let model = LinearConfig::new(3, 2).init(&ember::runtime::device::cpu());
    let (_, report) =
        load_safetensors(model, &path, &LoadOptions::default().strict(false)).unwrap();
    assert_eq!(report.applied, vec!["weight".to_string()]);
    assert_eq!(report.missing, vec!["bias".to_string()]);
}

#[test]
fn missing_file() {
    let model = LinearConfig::new(3, 2).init(&ember::runtime::device::cpu());
    let e =
        load_safetensors(model, "/nonexistent/w.safetensors", &LoadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/w.safetensors"), "{e}");
    let _ = Module::num_params(&LinearConfig::new(1, 1).init(&ember::runtime::device::cpu()));
}

mod pytorch_roundtrip {
    //! State dicts saved by PyTorch (`tools/reference/roundtrip.py`) load into
    //! Ember's models and give PyTorch's outputs; Ember's export of them is
    //! the same state dict again (keys, shapes, dtypes, values), which is what
    //! `load_state_dict(strict=True)` checks.
    use super::*;
    use crate::common::{export_dir, write_output};
    use ember::models::cnn::SmallCnnConfig;
    use ember::models::mlp::MlpConfig;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/roundtrip.safetensors"
    );

    fn fixture_tensor<const D: usize>(key: &str) -> Tensor<D> {
        let bytes = std::fs::read(FIXTURE).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let t = st.tensor(key).unwrap();
        let v: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Tensor::from_data(
            ember::burn::tensor::TensorData::new(v, t.shape().to_vec()),
            &ember::runtime::device::cpu(),
        )
    }

    fn assert_close(a: Tensor<2>, b: Tensor<2>) {
        let a = a.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let b = b.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            // F32_REDUCE of the parity suite: rtol 1e-5, atol 1e-6.
            assert!((x - y).abs() <= 1e-6 + 1e-5 * y.abs(), "{x} vs PyTorch {y}");
        }
    }

    /// Ember's export must hold exactly the PyTorch state dict under `prefix`.
    fn assert_export_matches(module: &impl Module, prefix: &str, remap: Vec<(String, String)>) {
        let out = export_dir().join(format!("{prefix}.safetensors"));
        save_safetensors(
            module,
            &out,
            &SaveOptions {
                remap,
                ..Default::default()
            },
        )
        .unwrap();
        let exported = std::fs::read(&out).unwrap();
        let original = std::fs::read(FIXTURE).unwrap();
        let (a, b) = (
            safetensors::SafeTensors::deserialize(&exported).unwrap(),
            safetensors::SafeTensors::deserialize(&original).unwrap(),
        );
        let mut keys: Vec<String> = a.names().into_iter().map(str::to_string).collect();
        keys.sort();
        let mut expected: Vec<String> = b
            .names()
            .into_iter()
            .filter_map(|k| k.strip_prefix(&format!("{prefix}.")).map(str::to_string))
            .filter(|k| k != "input" && k != "output")
            .collect();
        expected.sort();
        assert_eq!(keys, expected);
        for k in &keys {
            let (x, y) = (
                a.tensor(k).unwrap(),
                b.tensor(&format!("{prefix}.{k}")).unwrap(),
            );
            assert_eq!((x.shape(), x.data()), (y.shape(), y.data()), "{k}");
        }
    }

    #[test]
    fn mlp_state_dict_from_pytorch() {
        let options = LoadOptions::default()
            .remap(r"^mlp\.0\.", "layers.0.")
            .remap(r"^mlp\.2\.", "layers.1.")
            .ignore_unexpected(r"^cnn\.")
            .ignore_unexpected(r"^mlp\.(input|output)$");
        let model = MlpConfig::new(vec![6, 16, 3]).init(&ember::runtime::device::cpu());
        let (model, report) = load_safetensors(model, FIXTURE, &options).unwrap();
        assert_eq!(report.applied.len(), 4);
        let output = model.forward(fixture_tensor("mlp.input"));
        write_output("mlp_ember_output.safetensors", output.clone());
        assert_close(output, fixture_tensor("mlp.output"));
        let back = vec![
            (r"^layers\.0\.".into(), "0.".into()),
            (r"^layers\.1\.".into(), "2.".into()),
        ];
        assert_export_matches(&model, "mlp", back);
    }

    #[test]
    fn cnn_state_dict_from_pytorch() {
        let options = LoadOptions::default()
            .remap(r"^cnn\.", "")
            .ignore_unexpected(r"^mlp\.")
            .ignore_unexpected(r"^(cnn\.)?(input|output)$");
        let model = SmallCnnConfig::new().init(&ember::runtime::device::cpu());
        let (model, report) = load_safetensors(model, FIXTURE, &options).unwrap();
        assert_eq!(report.applied.len(), 6);
        let x: Tensor<4> = fixture_tensor("cnn.input");
        let output = model.forward(x);
        write_output("cnn_ember_output.safetensors", output.clone());
        assert_close(output, fixture_tensor("cnn.output"));
        assert_export_matches(&model, "cnn", vec![]);
    }
}

#[test]
fn bf16_and_f16_files_round_trip_within_their_rounding() {
    use ember::burn::tensor::DType;
    let device = ember::runtime::device::cpu();
    let linear = LinearConfig::new(16, 8).init(&device);
    let original = linear
        .weight
        .val()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    for (dtype, name, st_dtype, rel) in [
        // Half an ulp of the 8-bit (bf16) and 11-bit (f16) significands.
        (DType::BF16, "bf16", safetensors::Dtype::BF16, 1.0 / 256.0),
        (DType::F16, "f16", safetensors::Dtype::F16, 1.0 / 2048.0),
    ] {
        let path = write(&format!("{name}.safetensors"), b"");
        save_safetensors(
            &linear,
            &path,
            &SaveOptions {
                dtype: Some(dtype),
                ..Default::default()
            },
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("weight").unwrap().dtype(), st_dtype);
        let (back, _) = load_safetensors(
            LinearConfig::new(16, 8).init(&device),
            &path,
            &LoadOptions::default(),
        )
        .unwrap();
        let w = back.weight.val();
        assert_eq!(w.dtype(), DType::F32, "{name} loads as f32 by default");
        let loaded = w.into_data().try_to_vec::<f32>().unwrap();
        for (a, b) in loaded.iter().zip(&original) {
            assert!((a - b).abs() <= rel * b.abs() + 1e-7, "{name}: {a} vs {b}");
        }
    }
}
