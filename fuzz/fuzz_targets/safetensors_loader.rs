//! Arbitrary bytes into the safetensors loader: any input must give `Ok` or a
//! clear `Err`, never a panic, a hang or an out-of-memory abort.
#![no_main]

use burn::tensor::Device;
use ember_models::mlp::MlpConfig;
use ember_runtime::io::{LoadOptions, load_safetensors_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let model = MlpConfig::new(vec![3, 4, 2]).init(&ember_runtime::device::cpu());
    for strict in [true, false] {
        let options = LoadOptions::default().strict(strict);
        let _ = load_safetensors_bytes(model.clone(), data.to_vec(), "fuzz.safetensors", &options);
    }
});
