//! The `ember` command-line tool.
//!
//! Its subcommands (`inspect`, `embed`, `finetune`, `bench`) are not written
//! yet; until then it says so and points at what exists.

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    if std::env::args().any(|a| a == "--version" || a == "-V") {
        println!("ember {version}");
        return;
    }
    eprintln!(
        "ember {version}: no subcommands are available yet.\n\
         The training core is usable as a library (crates ember-runtime, ember-models);\n\
         see the examples: cargo run --release --example training_loop"
    );
    std::process::exit(2);
}
