//! Every way a guest treats a message's headers, for the SDK's header tests: a backend
//! response changed without being read (the fields stay in the host), changed and then
//! read (the host-side changes must show), given host-managed fields, and a client request
//! answered without touching its headers or body, or read after all.

use outpost::{Error, Request, Response};

#[outpost::main]
fn main(mut req: Request) -> Result<Response, Error> {
    let query = req.query().unwrap_or_default().to_owned();
    match req.path() {
        // Answers by itself, reading neither the request's headers nor its body.
        "/self" => Ok(Response::text("answered without reading the request\n")),
        // Reads one request header and the whole body, after the method and path.
        "/read-request" => {
            let tag = req.header("x-in").unwrap_or("-").to_owned();
            let body = req.take_body().into_bytes()?;
            Ok(Response::text(format!("x-in={tag} body={}\n", body.len())))
        }
        _ => {
            let mut response = req.send("origin")?;
            response.set_header("x-added", "yes");
            response.remove_header("x-drop");
            if query.contains("managed") {
                // Host-managed: never sent, and never an error.
                response.set_header("connection", "close");
                response.set_header("transfer-encoding", "chunked");
            }
            if query.contains("read") {
                let seen = response.headers();
                let value = |name: &str| {
                    seen.get(name)
                        .map_or("none", |v| v.to_str().unwrap_or("?"))
                        .to_owned()
                };
                let summary = format!(
                    "added={} drop={} keep={}",
                    value("x-added"),
                    value("x-drop"),
                    value("x-keep")
                );
                response.set_header("x-seen", summary);
                // A change after the read lands in the guest's copy.
                response.set_header("x-after-read", "yes");
            }
            Ok(response)
        }
    }
}
