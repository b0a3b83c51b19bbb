//! Path redirects managed by the operator, not the code: each `redirect:PATH` key in the
//! service's config store holds `STATUS TARGET` (e.g. `301 /new-home`). Matching requests
//! are answered at the edge; everything else goes to the backend `origin`.

use outpost::{Error, Request, Response, config};

#[outpost::main]
fn main(req: Request) -> Result<Response, Error> {
    if let Some(rule) = config::get(&format!("redirect:{}", req.path())) {
        match parse_rule(&rule) {
            Some((status, target)) => {
                let location = match req.query() {
                    // Keep the query string unless the target brings its own.
                    Some(query) if !target.contains('?') => format!("{target}?{query}"),
                    _ => target.to_owned(),
                };
                return Ok(Response::redirect(status, &location));
            }
            None => outpost::warn!(
                "ignoring malformed redirect rule for {}: {rule:?}",
                req.path()
            ),
        }
    }
    req.send("origin")
}

/// `"301 /new"` → `(301, "/new")`; only redirect statuses are accepted.
fn parse_rule(rule: &str) -> Option<(u16, &str)> {
    let (status, target) = rule.trim().split_once(' ')?;
    let status: u16 = status.parse().ok()?;
    matches!(status, 301 | 302 | 303 | 307 | 308).then_some((status, target.trim()))
}
