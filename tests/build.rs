//! Builds every example guest and every test guest, and tells the tests where they are.

use std::path::Path;

fn main() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("tests/ sits in the workspace root");
    let sdk = root.join("sdk");
    let examples = outpost_guest_build::build(&root.join("guest-examples"), &[], &sdk);
    let hostile = outpost_guest_build::build(&manifest.join("guests"), &[], &sdk);
    println!(
        "cargo:rustc-env=OUTPOST_EXAMPLES_WASM={}",
        examples.display()
    );
    println!(
        "cargo:rustc-env=OUTPOST_TEST_GUESTS_WASM={}",
        hostile.display()
    );
}
