//! Panics on every request (after reading the path), like a buggy guest would.
use outpost::{Error, Request, Response};

#[outpost::main]
fn main(req: Request) -> Result<Response, Error> {
    if req.path() == "/ok" {
        println!("trap guest is fine on {}", req.path());
        eprintln!("and says so on stderr");
        return Ok(Response::text("fine\n"));
    }
    panic!("boom at the edge: {}", req.path());
}
