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
    let foreign = build_foreign_guests(&root.join("guest-examples"));
    println!("cargo:rustc-env=OUTPOST_FOREIGN_WASM={}", foreign.display());
    println!(
        "cargo:rustc-env=OUTPOST_EXAMPLES_WASM={}",
        examples.display()
    );
    println!(
        "cargo:rustc-env=OUTPOST_TEST_GUESTS_WASM={}",
        hostile.display()
    );
}

/// Builds the Python and JavaScript guests with their own toolchains into OUT_DIR.
fn build_foreign_guests(examples: &Path) -> std::path::PathBuf {
    use outpost_guest_build::foreign;
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let tools = examples.join("target").join("foreign-tools");
    let foreign_dir = examples.join("foreign");
    let wit = foreign_dir.join("wit");
    foreign::build_python(
        &foreign_dir.join("python-proxy"),
        "app",
        &wit,
        "guest",
        &tools,
        &out.join("python_proxy.wasm"),
    );
    foreign::build_javascript(
        &foreign_dir.join("js-proxy").join("app.js"),
        &foreign_dir.join("js-proxy").join("toolchain"),
        &wit,
        "guest",
        &tools,
        &out.join("js_proxy.wasm"),
    );
    out
}
