//! The admin API: cache purges and a health check, on a listener of its own.
//!
//! Every route but `GET /health` needs `Authorization: Bearer <admin.token>`; the token is
//! compared in constant time. Purges are soft (mark stale, so stale-while-revalidate and
//! stale-if-error still apply) when the request carries `Outpost-Soft-Purge: 1`, hard
//! (remove) otherwise. Routes:
//!
//! | method and path | purges |
//! |---|---|
//! | `POST /purge/all` | everything, every service |
//! | `POST /services/NAME/purge/all` | everything of one service |
//! | `POST /services/NAME/purge/key/KEY` | objects of one service tagged with surrogate key `KEY` |
//! | `POST /services/NAME/purge/url/URL` | one URL as the guest fetched it (`http://backend/path?query`), every variant |
//!
//! Answers are JSON: `{"purged": N, "soft": bool}`.

use std::collections::BTreeSet;
use std::sync::Arc;

use http::{Method, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use crate::cache::{EdgeCache, PurgeTarget, url_key};

/// The admin listener's application.
pub struct AdminApi {
    token: String,
    cache: Option<Arc<EdgeCache>>,
    services: BTreeSet<String>,
}

impl AdminApi {
    /// Serves purges of `cache` for `services`, guarded by `token`.
    pub fn new(token: String, cache: Option<Arc<EdgeCache>>, services: BTreeSet<String>) -> Self {
        Self {
            token,
            cache,
            services,
        }
    }

    fn authorized(&self, session: &ServerSession) -> bool {
        let presented = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .trim()
            .as_bytes();
        let expected = self.token.trim().as_bytes();
        // Constant time in the token's content; length differences are not secret enough
        // to matter for a random token.
        presented.len() == expected.len()
            && presented
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    fn route(&self, method: &Method, target: &str, soft: bool) -> (StatusCode, String) {
        if method != Method::POST {
            return error(StatusCode::METHOD_NOT_ALLOWED, "purges are POST requests");
        }
        let Some(cache) = &self.cache else {
            return error(StatusCode::CONFLICT, "the cache is off (cache.memory = 0)");
        };
        let purge = |target: PurgeTarget| {
            let purged = cache.purge(target, soft);
            (
                StatusCode::OK,
                serde_json::json!({ "purged": purged, "soft": soft }).to_string(),
            )
        };
        if target == "/purge/all" {
            return purge(PurgeTarget::All);
        }
        let Some(rest) = target.strip_prefix("/services/") else {
            return error(StatusCode::NOT_FOUND, "no such admin route");
        };
        let Some((service, action)) = rest.split_once('/') else {
            return error(StatusCode::NOT_FOUND, "no such admin route");
        };
        if !self.services.contains(service) {
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
            return match url_key(service, url) {
                Some(key) => purge(PurgeTarget::Key(key)),
                None => error(
                    StatusCode::BAD_REQUEST,
                    "the URL must be absolute, as the guest fetched it: http://backend/path",
                ),
            };
        }
        error(StatusCode::NOT_FOUND, "no such admin route")
    }
}

fn error(status: StatusCode, message: &str) -> (StatusCode, String) {
    (status, serde_json::json!({ "error": message }).to_string())
}

#[async_trait::async_trait]
impl ServeHttp for AdminApi {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let _ = session.drain_request_body().await;
        let head = session.req_header();
        let method = head.method.clone();
        let target = head
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let soft = head
            .headers
            .get("outpost-soft-purge")
            .is_some_and(|v| v.as_bytes() == b"1" || v.as_bytes().eq_ignore_ascii_case(b"true"));
        let (status, body) = if target == "/health" && method == Method::GET {
            (StatusCode::OK, "{\"status\":\"ok\"}".to_owned())
        } else if !self.authorized(session) {
            error(
                StatusCode::UNAUTHORIZED,
                "send Authorization: Bearer <admin.token>",
            )
        } else {
            self.route(&method, &target, soft)
        };
        if status.is_success() && target != "/health" {
            tracing::info!(%target, soft, "admin purge: {body}");
        }
        let mut response = http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("content-length", body.len() + 1);
        if status == StatusCode::UNAUTHORIZED {
            response = response.header("www-authenticate", "Bearer");
        }
        response
            .body(format!("{body}\n").into_bytes())
            .expect("valid response")
    }
}
