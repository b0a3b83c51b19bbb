//! Reads the service's stores: `/config/KEY` answers the config value, `/secret/KEY`
//! answers whether the secret matches the `x-token` request header (never the secret
//! itself), and logs the secret's Debug form to prove it is redacted.

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
    Ok(Response::from_status(404))
}
