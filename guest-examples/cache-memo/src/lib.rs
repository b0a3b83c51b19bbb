//! Computes an expensive answer once and serves it from the edge's simple cache: `/primes?n=N`
//! counts the primes below N (at most 5,000,000). The first request for an N computes it;
//! later ones, and concurrent ones waiting on the first, get the stored answer for 10
//! minutes. `x-memo: computed` or `x-memo: cached` says which happened.

use std::time::Duration;

use outpost::{Error, Request, Response, StatusCode, cache};

const LIMIT: u32 = 5_000_000;

#[outpost::main]
fn main(req: Request) -> Result<Response, Error> {
    if req.path() != "/primes" {
        return Ok(Response::from_status(404));
    }
    let n: u32 = req
        .query()
        .and_then(|q| q.strip_prefix("n="))
        .and_then(|n| n.parse().ok())
        .filter(|n| *n <= LIMIT)
        .ok_or_else(|| {
            Error::new(
                StatusCode::BAD_REQUEST,
                format!("use /primes?n=N with N <= {LIMIT}"),
            )
        })?;
    let mut computed = false;
    let answer =
        cache::get_or_insert_with(&format!("primes:{n}"), Duration::from_secs(600), || {
            computed = true;
            Ok::<_, Error>(count_primes(n).to_string().into_bytes())
        })?;
    let count = String::from_utf8_lossy(&answer).into_owned();
    Ok(Response::text(format!("{count} primes below {n}\n"))
        .with_header("x-memo", if computed { "computed" } else { "cached" }))
}

/// Sieve of Eratosthenes.
fn count_primes(n: u32) -> usize {
    let n = n as usize;
    if n < 3 {
        return 0;
    }
    let mut composite = vec![false; n];
    let mut count = 0;
    for i in 2..n {
        if !composite[i] {
            count += 1;
            let mut j = i * i;
            while j < n {
                composite[j] = true;
                j += i;
            }
        }
    }
    count
}
