//! A guest written against the raw `wasi:http` bindings only. On `/error-code` it logs a
//! line, works a little, and answers with an `error-code` instead of a response.
use wasip2::http::types::{
    ErrorCode, Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Plain;

impl wasip2::exports::http::incoming_handler::Guest for Plain {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if path == "/error-code" {
            println!("plain wasi gives up on {path}");
            let spin_until = std::time::Instant::now() + std::time::Duration::from_millis(5);
            while std::time::Instant::now() < spin_until {}
            ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some("gave up".into()))));
            return;
        }
        let headers =
            Fields::from_list(&[("content-type".to_owned(), b"text/plain".to_vec())]).unwrap();
        let response = OutgoingResponse::new(headers);
        response.set_status_code(203).unwrap();
        let body = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().unwrap();
        stream
            .blocking_write_and_flush(format!("plain wasi saw {path}\n").as_bytes())
            .unwrap();
        drop(stream);
        OutgoingBody::finish(body, None).unwrap();
    }
}

wasip2::http::proxy::export!(Plain);
