//! Builds the two example guests the built-in default node embeds.

use std::path::Path;

fn main() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("proxy/ sits in the workspace root");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let wasm_dir = outpost_guest_build::build(
        &root.join("guest-examples"),
        &["hello", "origin-proxy"],
        &root.join("sdk"),
    );
    for name in ["hello", "origin_proxy"] {
        let from = wasm_dir.join(format!("{name}.wasm"));
        std::fs::copy(&from, Path::new(&out).join(format!("{name}.wasm")))
            .unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
    }
}
