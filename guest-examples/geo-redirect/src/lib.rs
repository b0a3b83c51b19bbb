//! Sends visitors of the home page to their country's site, by the client's IP in the
//! node's geolocation database (`[geo] database`).
//!
//! - `GET /` from a country with a config entry `country:CC` (e.g. `country:DE = "/de/"`)
//!   gets a `302` there, query string kept, marked `private, no-store` so no shared cache
//!   keeps one country's redirect for everyone.
//! - A visitor who chose a site keeps it: the cookie `geo_redirect=off` turns the redirect
//!   off.
//! - Everything else goes to the backend `origin`, with the client's country in
//!   `x-client-country` (`XX` when unknown) so the origin can localize too.

use outpost::{Error, Request, Response, config, geo};

#[outpost::main]
fn main(mut req: Request) -> Result<Response, Error> {
    let country = geo::client_location().and_then(|l| l.country_code);
    if req.path() == "/"
        && !opted_out(&req)
        && let Some(country) = &country
        && let Some(target) = config::get(&format!("country:{country}"))
    {
        let location = match req.query() {
            Some(query) if !target.contains('?') => format!("{target}?{query}"),
            _ => target,
        };
        outpost::debug!("redirecting a visitor from {country} to {location}");
        return Ok(
            Response::redirect(302, &location).with_header("cache-control", "private, no-store")
        );
    }
    req.set_header("x-client-country", country.as_deref().unwrap_or("XX"));
    req.send("origin")
}

/// Whether the visitor turned redirects off with the cookie `geo_redirect=off`.
fn opted_out(req: &Request) -> bool {
    req.headers()
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|pair| pair.trim() == "geo_redirect=off")
}
