//! Builds guests written in other languages, with their own toolchains, from a build script.
//!
//! These guests prove the portability promise: components Outpost's SDK had no part in.
//! Python guests are built with `componentize-py` (PyPI), JavaScript guests with
//! `jco componentize` (npm). Both toolchains are pinned and installed once into a
//! directory the caller names (a `target/` folder), so `cargo test` needs only `python3`
//! with pip and `node` with npm on the machine, not a global install.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The componentize-py release the Python guests are built with.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// Builds the Python app `module` (`app` for `app.py`) in `app_dir` against the world
/// `world` of the WIT at `wit`, writing `out`. Installs componentize-py under `tools` the
/// first time. Panics with what to install when python3 or pip is missing.
pub fn build_python(
    app_dir: &Path,
    module: &str,
    wit: &Path,
    world: &str,
    tools: &Path,
    out: &Path,
) {
    crate::watch(app_dir);
    crate::watch(wit);
    let site = tools.join("python");
    let stamp = site.join(".installed");
    if !read_matches(&stamp, COMPONENTIZE_PY) {
        println!(
            "cargo:warning=installing {COMPONENTIZE_PY} into {} (one time)",
            site.display()
        );
        let _ = std::fs::remove_dir_all(&site);
        run(
            Command::new(python())
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg("--target")
                .arg(&site)
                .arg(COMPONENTIZE_PY),
            "installing componentize-py needs python3 with pip (Debian: apt-get install python3-pip)",
        );
        write(&stamp, COMPONENTIZE_PY);
    }
    // componentize-py leaves `__pycache__` beside the sources, which would look like a
    // source change to cargo; it builds a copy instead.
    let staged = stage(app_dir, &tools.join("python-src"));
    run(
        Command::new(python())
            .current_dir(&staged)
            .env("PYTHONPATH", &site)
            .args([
                "-c",
                "import sys, componentize_py; sys.argv[0] = 'componentize-py'; sys.exit(componentize_py.script())",
                "--quiet",
            ])
            .arg("-d")
            .arg(wit)
            .args(["-w", world, "componentize", module, "-o"])
            .arg(out),
        &format!("componentize-py could not build {}", app_dir.display()),
    );
}

/// Builds the JavaScript module `source` against the world `world` of the WIT at `wit`,
/// writing `out`. The toolchain is the npm project in `toolchain` (a `package.json` and
/// its `package-lock.json`, so every transitive package is pinned), installed with
/// `npm ci` under `tools` the first time and whenever the lockfile changes. Panics with
/// what to install when node or npm is missing.
///
/// The versions there: jco 1.16.1 with componentize-js 0.19.3, which embeds StarlingMonkey
/// built against WASI 0.2.3; the newest jco (1.35) could not load any WIT path on Node 20
/// (Debian's).
pub fn build_javascript(
    source: &Path,
    toolchain: &Path,
    wit: &Path,
    world: &str,
    tools: &Path,
    out: &Path,
) {
    // Files only: a `node_modules` a user installed beside the lockfile is not a source.
    for file in [
        source.to_owned(),
        toolchain.join("package.json"),
        toolchain.join("package-lock.json"),
    ] {
        crate::watch_path(&file);
    }
    crate::watch(wit);
    let prefix = tools.join("node");
    let stamp = prefix.join(".installed");
    let read = |name: &str| {
        std::fs::read_to_string(toolchain.join(name))
            .unwrap_or_else(|e| panic!("reading {}: {e}", toolchain.join(name).display()))
    };
    let (manifest, lock) = (read("package.json"), read("package-lock.json"));
    if !read_matches(&stamp, &lock) {
        println!(
            "cargo:warning=installing the JavaScript guest toolchain into {} (npm ci, one time)",
            prefix.display()
        );
        let _ = std::fs::remove_dir_all(&prefix);
        std::fs::create_dir_all(&prefix).expect("creating the node tools directory");
        write(&prefix.join("package.json"), &manifest);
        write(&prefix.join("package-lock.json"), &lock);
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--silent", "--prefix"])
                .arg(&prefix),
            "installing jco needs Node.js 18 or newer with npm (Debian: apt-get install nodejs npm)",
        );
        write(&stamp, &lock);
    }
    // jco reads the WIT through a WASI sandbox that sees the working directory, so it runs
    // from the source's directory with relative paths.
    let dir = source.parent().unwrap_or(Path::new("."));
    run(
        Command::new("node")
            .current_dir(dir)
            .arg(prefix.join("node_modules/@bytecodealliance/jco/src/jco.js"))
            .arg("componentize")
            .arg(source.file_name().unwrap_or(OsStr::new("app.js")))
            .arg("--wit")
            .arg(relative_or_absolute(wit, dir))
            .args(["--world-name", world, "--out"])
            .arg(out),
        &format!("jco componentize could not build {}", source.display()),
    );
}

/// Copies the files directly in `dir` to a fresh `staging/<dir name>` and returns it.
fn stage(dir: &Path, staging: &Path) -> PathBuf {
    let target = staging.join(dir.file_name().unwrap_or(OsStr::new("app")));
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir_all(&target)
        .unwrap_or_else(|e| panic!("creating {}: {e}", target.display()));
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries.flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), target.join(entry.file_name()))
                .unwrap_or_else(|e| panic!("copying {}: {e}", entry.path().display()));
        }
    }
    target
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn run(command: &mut Command, hint: &str) {
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("{hint} ({status}; command: {command:?})"),
        Err(e) => panic!("{hint} ({e}; command: {command:?})"),
    }
}

fn read_matches(stamp: &Path, wanted: &str) -> bool {
    std::fs::read_to_string(stamp).is_ok_and(|s| s == wanted)
}

fn write(stamp: &Path, content: &str) {
    std::fs::write(stamp, content).unwrap_or_else(|e| panic!("writing {}: {e}", stamp.display()));
}

fn relative_or_absolute(path: &Path, base: &Path) -> PathBuf {
    let relative = crate::relative(path, base);
    if relative.as_os_str().is_empty() {
        path.to_owned()
    } else {
        relative
    }
}
