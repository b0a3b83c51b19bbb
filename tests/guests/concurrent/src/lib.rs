//! Concurrent fetches with the SDK: `/both` sends two slow requests at once and joins them;
//! `/race` sends a slow and a fast one and answers with the path of whichever came first;
//! `/dynamic?to=HOST:PORT` fetches `/dyn` from a host that is not a configured backend;
//! `/dynamic-url?url=URL` fetches an absolute URL (scheme included) the same way.

use outpost::{Error, Request, Response, join_all, select};

#[outpost::main]
fn main(req: Request) -> Result<Response, Error> {
    match req.path() {
        "/both" => {
            let pending = vec![
                Request::get("/slow/300?part=a").send_async("origin")?,
                Request::get("/slow/300?part=b").send_async("origin")?,
            ];
            let mut statuses = Vec::new();
            for response in join_all(pending) {
                statuses.push(response?.status().as_u16().to_string());
            }
            Ok(Response::text(statuses.join(",")))
        }
        "/race" => {
            let slow = Request::get("/slow/1500?who=slow").send_async("origin")?;
            let fast = Request::get("/slow/10?who=fast").send_async("origin")?;
            let (first, rest) = select(vec![slow, fast]);
            let body = first?.take_body().into_string()?;
            Ok(Response::text(format!(
                "{} first; {} still pending",
                body.trim(),
                rest.len()
            )))
        }
        // A dynamic backend: `?to=HOST:PORT` names the origin itself.
        "/dynamic" => {
            let to = req
                .query()
                .and_then(|q| q.strip_prefix("to="))
                .unwrap_or("");
            match Request::get("/dyn").send(to) {
                Ok(response) => Ok(response),
                Err(error) => {
                    Ok(Response::text(format!("{:?}", error.kind())).with_status(error.status()))
                }
            }
        }
        // `?url=URL` fetches an absolute URL, scheme included.
        "/dynamic-url" => {
            let url = req
                .query()
                .and_then(|q| q.strip_prefix("url="))
                .unwrap_or("");
            match Request::get(url).send_dynamic() {
                Ok(response) => Ok(response),
                Err(error) => {
                    Ok(Response::text(format!("{:?}", error.kind())).with_status(error.status()))
                }
            }
        }
        _ => Ok(Response::from_status(404)),
    }
}
