//! A sticky A/B split. A visitor without an `ab` cookie is assigned a variant (from a hash
//! of the request id) and gets it as a cookie; a returning visitor keeps theirs. The origin
//! is told the variant in `x-ab-variant` and answers with `Vary: x-ab-variant`, so the edge
//! cache keeps one copy per variant and never serves A to a B visitor. The response to the
//! browser varies on `Cookie`, so browser and downstream caches stay correct too.

use outpost::{Error, Request, Response};

const COOKIE: &str = "ab";

#[outpost::main]
fn main(mut req: Request) -> Result<Response, Error> {
    let assigned = req.header("cookie").and_then(variant_from_cookie);
    let variant = assigned.unwrap_or_else(|| {
        let id = outpost::request_info().request_id;
        // FNV-1a over the request id: a stable, even split without a random source.
        let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        if hash % 2 == 0 { "a" } else { "b" }
    });
    req.set_header("x-ab-variant", variant);
    let mut response = req.send("origin")?;
    response.set_header("vary", "cookie");
    response.set_header("x-ab-variant", variant);
    if assigned.is_none() {
        response.set_header(
            "set-cookie",
            format!("{COOKIE}={variant}; Path=/; Max-Age=2592000; SameSite=Lax"),
        );
    }
    Ok(response)
}

/// The variant named by an `ab=a` or `ab=b` cookie, if any.
fn variant_from_cookie(cookies: &str) -> Option<&'static str> {
    cookies
        .split(';')
        .find_map(|pair| match pair.trim().split_once('=') {
            Some((COOKIE, "a")) => Some("a"),
            Some((COOKIE, "b")) => Some("b"),
            _ => None,
        })
}
