//! Certificates for the HTTPS listeners, chosen per connection by SNI.
//!
//! pingora's `TlsSettings` holds one certificate per listener; an edge node serves many
//! domains on one address, so we hand rustls our own [`SniResolver`]. Names are matched by
//! [`HostMap`]: exact names win over wildcards (`*.example.com` covers one or more labels
//! below `example.com`); a client that sends no SNI, or an unknown name, gets the first
//! configured certificate, as nginx's default server would. A reload replaces the whole
//! set at once ([`SniResolver::replace`]); handshakes under way keep the set they began with.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{Config, TlsConfig};
use crate::host_pattern::HostMap;

/// Errors loading certificates, naming the file at fault.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}\n  fix: {fix}")]
pub struct TlsError {
    file: String,
    reason: String,
    fix: &'static str,
}

/// One loaded set of certificates.
pub struct Certificates {
    by_name: HostMap<Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl Certificates {
    /// Loads every `[[tls.certificates]]` entry of `config`.
    pub fn load(config: &Config, tls: &TlsConfig) -> Result<Certificates, TlsError> {
        let mut by_name = HostMap::default();
        let mut first = None;
        for entry in &tls.certificates {
            let key = Arc::new(load_certified_key(
                &config.resolve(&entry.cert),
                &config.resolve(&entry.key),
            )?);
            first.get_or_insert_with(|| key.clone());
            for domain in &entry.domains {
                by_name.insert(domain, key.clone());
            }
        }
        let default = first.ok_or_else(|| TlsError {
            file: config.source.clone(),
            reason: "no certificate configured".into(),
            fix: "add [[tls.certificates]]",
        })?;
        Ok(Certificates { by_name, default })
    }

    fn find(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        name.and_then(|name| self.by_name.get(name))
            .unwrap_or(&self.default)
            .clone()
    }
}

/// Picks the certificate for a TLS handshake by its SNI name.
pub struct SniResolver {
    current: ArcSwap<Certificates>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver").finish_non_exhaustive()
    }
}

impl SniResolver {
    /// A resolver serving `certificates`.
    pub fn new(certificates: Certificates) -> Self {
        Self {
            current: ArcSwap::from_pointee(certificates),
        }
    }

    /// Serves `certificates` from the next handshake on.
    pub fn replace(&self, certificates: Certificates) {
        self.current.store(Arc::new(certificates));
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().find(hello.server_name()))
    }
}

fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| TlsError {
            file: path.display().to_string(),
            reason: format!("cannot read: {e}"),
            fix: "check the path and permissions",
        })
    };
    let cert_pem = read(cert_path)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError {
            file: cert_path.display().to_string(),
            reason: format!("not a PEM certificate chain: {e}"),
            fix: "give a PEM file with the leaf certificate first",
        })?;
    if certs.is_empty() {
        return Err(TlsError {
            file: cert_path.display().to_string(),
            reason: "no certificate found".into(),
            fix: "give a PEM file with `-----BEGIN CERTIFICATE-----` blocks",
        });
    }
    let key_pem = read(key_path)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| TlsError {
            file: key_path.display().to_string(),
            reason: "no private key found".into(),
            fix: "give a PEM PKCS#8, PKCS#1 or SEC1 private key",
        })?;
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError {
            file: key_path.display().to_string(),
            reason: format!("unsupported private key: {e}"),
            fix: "use an RSA, ECDSA P-256/P-384 or Ed25519 key",
        })?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified.keys_match().map_err(|e| TlsError {
        file: key_path.display().to_string(),
        reason: format!("the key does not match {}: {e}", cert_path.display()),
        fix: "pair each certificate with its own key",
    })?;
    Ok(certified)
}

/// The server name a TLS client asked for, kept on the connection for guests
/// (request info's `tls-sni`). pingora's digest does not carry it; its handshake callback
/// can attach it.
#[derive(Debug, Clone)]
pub struct ClientSni(pub String);

/// The handshake callback that records [`ClientSni`] on each TLS connection.
pub struct RecordSni;

#[async_trait::async_trait]
impl pingora_core::listeners::TlsAccept for RecordSni {
    async fn handshake_complete_callback(
        &self,
        tls: &pingora_core::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let name = tls.server_name()?;
        Some(Arc::new(ClientSni(name.to_owned())))
    }
}
