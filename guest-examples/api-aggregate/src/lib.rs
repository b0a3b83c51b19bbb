//! One request in, two backend requests out at the same time, one JSON answer back.
//!
//! `GET /dashboard/ID` fetches `/users/ID` from the backend `users` and `/orders?user=ID`
//! from the backend `orders` concurrently (`send_async` + `join_all`), so the answer takes
//! as long as the slower of the two, not their sum, and merges them:
//!
//! ```json
//! {"user": {...}, "orders": [...]}
//! ```
//!
//! A part that fails (unreachable, timed out, non-2xx, not JSON) becomes `null` and is
//! named under `"errors"`, with `x-partial: true`: the page still renders what it can.
//! Only when both fail is the answer a `502`.

use outpost::{Error, Request, Response, StatusCode, join_all};
use serde_json::{Map, Value, json};

#[outpost::main]
fn main(req: Request) -> Result<Response, Error> {
    let Some(id) = req
        .path()
        .strip_prefix("/dashboard/")
        .filter(|id| valid_id(id))
    else {
        return Ok(Response::text("try /dashboard/ID\n").with_status(StatusCode::NOT_FOUND));
    };
    let parts = [
        ("user", "users", format!("/users/{id}")),
        ("orders", "orders", format!("/orders?user={id}")),
    ];
    let pending = parts
        .iter()
        .map(|(_, backend, path)| {
            Request::get(path)
                .with_header("accept", "application/json")
                .send_async(backend)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut merged = Map::new();
    let mut errors = Map::new();
    for ((name, _, _), result) in parts.iter().zip(join_all(pending)) {
        match result.and_then(json_body) {
            Ok(value) => {
                merged.insert((*name).to_owned(), value);
            }
            Err(error) => {
                merged.insert((*name).to_owned(), Value::Null);
                errors.insert((*name).to_owned(), json!(error.message()));
            }
        }
    }
    let status = if errors.len() == parts.len() {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::OK
    };
    let partial = !errors.is_empty();
    if partial {
        outpost::warn!(
            "dashboard {id} is partial: {}",
            Value::Object(errors.clone())
        );
        merged.insert("errors".to_owned(), Value::Object(errors));
    }
    let mut response = Response::new()
        .with_status(status)
        .with_header("content-type", "application/json")
        .with_header("cache-control", "private, no-store")
        .with_body(Value::Object(merged).to_string());
    if partial {
        response.set_header("x-partial", "true");
    }
    Ok(response)
}

/// A successful response's body as JSON.
fn json_body(mut response: Response) -> Result<Value, Error> {
    if !response.status().is_success() {
        return Err(Error::new(
            StatusCode::BAD_GATEWAY,
            format!("answered {}", response.status()),
        ));
    }
    let body = response.take_body().into_bytes()?;
    serde_json::from_slice(&body)
        .map_err(|e| Error::new(StatusCode::BAD_GATEWAY, format!("sent invalid JSON: {e}")))
}

/// IDs go into backend paths: keep them to letters, digits, `-` and `_`.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
