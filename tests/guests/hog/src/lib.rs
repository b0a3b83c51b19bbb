//! Allocates without bound until the node's memory limit stops it.
use outpost::{Error, Request, Response};

#[outpost::main]
fn main(_req: Request) -> Result<Response, Error> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        block[0] = hoard.len() as u8;
        hoard.push(std::hint::black_box(block));
    }
}
