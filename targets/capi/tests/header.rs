//! `include/ember.h` is what cbindgen generates from the crate: this test
//! regenerates it and fails when the committed header differs.
//! `EMBER_UPDATE_HEADER=1 cargo test -p ember-capi --test header` rewrites it.

use std::path::Path;

#[test]
fn the_committed_header_is_up_to_date() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");
    let path = crate_dir.join("include/ember.h");
    if std::env::var_os("EMBER_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write include/ember.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/ember.h is stale: run `EMBER_UPDATE_HEADER=1 cargo test -p ember-capi --test header` and commit it"
    );
}
