//! Bearer-token authentication at the edge: only requests with a valid JWT reach the
//! backend `origin`.
//!
//! - HS256 tokens are checked against the secret `jwt_hs256_secret` (from
//!   `[services.NAME.secrets]`, never logged);
//! - RS256 tokens against the PEM public key in config key `jwt_rs256_public_key`;
//! - `exp` is required and checked (`nbf` too when present), with 30 s of leeway; config
//!   keys `jwt_issuer` and `jwt_audience` add `iss`/`aud` checks.
//!
//! The token's `alg` must be one the operator configured a key for, so a token cannot pick
//! a weaker check (`none`, or HS256 signed with the RSA public key). Anything else gets
//! `401` with a `WWW-Authenticate: Bearer` challenge and never reaches the origin. The
//! origin gets the subject in `x-jwt-sub` and no `Authorization` header.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use outpost::{Error, Request, Response, config};
use serde::Deserialize;

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
}

#[outpost::main]
fn main(mut req: Request) -> Result<Response, Error> {
    let token = match bearer_token(&req) {
        Some(token) => token.to_owned(),
        None => {
            return Ok(unauthorized(
                "invalid_request",
                "a bearer token is required",
            ));
        }
    };
    let subject = match verify(&token) {
        Ok(subject) => subject,
        Err(reason) => {
            outpost::info!("rejected a token: {reason}");
            return Ok(unauthorized("invalid_token", &reason));
        }
    };
    req.remove_header("authorization");
    req.set_header("x-jwt-sub", subject.as_str());
    req.send("origin")
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer_token(req: &Request) -> Option<&str> {
    let value = req.header("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Checks the token with the key configured for its algorithm; returns its subject.
fn verify(token: &str) -> Result<String, String> {
    let header = decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
    let key = match header.alg {
        Algorithm::HS256 => {
            let secret =
                config::secret("jwt_hs256_secret").ok_or("HS256 tokens are not accepted here")?;
            DecodingKey::from_secret(secret.expose().as_bytes())
        }
        Algorithm::RS256 => {
            let pem =
                config::get("jwt_rs256_public_key").ok_or("RS256 tokens are not accepted here")?;
            DecodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|e| format!("the configured RS256 key is unusable: {e}"))?
        }
        other => return Err(format!("{other:?} tokens are not accepted here")),
    };
    let mut validation = Validation::new(header.alg);
    validation.leeway = 30;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp"]);
    if let Some(issuer) = config::get("jwt_issuer") {
        validation.set_issuer(&[issuer]);
    }
    match config::get("jwt_audience") {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    let data = decode::<Claims>(token, &key, &validation).map_err(|e| e.to_string())?;
    Ok(data.claims.sub.unwrap_or_default())
}

fn unauthorized(error: &str, description: &str) -> Response {
    let challenge = format!(
        "Bearer realm=\"edge\", error=\"{error}\", error_description=\"{}\"",
        description.replace(['"', '\\'], "'")
    );
    Response::text(format!("unauthorized: {description}\n"))
        .with_status(outpost::StatusCode::UNAUTHORIZED)
        .with_header("www-authenticate", challenge.as_str())
}
