//! Guests compiled ahead of time: `outpost compile`'s `.cwasm` files and the on-disk compile
//! cache that `serve`, `check`, `--watch` and reloads share.
//!
//! Both hold the same artifact: a header naming this node's engine, a SHA-256 digest of
//! the payload, and the payload wasmtime serialized. A file whose engine differs (another
//! Outpost or wasmtime build, other engine settings) is refused before wasmtime sees it; a
//! payload that does not match its digest is corrupt. A cache entry that fails either check
//! is compiled again and rewritten; a `.cwasm` the operator named is an error.
//!
//! Cache entries are named by the guest's digest and the engine's compatibility hash, so a
//! changed guest or a new Outpost build never loads a stale entry, and are written to a
//! temporary file first and renamed into place, so a reader never sees half an entry.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::guest::compile;
use super::{Runtime, RuntimeError};

/// What every artifact starts with.
const MAGIC: &[u8; 16] = b"outpost-cwasm-v1";
/// Magic, engine hash (8 bytes), payload digest (32 bytes).
const HEADER_LEN: usize = MAGIC.len() + 8 + 32;

/// A compiled artifact for this node's engine, ready to write.
pub fn encode(engine_hash: u64, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&engine_hash.to_le_bytes());
    bytes.extend_from_slice(&Sha256::digest(payload));
    bytes.extend_from_slice(payload);
    bytes
}

/// Why an artifact cannot be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not an Outpost artifact (no header: a plain wasmtime `.cwasm`, or something else).
    NotAnArtifact,
    /// Compiled by another Outpost or wasmtime build, or with other engine settings.
    OtherEngine,
    /// The payload does not match its digest.
    Corrupt,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::NotAnArtifact => "it is not a guest precompiled by `outpost compile`",
            Refusal::OtherEngine => {
                "it was compiled by another Outpost or wasmtime build, or with other \
                 [runtime] settings"
            }
            Refusal::Corrupt => "its contents do not match their digest (the file is corrupt)",
        })
    }
}

/// The payload of `bytes` if it is an intact artifact for the engine `engine_hash`.
pub fn decode(engine_hash: u64, bytes: &[u8]) -> Result<&[u8], Refusal> {
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Refusal::NotAnArtifact);
    }
    let (hash, rest) = bytes[MAGIC.len()..].split_at(8);
    if hash != engine_hash.to_le_bytes() {
        return Err(Refusal::OtherEngine);
    }
    let (digest, payload) = rest.split_at(32);
    if Sha256::digest(payload).as_slice() != digest {
        return Err(Refusal::Corrupt);
    }
    Ok(payload)
}

/// A stable fingerprint of everything that makes compiled code loadable by `engine`:
/// wasmtime's own compatibility hash (version, compiler settings, features) and this
/// Outpost's version.
pub fn engine_hash(engine: &Engine) -> u64 {
    // `DefaultHasher::new()` uses fixed keys: the same binary always gets the same value.
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    hasher.finish()
}

/// Where a guest's compiled code came from, for the start-up line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Compiled now, taking this long.
    Compiled(Duration),
    /// Loaded from the compile cache.
    Cached,
    /// A `.cwasm` from `outpost compile`.
    Precompiled,
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provenance::Compiled(took) => write!(f, "compiled in {} ms", took.as_millis()),
            Provenance::Cached => f.write_str("loaded from the compile cache"),
            Provenance::Precompiled => f.write_str("loaded precompiled"),
        }
    }
}

/// The on-disk compile cache.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

/// Distinguishes temporary files of concurrent writers within one process.
static TEMP_FILES: AtomicU64 = AtomicU64::new(0);

impl CompileCache {
    /// The cache in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The directory entries live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the compiled `wasm` for the engine `engine_hash` is kept.
    fn entry(&self, wasm: &[u8], engine_hash: u64) -> PathBuf {
        let digest = Sha256::digest(wasm);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}-{engine_hash:016x}.cwasm"))
    }

    /// The component cached at `path` (an [`CompileCache::entry`]), if it is intact. A
    /// damaged or foreign entry is reported and ignored (the caller compiles and
    /// overwrites it).
    fn load(
        &self,
        engine: &Engine,
        engine_hash: u64,
        path: &Path,
        name: &str,
    ) -> Option<Component> {
        let bytes = std::fs::read(path).ok()?;
        let loaded = decode(engine_hash, &bytes)
            .map_err(|refusal| refusal.to_string())
            .and_then(|payload| {
                outpost_precompiled::load_trusted_artifact(engine, payload)
                    .map_err(|e| format!("{e:#}"))
            });
        match loaded {
            Ok(component) => Some(component),
            Err(reason) => {
                tracing::warn!(
                    "{name}: ignoring compile cache entry {}: {reason}; compiling again",
                    path.display()
                );
                None
            }
        }
    }

    /// Stores `component` at `path` (an [`CompileCache::entry`]): written aside, then
    /// renamed into place. A cache that cannot be written costs the next start a compile,
    /// nothing more.
    fn store(&self, engine_hash: u64, path: &Path, component: &Component, name: &str) {
        let written = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
            .and_then(|payload| {
                std::fs::create_dir_all(&self.dir)?;
                let temp = self.dir.join(format!(
                    ".tmp-{}-{}",
                    std::process::id(),
                    TEMP_FILES.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&temp, encode(engine_hash, &payload))?;
                std::fs::rename(&temp, path).inspect_err(|_| {
                    let _ = std::fs::remove_file(&temp);
                })
            });
        if let Err(error) = written {
            tracing::warn!(
                "{name}: cannot write the compile cache entry {}: {error}",
                path.display()
            );
        }
    }
}

/// The guest file at `path`: its name for errors and its bytes.
fn read_guest(path: &Path) -> Result<(String, Vec<u8>), RuntimeError> {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => Ok((name, bytes)),
        Err(source) => Err(RuntimeError::Read { path: name, source }),
    }
}

/// Loads the guest at `path`: a `.cwasm` from `outpost compile` as it is, a `.wasm` from
/// `runtime`'s compile cache when an intact entry exists, else compiled (and cached).
pub fn load_component(
    runtime: &Runtime,
    path: &Path,
) -> Result<(Component, Provenance), RuntimeError> {
    let (name, bytes) = read_guest(path)?;
    let engine = &runtime.engine;
    let hash = runtime.engine_hash;
    let named_precompiled = path.extension().is_some_and(|e| e == "cwasm");
    if named_precompiled
        || bytes.starts_with(MAGIC)
        || wasmtime::Engine::detect_precompiled(&bytes).is_some()
    {
        let refused = |reason: String| RuntimeError::Precompiled {
            path: name.clone(),
            reason,
            fix: "compile the .wasm again with this node's `outpost compile` (and the same \
                  config), or name the .wasm itself",
        };
        let payload = decode(hash, &bytes).map_err(|r| refused(r.to_string()))?;
        let component = outpost_precompiled::load_trusted_artifact(engine, payload)
            .map_err(|e| refused(format!("{e:#}")))?;
        return Ok((component, Provenance::Precompiled));
    }
    // The entry's name digests the whole guest: work it out once for the load and the store.
    let cached = runtime
        .compile_cache
        .as_ref()
        .map(|cache| (cache, cache.entry(&bytes, hash)));
    if let Some(component) = cached
        .as_ref()
        .and_then(|(cache, entry)| cache.load(engine, hash, entry, &name))
    {
        return Ok((component, Provenance::Cached));
    }
    let started = Instant::now();
    let component = compile(runtime, &name, &bytes)?;
    let took = started.elapsed();
    if let Some((cache, entry)) = &cached {
        cache.store(hash, entry, &component, &name);
    }
    Ok((component, Provenance::Compiled(took)))
}

/// `outpost compile`: the artifact for the `.wasm` at `path`, for `runtime`'s engine.
pub fn precompile(runtime: &Runtime, path: &Path) -> Result<Vec<u8>, RuntimeError> {
    let (name, bytes) = read_guest(path)?;
    let component = compile(runtime, &name, &bytes)?;
    // Refuse now what `serve` would refuse later: the guest must link on this node.
    super::Compiled::link(runtime, &name, &component)?;
    let payload = component
        .serialize()
        .map_err(|e| RuntimeError::NotAComponent {
            path: name,
            reason: format!("{e:#}"),
        })?;
    Ok(encode(runtime.engine_hash, &payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_round_trip_and_refuse_what_they_must() {
        let artifact = encode(7, b"payload");
        assert_eq!(decode(7, &artifact), Ok(&b"payload"[..]));
        assert_eq!(decode(8, &artifact), Err(Refusal::OtherEngine));
        let mut corrupt = artifact.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        assert_eq!(decode(7, &corrupt), Err(Refusal::Corrupt));
        assert_eq!(
            decode(7, b"\x7fELF plain wasmtime"),
            Err(Refusal::NotAnArtifact)
        );
        assert_eq!(decode(7, &artifact[..10]), Err(Refusal::NotAnArtifact));
    }
}
