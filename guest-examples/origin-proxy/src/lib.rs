//! A reverse proxy in a dozen lines: every request goes to the backend named `origin`.
//!
//! On the way in it rewrites `user-agent` (appending this edge's name) and on the way out
//! it adds `x-edge: outpost`. Bodies stream through in both directions, so a 100 MiB
//! upload or download never sits whole in the guest's memory.

use outpost::{Error, Request, Response};

const EDGE_NAME: &str = "outpost-edge/0.1";

#[outpost::main]
fn main(mut req: Request) -> Result<Response, Error> {
    let user_agent = match req.header("user-agent") {
        Some(agent) => format!("{agent} {EDGE_NAME}"),
        None => EDGE_NAME.to_owned(),
    };
    req.set_header("user-agent", user_agent);
    let mut response = req.send("origin")?;
    response.set_header("x-edge", "outpost");
    Ok(response)
}
