//! Fetches `origin` N times (`?n=N`) and reports how many fetches succeeded and the first
//! error, to test the node's per-request backend budget.
use outpost::{Error, Request, Response};

#[outpost::main]
fn main(req: Request) -> Result<Response, Error> {
    let n: usize = req
        .query()
        .and_then(|q| q.strip_prefix("n="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut ok = 0;
    let mut first_error = String::from("none");
    for i in 0..n {
        match Request::get(format!("/fan/{i}")).send("origin") {
            Ok(response) => {
                response.take_body_and_discard();
                ok += 1;
            }
            Err(e) if first_error == "none" => first_error = format!("{:?}: {e}", e.kind()),
            Err(_) => {}
        }
    }
    Ok(Response::text(format!(
        "ok={ok} first_error={first_error}\n"
    )))
}

trait Discard {
    fn take_body_and_discard(self);
}

impl Discard for Response {
    fn take_body_and_discard(mut self) {
        let mut body = self.take_body();
        while let Ok(Some(_)) = body.read_chunk() {}
    }
}
