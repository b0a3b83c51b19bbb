//! The admin API, on a listener of its own: cache purges, reload, liveness and readiness.
//!
//! `GET /health` (liveness: the process serves) and `GET /ready` (readiness: a config is
//! loaded and the node is not draining) need no token. Every other route needs
//! `Authorization: Bearer <admin.token>`, checked (in constant time) before anything else
//! happens, the request body included: no route takes a body, and one over 64 KiB is
//! refused unread. Purges are soft (mark stale, so stale-while-revalidate and
//! stale-if-error still apply) when the request carries `Outpost-Soft-Purge: 1`, hard
//! (remove) otherwise. Routes:
//!
//! | method and path | does |
//! |---|---|
//! | `POST /purge/all` | purges everything, every service |
//! | `POST /services/NAME/purge/all` | purges everything of one service |
//! | `POST /services/NAME/purge/key/KEY` | purges one service's objects tagged with surrogate key `KEY` |
//! | `POST /services/NAME/purge/url/URL` | purges one URL, every variant: as a guest fetched it (`http://backend/path?query`) or as clients asked for it (`https://host/path`, the response cache) |
//! | `POST /reload` | loads the config file again and swaps it in when it is valid |
//!
//! Answers are JSON. Nothing a client sends (headers, token, body) is ever logged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use hyper::body::Incoming;
use wasmtime_wasi_http::WasiBody;

use crate::cache::{CacheKey, EdgeCache, Layer, PurgeTarget};
use crate::config::Secret;
use crate::http::full_body;
use crate::server::{ConnInfo, Handler};

/// Largest request body the admin listener accepts (none of its routes reads one).
const MAX_ADMIN_BODY: u64 = 64 * 1024;

/// What the admin API acts on.
pub trait AdminTarget: Send + Sync + 'static {
    /// The edge cache, if the node has one.
    fn cache(&self) -> Option<Arc<EdgeCache>>;
    /// Whether `name` is a service of the loaded config.
    fn has_service(&self, name: &str) -> bool;
    /// Whether the node should get traffic (loaded, not draining).
    fn ready(&self) -> bool;
    /// Loads the config again; `Err` holds why it was refused (the old one keeps serving).
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;
    /// The current admin token.
    fn token(&self) -> Option<Secret>;
}

/// The admin listener's request handler.
#[derive(Clone)]
pub struct AdminApi {
    target: Arc<dyn AdminTarget>,
}

impl AdminApi {
    /// Serves `target`.
    pub fn new(target: Arc<dyn AdminTarget>) -> Self {
        Self { target }
    }

    fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let Some(token) = self.target.token() else {
            return false;
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .trim()
            .as_bytes();
        let expected = token.expose().trim().as_bytes();
        // Constant time in the token's content; length differences are not secret enough
        // to matter for a random token.
        presented.len() == expected.len()
            && presented
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    fn purge(&self, method: &Method, path: &str, soft: bool) -> (StatusCode, String) {
        if method != Method::POST {
            return error(StatusCode::METHOD_NOT_ALLOWED, "purges are POST requests");
        }
        let Some(cache) = self.target.cache() else {
            return error(StatusCode::CONFLICT, "the cache is off (cache.memory = 0)");
        };
        let purge = |target: PurgeTarget| {
            let purged = cache.purge(target, soft);
            (
                StatusCode::OK,
                serde_json::json!({ "purged": purged, "soft": soft }).to_string(),
            )
        };
        if path == "/purge/all" {
            return purge(PurgeTarget::All);
        }
        let Some(rest) = path.strip_prefix("/services/") else {
            return error(StatusCode::NOT_FOUND, "no such admin route");
        };
        let Some((service, action)) = rest.split_once('/') else {
            return error(StatusCode::NOT_FOUND, "no such admin route");
        };
        if !self.target.has_service(service) {
            return error(StatusCode::NOT_FOUND, &format!("no service `{service}`"));
        }
        if action == "purge/all" {
            return purge(PurgeTarget::Service(service.to_owned()));
        }
        if let Some(key) = action.strip_prefix("purge/key/")
            && !key.is_empty()
            && !key.contains('/')
        {
            return purge(PurgeTarget::SurrogateKey {
                service: service.to_owned(),
                key: key.to_owned(),
            });
        }
        if let Some(url) = action.strip_prefix("purge/url/") {
            let service: Arc<str> = service.into();
            let keys: Vec<CacheKey> = Layer::ALL
                .iter()
                .filter_map(|layer| CacheKey::of_url(&service, *layer, url))
                .collect();
            return if keys.is_empty() {
                error(
                    StatusCode::BAD_REQUEST,
                    "the URL must be absolute: http://backend/path as the guest fetched it, or \
                     https://host/path as clients ask for it",
                )
            } else {
                purge(PurgeTarget::Keys(keys))
            };
        }
        error(StatusCode::NOT_FOUND, "no such admin route")
    }
}

fn error(status: StatusCode, message: &str) -> (StatusCode, String) {
    (status, serde_json::json!({ "error": message }).to_string())
}

fn json(status: StatusCode, body: String) -> http::Response<WasiBody> {
    let mut response = http::Response::new(full_body(format!("{body}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

impl Handler for AdminApi {
    type Body = WasiBody;
    type Future = Pin<Box<dyn Future<Output = http::Response<WasiBody>> + Send>>;

    fn handle(&self, request: http::Request<Incoming>, _conn: &Arc<ConnInfo>) -> Self::Future {
        let (parts, _body) = request.into_parts();
        // A purged URL may carry a query: keep it with the path.
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let method = parts.method;
        if method == Method::GET && path == "/health" {
            return Box::pin(async { json(StatusCode::OK, "{\"status\":\"ok\"}".to_owned()) });
        }
        if method == Method::GET && path == "/ready" {
            let ready = self.target.ready();
            return Box::pin(async move {
                if ready {
                    json(StatusCode::OK, "{\"ready\":true}".to_owned())
                } else {
                    json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "{\"ready\":false}".to_owned(),
                    )
                }
            });
        }
        if !self.authorized(&parts.headers) {
            tracing::debug!("admin request without a valid token refused");
            let (status, body) = error(
                StatusCode::UNAUTHORIZED,
                "send Authorization: Bearer <admin.token>",
            );
            return Box::pin(async move { json(status, body) });
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > MAX_ADMIN_BODY) {
            let (status, body) = error(StatusCode::PAYLOAD_TOO_LARGE, "admin routes take no body");
            return Box::pin(async move { json(status, body) });
        }
        if path == "/reload" {
            if method != Method::POST {
                let (status, body) = error(StatusCode::METHOD_NOT_ALLOWED, "reload is a POST");
                return Box::pin(async move { json(status, body) });
            }
            let reload = self.target.reload();
            return Box::pin(async move {
                match reload.await {
                    Ok(summary) => json(
                        StatusCode::OK,
                        serde_json::json!({ "reloaded": true, "config": summary }).to_string(),
                    ),
                    Err(why) => json(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        serde_json::json!({ "reloaded": false, "error": why }).to_string(),
                    ),
                }
            });
        }
        let soft = parts
            .headers
            .get("outpost-soft-purge")
            .is_some_and(|v| v.as_bytes() == b"1" || v.as_bytes().eq_ignore_ascii_case(b"true"));
        let (status, body) = self.purge(&method, &path, soft);
        if status.is_success() {
            tracing::info!(route = %path, soft, "admin purge: {body}");
        }
        Box::pin(async move { json(status, body) })
    }
}
