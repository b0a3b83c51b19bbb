//! The smallest useful guest: it answers every request itself, without any backend.

use outpost::{Error, Request, Response};

#[outpost::main]
fn main(req: Request) -> Result<Response, Error> {
    let who = req
        .query()
        .and_then(|q| q.strip_prefix("name="))
        .unwrap_or("world");
    Ok(Response::text(format!(
        "Hello, {who}! (from an Outpost guest, {} {})\n",
        req.method(),
        req.path()
    ))
    .with_header("x-guest", "hello"))
}
