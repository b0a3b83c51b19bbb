//! Bounded CPU work, for the load test's "guest doing CPU work" scenario: `?n=N` rounds
//! (default 2000) of FNV-1a over a 64-byte block, answered with the resulting hash.

use outpost::{Error, Request, Response};

#[outpost::main]
fn main(req: Request) -> Result<Response, Error> {
    let rounds: u32 = req
        .query()
        .and_then(|q| q.strip_prefix("n="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000)
        .min(10_000_000);
    let mut block = [0u8; 64];
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for round in 0..rounds {
        block[(round % 64) as usize] = hash as u8;
        for byte in std::hint::black_box(&block) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(Response::text(format!("{hash:016x}\n")))
}
