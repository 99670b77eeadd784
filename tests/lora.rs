//! LoRA on all-MiniLM-L6-v2 against Hugging Face peft
//! (`tools/reference/peft_lora.py`): an adapter written by peft loads in
//! Ember, the adapted model's embeddings and the gradients of every A and B
//! match, and Ember writes the adapter back as peft wrote it.

mod common;

use common::*;
use ember::burn::module::Module;
use ember::burn::tensor::{Int, Tensor, TensorData};
use ember::models::adapter::{load_peft_adapter, save_peft_adapter};
use ember::models::bert::{l2_normalize, mean_pool};
use ember::models::sentence::SentenceEncoder;

/// Forward values and gradients of A/B in f32 (the acceptance bound).
const PEFT_F32: Tol = Tol {
    name: "PEFT_F32",
    rtol: 0.0,
    atol: 1e-5,
};

const ADAPTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/peft_adapter");

#[test]
fn peft_adapter_forward_gradients_and_save() {
    let f = Fixture::load("peft_lora.safetensors");
    let device = ember::runtime::device::cpu().autodiff();
    let encoder = SentenceEncoder::from_dir(minilm_dir(), &device).unwrap();
    let mut config = None;
    let encoder = encoder
        .try_map_model(|m| {
            let (m, c) = load_peft_adapter(m, ADAPTER, &device)?;
            config = Some(c);
            Ok(m)
        })
        .unwrap();
    let config = config.unwrap();
    assert_eq!((config.r, config.alpha), (4, 8.0));

    let ids = f.ints("input_ids");
    let (mask_values, shape) = f.values("attention_mask");
    let (b, l) = (shape[0], shape[1]);
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, l]), &device);
    let mask = f.tensor::<2>("attention_mask", &device);
    assert_eq!(mask_values.len(), b * l);
    let emb = l2_normalize(mean_pool(encoder.model().forward(ids, mask.clone()), mask));
    assert_tensor(&f, "embeddings", emb.clone(), PEFT_F32);
    write_output("adapter_ember_output.safetensors", emb.clone());

    let grads = (emb * f.tensor::<2>("R", &device)).sum().backward();
    let mut checked = 0;
    for (i, layer) in encoder.model().encoder.layer.iter().enumerate() {
        let attn = &layer.attention.self_attn;
        assert!(attn.key_lora.is_none());
        for (name, lora) in [("query", &attn.query_lora), ("value", &attn.value_lora)] {
            let lora = lora.as_ref().expect("adapter attached");
            let base = format!("grad.base_model.model.encoder.layer.{i}.attention.self.{name}");
            // Burn stores Linear weights as [in, out]: transpose to peft's layout.
            let ga = lora.lora_A.weight.val().grad(&grads).unwrap().transpose();
            let gb = lora.lora_B.weight.val().grad(&grads).unwrap().transpose();
            assert_tensor(&f, &format!("{base}.lora_A.weight"), ga, PEFT_F32);
            assert_tensor(&f, &format!("{base}.lora_B.weight"), gb, PEFT_F32);
            checked += 2;
        }
        // The frozen base weights get no gradient.
        assert!(attn.query.weight.val().grad(&grads).is_none());
    }
    assert_eq!(checked, 24);

    // Ember's adapter file is peft's, tensor for tensor. It is left in the
    // target directory for tools/reference/check_exports.py (run by .ci/run),
    // which loads it with peft.
    let out = export_dir().join("adapter");
    save_peft_adapter(&encoder.model().clone().valid(), &config, &out).unwrap();
    let written = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
    let config_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    let original = std::fs::read(format!("{ADAPTER}/adapter_model.safetensors")).unwrap();
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&written).unwrap(),
        safetensors::SafeTensors::deserialize(&original).unwrap(),
    );
    let mut keys: Vec<String> = a.names().into_iter().map(str::to_string).collect();
    let mut expected: Vec<String> = b.names().into_iter().map(str::to_string).collect();
    keys.sort();
    expected.sort();
    assert_eq!(keys, expected);
    for k in &keys {
        let (x, y) = (a.tensor(k).unwrap(), b.tensor(k).unwrap());
        assert_eq!(
            (x.dtype(), x.shape(), x.data()),
            (y.dtype(), y.shape(), y.data()),
            "{k}"
        );
    }
    assert_eq!(config_json["peft_type"], "LORA");
    assert_eq!(config_json["r"], 4);
    assert_eq!(
        config_json["target_modules"],
        serde_json::json!(["query", "value"])
    );
}

#[test]
fn fresh_lora_leaves_the_model_unchanged_and_trains_only_adapters() {
    use ember::runtime::params::parameters;
    use ember::runtime::peft::LoraConfig;
    let device = ember::runtime::device::cpu().autodiff();
    let encoder = SentenceEncoder::from_dir(minilm_dir(), &device).unwrap();
    let before = encoder.encode(&["Turn on the lights"], 1).unwrap();
    let config = LoraConfig::new(8)
        .with_alpha(16.0)
        .with_target_modules(vec!["query".into(), "value".into()]);
    let encoder = encoder
        .try_map_model(|m| Ok(m.with_lora(&config, &device)))
        .unwrap();
    let after = encoder.encode(&["Turn on the lights"], 1).unwrap();
    assert_eq!(before, after, "B = 0 at initialisation");
    let (ids, mask) = encoder.tokenize(&["Turn on the lights"]).unwrap();
    let loss = encoder.model().forward(ids, mask).sum();
    let grads = ember::burn::optim::GradientsParams::from_grads(loss.backward(), encoder.model());
    let with_grad: Vec<String> = parameters(encoder.model(), Some(&grads))
        .into_iter()
        .filter(|p| p.grad.is_some())
        .map(|p| p.path)
        .collect();
    assert_eq!(with_grad.len(), 6 * 2 * 2, "{with_grad:?}");
    assert!(
        with_grad.iter().all(|p| p.contains("_lora.lora_")),
        "{with_grad:?}"
    );
}

#[test]
fn adapter_dir_without_config_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("ember-no-adapter-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model =
        ember::models::bert::BertConfig::new(10, 8, 1, 2, 16).init(&ember::runtime::device::cpu());
    let err = load_peft_adapter(model, &dir, &ember::runtime::device::cpu())
        .unwrap_err()
        .to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        err.contains("adapter_config.json") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn base_weights_stay_frozen_across_optimizer_steps() {
    use ember::burn::optim::GradientsParams;
    use ember::runtime::params::parameters;
    use ember::runtime::peft::LoraConfig;
    let device = ember::runtime::device::cpu().autodiff();
    let model = ember::models::bert::BertConfig::new(50, 16, 2, 2, 32).init(&device);
    let config = LoraConfig::new(4)
        .with_alpha(8.0)
        .with_target_modules(vec!["query".into(), "value".into()]);
    let mut model = ember::runtime::params::materialize(model.with_lora(&config, &device));
    let base_before = model.encoder.layer[0]
        .attention
        .self_attn
        .query
        .weight
        .val()
        .into_data();
    let mut optimizer = ember::runtime::optim::adamw(0.01).init();
    let ids = Tensor::<2, Int>::from_data(
        TensorData::new((0..12i64).map(|i| i % 50).collect::<Vec<_>>(), [2, 6]),
        &device,
    );
    let mask = Tensor::<2>::ones([2, 6], &device);
    for step in 0..3 {
        let loss = model
            .forward(ids.clone(), mask.clone())
            .powi_scalar(2)
            .sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let with_grad: Vec<String> = parameters(&model, Some(&grads))
            .into_iter()
            .filter(|p| p.grad.is_some())
            .map(|p| p.path)
            .collect();
        assert_eq!(with_grad.len(), 2 * 2 * 2, "step {step}: {with_grad:?}");
        assert!(
            with_grad.iter().all(|p| p.contains("_lora.lora_")),
            "step {step}: {with_grad:?}"
        );
        model = optimizer.step(1e-2, model, grads);
    }
    let base_after = model.encoder.layer[0]
        .attention
        .self_attn
        .query
        .weight
        .val()
        .into_data();
    assert_eq!(
        base_before, base_after,
        "AdamW's weight decay must not touch a frozen weight"
    );
    let lora_b = model.encoder.layer[0]
        .attention
        .self_attn
        .query_lora
        .as_ref()
        .unwrap()
        .lora_B
        .weight
        .val();
    assert!(
        lora_b.abs().sum().into_scalar::<f32>() > 0.0,
        "the adapters trained"
    );
}
