//! Compiles guest workspaces for `wasm32-wasip2` from a build script.
//!
//! The node embeds the example guests and the tests run real guests, so both need the wasm
//! target and a nested `cargo build`. Doing it here, from `build.rs`, keeps README's quick
//! start at two commands: the target is installed with rustup when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod foreign;

/// The target guests are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Builds `packages` of the cargo workspace at `workspace` in release mode and returns the
/// directory holding the `.wasm` files. Tells cargo to rerun when any guest source or the
/// SDK changes. Panics with an explanation on failure, as build scripts do.
pub fn build(workspace: &Path, packages: &[&str], sdk: &Path) -> PathBuf {
    watch(workspace);
    watch(sdk);
    ensure_target();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--release", "--target", TARGET, "--quiet"])
        .env("CARGO_TARGET_DIR", workspace.join("target"));
    for package in packages {
        command.args(["-p", package]);
    }
    // The outer build's flags are for the host, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        command.env_remove(var);
    }
    let status = command.status().unwrap_or_else(|e| {
        panic!(
            "running cargo to build the guests in {}: {e}",
            workspace.display()
        )
    });
    if !status.success() {
        panic!(
            "building the guests in {} failed (see the errors above); try `cd {} && cargo build --release --target {TARGET}`",
            workspace.display(),
            workspace.display()
        );
    }
    workspace.join("target").join(TARGET).join("release")
}

/// Installs the wasm target with rustup when the active toolchain lacks it.
fn ensure_target() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if let Some(sysroot) = &sysroot
        && sysroot.join("lib/rustlib").join(TARGET).is_dir()
    {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup (one time)");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => panic!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed; install it and rebuild"
        ),
    }
}

/// Asks cargo to rerun the build script when anything under `dir` changes, except build
/// output (which would make every build look stale).
///
/// Paths are printed relative to the package being built. A shared target directory (as CI
/// caches are) then checks each checkout's own files: with absolute paths, a second clone
/// would keep the first clone's build-script output, guest paths included.
fn watch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        watch_path(&entry.path());
    }
}

/// Asks cargo to rerun the build script when `path` (a file, or everything below a
/// directory) changes, printed relative to the package as [`watch`] explains.
fn watch_path(path: &Path) {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let shown = manifest
        .as_deref()
        .map_or(path.to_owned(), |m| relative(path, m));
    println!("cargo:rerun-if-changed={}", shown.display());
}

/// `path` relative to `base` (both absolute): `../guest-examples/hello` from `proxy/`.
fn relative(path: &Path, base: &Path) -> PathBuf {
    let path: Vec<_> = path.components().collect();
    let base: Vec<_> = base.components().collect();
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for part in &path[common..] {
        out.push(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_to_the_common_ancestor() {
        assert_eq!(
            relative(
                Path::new("/w/repo/guest-examples/hello"),
                Path::new("/w/repo/proxy")
            ),
            PathBuf::from("../guest-examples/hello")
        );
        assert_eq!(
            relative(
                Path::new("/w/repo/tests/guests/trap"),
                Path::new("/w/repo/tests")
            ),
            PathBuf::from("guests/trap")
        );
    }
}
