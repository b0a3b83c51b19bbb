//! The response cache's origin: running the service's guest. A miss (or a refresh, in the
//! background) runs the guest for the request the cache fills; whatever the guest answers,
//! failures included (as the node's 5xx answers, which are never stored and make
//! stale-if-error apply), goes to the cache, which decides what it may keep.

use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use super::{Caller, Service, Site};
use crate::cache::{Origin, OriginFuture, Overrides};
use crate::host::ResponsePolicy;

/// Runs `service`'s guest for the response cache, on behalf of `caller`.
pub(crate) struct GuestOrigin {
    pub(crate) service: Arc<Service>,
    pub(crate) site: Arc<Site>,
    pub(crate) caller: Caller,
}

impl Origin for GuestOrigin {
    fn send(&self, request: http::Request<WasiBody>) -> OriginFuture<'_> {
        Box::pin(async move {
            let policy: ResponsePolicy = Arc::new(Mutex::new(None));
            let answer = self
                .service
                .invoke(&self.site, request, &self.caller, Some(policy.clone()))
                .await;
            let mut response = match answer {
                Ok(answer) => answer.response.map(|body| body.boxed_unsync()),
                Err(failed) => failed
                    .response(&self.caller.request_id)
                    .map(crate::http::full_body),
            };
            // What the guest asked of the cache (`cache-response`), for storing this answer.
            let overrides: Option<Overrides> = policy.lock().expect("response policy lock").take();
            if let Some(overrides) = overrides {
                response.extensions_mut().insert(overrides);
            }
            Ok::<_, HttpError>(response)
        })
    }
}
