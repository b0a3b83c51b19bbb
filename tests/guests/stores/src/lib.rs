//! Reads the service's stores: `/config/KEY` answers the config value, `/secret/KEY`
//! answers whether the secret matches the `x-token` request header (never the secret
//! itself), and logs the secret's Debug form to prove it is redacted; `/info` answers the
//! request info; `/geo` the client's location and `/geo?ip=IP` that address's.

use outpost::{Error, Request, Response, config};

#[outpost::main]
fn main(req: Request) -> Result<Response, Error> {
    let path = req.path().to_owned();
    if let Some(key) = path.strip_prefix("/config/") {
        return Ok(match config::get(key) {
            Some(value) => Response::text(value),
            None => Response::from_status(404),
        });
    }
    if let Some(key) = path.strip_prefix("/secret/") {
        let Some(secret) = config::secret(key) else {
            return Ok(Response::from_status(404));
        };
        outpost::info!("checking token against {secret:?}");
        let matches = req.header("x-token") == Some(secret.expose());
        return Ok(Response::text(if matches { "match" } else { "no match" }));
    }
    if path == "/info" {
        let info = outpost::request_info();
        return Ok(Response::text(format!(
            "ip={} version={} tls={} sni={} id={} pop={}",
            info.client_ip.map_or("-".into(), |ip| ip.to_string()),
            info.http_version,
            info.tls_protocol.as_deref().unwrap_or("-"),
            info.tls_sni.as_deref().unwrap_or("-"),
            info.request_id,
            info.pop
        )));
    }
    if path == "/geo" {
        let location = match req.query().and_then(|q| q.strip_prefix("ip=")) {
            Some(ip) => match ip.parse() {
                Ok(ip) => outpost::geo::lookup(ip),
                Err(_) => return Ok(Response::from_status(400)),
            },
            None => outpost::geo::client_location(),
        };
        return Ok(Response::text(match location {
            Some(l) => format!("{l:?}"),
            None => "nowhere".to_owned(),
        }));
    }
    Ok(Response::from_status(404))
}
