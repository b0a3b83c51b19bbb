//! What the node knows about the current request beyond its HTTP message: the client's IP,
//! the HTTP version, TLS details (protocol, cipher, SNI), the request id and the POP that served it.

use std::net::IpAddr;

/// Facts about the request being handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// The client's IP address (the TCP peer of the node).
    pub client_ip: Option<IpAddr>,
    /// `HTTP/1.1` or `HTTP/2`.
    pub http_version: String,
    /// The TLS protocol (e.g. `TLSv1_3`) when the request came over TLS.
    pub tls_protocol: Option<String>,
    /// The TLS cipher suite when the request came over TLS.
    pub tls_cipher: Option<String>,
    /// The server name the client asked for in its TLS handshake (SNI), if it sent one.
    pub tls_sni: Option<String>,
    /// The id in the node's logs and in the `x-outpost-request-id` response header.
    pub request_id: String,
    /// The node's POP name (`server.pop` in the node config).
    pub pop: String,
}

/// The current request's info.
///
/// ```no_run
/// let info = outpost::request_info();
/// if let Some(ip) = info.client_ip {
///     outpost::info!("request {} from {ip} at {}", info.request_id, info.pop);
/// }
/// ```
pub fn request_info() -> RequestInfo {
    let info = crate::imports::request_info::get();
    RequestInfo {
        client_ip: info.client_ip.and_then(|ip| ip.parse().ok()),
        http_version: info.http_version,
        tls_protocol: info.tls_protocol,
        tls_cipher: info.tls_cipher,
        tls_sni: info.tls_sni,
        request_id: info.request_id,
        pop: info.pop,
    }
}
