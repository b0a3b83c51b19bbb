//! Starts a chunked upload to the backend `origin`, writes part of it, then panics: the
//! origin must not be handed the part as if it were the whole body.
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingRequest, ResponseOutparam, Scheme,
};

struct HalfUpload;

impl wasip2::exports::http::incoming_handler::Guest for HalfUpload {
    fn handle(_request: IncomingRequest, _out: ResponseOutparam) {
        let request = OutgoingRequest::new(Fields::new());
        request.set_method(&Method::Post).unwrap();
        request.set_scheme(Some(&Scheme::Http)).unwrap();
        request.set_authority(Some("origin")).unwrap();
        request.set_path_with_query(Some("/upload")).unwrap();
        let body = request.body().unwrap();
        let _pending = outgoing_handler::handle(request, None).unwrap();
        let stream = body.write().unwrap();
        for _ in 0..4 {
            stream.blocking_write_and_flush(&[b'x'; 1000]).unwrap();
        }
        // Give the host time to put those bytes on the wire, then die mid-body.
        let until = wasip2::clocks::monotonic_clock::now() + 200_000_000;
        while wasip2::clocks::monotonic_clock::now() < until {}
        panic!("dying halfway through an upload");
    }
}

wasip2::http::proxy::export!(HalfUpload);
