//! What requests and responses share: header and body accessors, generated once for both.

/// Expands, inside `impl $ty { ... }`, to the header and body methods of an HTTP message
/// type with `headers: Headers` and `body: Body` fields. Setting or removing a header does
/// not copy a backend's fields into guest memory; reading one does, once.
macro_rules! headers_and_body {
    ($ty:ident) => {
        /// All headers.
        pub fn headers(&self) -> &http::HeaderMap {
            self.headers.map()
        }

        /// All headers, to change.
        pub fn headers_mut(&mut self) -> &mut http::HeaderMap {
            self.headers.map_mut()
        }

        /// The first value of header `name` as text, if present and valid UTF-8
        /// (names are case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.map().get(name).and_then(|v| v.to_str().ok())
        }

        /// Sets header `name` to `value`, replacing earlier values.
        ///
        /// # Panics
        #[doc = concat!("If `name` or `value` is not a valid header name or value; use [`", stringify!($ty), "::headers_mut`] to handle that case yourself.")]
        pub fn set_header<N, V>(&mut self, name: N, value: V)
        where
            N: TryInto<http::HeaderName>,
            V: TryInto<http::HeaderValue>,
            N::Error: std::fmt::Debug,
            V::Error: std::fmt::Debug,
        {
            let name = name.try_into().expect("invalid header name");
            let value = value.try_into().expect("invalid header value");
            self.headers.insert(name, value);
        }

        #[doc = concat!("[`", stringify!($ty), "::set_header`] for chaining.")]
        pub fn with_header<N, V>(mut self, name: N, value: V) -> Self
        where
            N: TryInto<http::HeaderName>,
            V: TryInto<http::HeaderValue>,
            N::Error: std::fmt::Debug,
            V::Error: std::fmt::Debug,
        {
            self.set_header(name, value);
            self
        }

        /// Removes every value of header `name`.
        pub fn remove_header(&mut self, name: &str) {
            self.headers.remove(name);
        }

        /// The body.
        pub fn body(&self) -> &crate::Body {
            &self.body
        }

        /// The body, to read chunks from.
        pub fn body_mut(&mut self) -> &mut crate::Body {
            &mut self.body
        }

        /// Takes the body out, leaving an empty one.
        pub fn take_body(&mut self) -> crate::Body {
            std::mem::take(&mut self.body)
        }

        /// Replaces the body.
        pub fn set_body(&mut self, body: impl Into<crate::Body>) {
            self.body = body.into();
        }

        #[doc = concat!("[`", stringify!($ty), "::set_body`] for chaining.")]
        pub fn with_body(mut self, body: impl Into<crate::Body>) -> Self {
            self.set_body(body);
            self
        }
    };
}

pub(crate) use headers_and_body;
