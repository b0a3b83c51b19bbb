//! A message's headers, left in the host until the guest reads them.
//!
//! Copying a header map into guest memory and back costs two allocations per field on each
//! side of the boundary, and a proxying guest usually reads none of a backend response's
//! fields: it adds one and passes the rest on. So headers that arrive from the host stay
//! there, as a host-side copy of the fields; a change to a field the guest has not read
//! is made host-side too, and sending the message hands the same fields back. The first
//! read copies them in once, and from then on the guest's map is the only copy.

use std::cell::OnceCell;
use std::fmt;
use std::rc::Rc;

use http::{HeaderMap, HeaderName, HeaderValue};
use wasip2::http::types::{Fields, IncomingRequest};

use crate::error::Error;
use crate::wasi::{HOST_MANAGED, from_fields, to_fields};

/// Headers in guest memory, or still in the host.
pub(crate) struct Headers {
    /// The guest's copy; once set, the only copy that counts.
    local: OnceCell<HeaderMap>,
    /// Where the headers are while the guest has not read them.
    host: Host,
}

enum Host {
    /// Nowhere but in the guest's copy.
    None,
    /// In the client's request, read on first use (a guest that answers by itself never
    /// copies them). They cannot be passed on as they are: they carry `host`, which
    /// wasi:http lets no guest send.
    Request(Rc<IncomingRequest>),
    /// A host-side, mutable copy of a backend's fields, changed and sent there.
    Fields(Fields),
}

impl Headers {
    /// No headers.
    pub(crate) fn new() -> Self {
        Self {
            local: OnceCell::from(HeaderMap::new()),
            host: Host::None,
        }
    }

    /// The headers of the client's request, read when the guest first asks.
    pub(crate) fn of_request(request: Rc<IncomingRequest>) -> Self {
        Self {
            local: OnceCell::new(),
            host: Host::Request(request),
        }
    }

    /// A backend response's headers (`fields` is its immutable child resource): copied
    /// host-side, so they outlive the response and may change there.
    pub(crate) fn of_response(fields: &Fields) -> Self {
        Self {
            local: OnceCell::new(),
            host: Host::Fields(fields.clone()),
        }
    }

    /// The headers, copied into guest memory on the first call.
    pub(crate) fn map(&self) -> &HeaderMap {
        self.local.get_or_init(|| match &self.host {
            Host::None => HeaderMap::new(),
            Host::Request(request) => from_fields(&request.headers()),
            Host::Fields(fields) => from_fields(fields),
        })
    }

    /// The headers to change, copied into guest memory first.
    pub(crate) fn map_mut(&mut self) -> &mut HeaderMap {
        self.map();
        // The guest's copy is the only one now.
        self.host = Host::None;
        self.local.get_mut().expect("copied in just now")
    }

    /// Sets `name` to `value` alone: host-side while the guest has not read the fields.
    pub(crate) fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        if let Some(fields) = self.host_only(&name)
            && fields
                .set(name.as_str(), &[value.as_bytes().to_vec()])
                .is_ok()
        {
            return;
        }
        self.map_mut().insert(name, value);
    }

    /// Removes every value of `name`: host-side while the guest has not read the fields.
    pub(crate) fn remove(&mut self, name: &str) {
        let Ok(name) = HeaderName::try_from(name) else {
            return;
        };
        if let Some(fields) = self.host_only(&name)
            && fields.delete(name.as_str()).is_ok()
        {
            return;
        }
        self.map_mut().remove(name);
    }

    /// The host's fields when they are the only copy and `name` is one the host lets a
    /// guest change (the host-managed ones are dropped at send from the guest's copy).
    fn host_only(&self, name: &HeaderName) -> Option<&Fields> {
        match &self.host {
            Host::Fields(fields)
                if self.local.get().is_none() && !HOST_MANAGED.contains(&name.as_str()) =>
            {
                Some(fields)
            }
            _ => None,
        }
    }

    /// The fields to send: the host's own when the guest never read them, else a copy of
    /// the guest's map without host-managed fields. `content_length` is set when `Some`;
    /// any length is dropped when `keep_length` is false.
    pub(crate) fn into_fields(
        mut self,
        content_length: Option<u64>,
        keep_length: bool,
    ) -> Result<Fields, Error> {
        if let Some(len) = content_length {
            self.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        if !keep_length {
            self.remove(http::header::CONTENT_LENGTH.as_str());
        }
        match std::mem::replace(&mut self.host, Host::None) {
            Host::Fields(fields) if self.local.get().is_none() => Ok(fields),
            host => {
                self.host = host;
                to_fields(self.map(), keep_length)
            }
        }
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.local.get() {
            Some(map) => map.fmt(f),
            None => f.write_str("{ headers not yet read from the host }"),
        }
    }
}
