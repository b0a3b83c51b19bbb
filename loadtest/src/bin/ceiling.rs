//! The load test's ceiling: a minimal pingora server with the node's listener and thread
//! settings that answers every request with the hello guest's body and no guest at all.
//! Its cost per request is what pingora itself costs on this machine, so every other
//! figure in the report reads as "pingora + guest + glue".
//!
//! Usage: `outpost-ceiling ADDR [pingora|frontend]` (one worker thread, plain HTTP/1.1 and
//! h2c). `frontend` serves the same answer through the node's own front end instead
//! (pingora's listener, hyper, the connection deadlines and limits of
//! `outpost_proxy::server`) with no pipeline behind it: the difference between the two is
//! what the node's HTTP layer costs over pingora's own.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::apps::{
    HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream,
};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::listening::Service;
use std::convert::Infallible;

use http_body_util::combinators::MapErr;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use outpost_proxy::config::ServerConfig;
use outpost_proxy::metrics::Metrics;
use outpost_proxy::server::{ConnInfo, ConnSettings, Drain, Handler, Listener};
use pingora_http::ResponseHeader;
use wasmtime_wasi_http::Error as HttpError;

/// The hello guest's answer to `GET /`, byte for byte the same length.
const BODY: &[u8] = b"Hello, world! (from an Outpost guest, GET /)\n";

struct Ceiling {
    options: HttpServerOptions,
}

#[async_trait]
impl HttpServerApp for Ceiling {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        _shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !session.read_request().await.ok()? {
            return None;
        }
        session.set_keepalive(Some(60));
        let mut head = ResponseHeader::build_no_case(200, Some(3)).ok()?;
        head.insert_header("content-type", "text/plain; charset=utf-8")
            .ok()?;
        head.insert_header("content-length", BODY.len()).ok()?;
        head.insert_header("x-guest", "hello").ok()?;
        session.write_response_header(Box::new(head)).await.ok()?;
        session
            .write_response_body(Bytes::from_static(BODY), true)
            .await
            .ok()?;
        let persistent = HttpPersistentSettings::for_session(&session);
        let stream = session.finish().await.ok()??;
        Some(ReusedHttpStream::from_reusable_stream(stream, persistent))
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7790".to_owned());
    let frontend = args.next().is_some_and(|mode| mode == "frontend");
    let conf = ServerConf {
        threads: 1,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    if frontend {
        let defaults = Arc::new(ConnSettings::new(&ServerConfig::default()));
        let listener = Listener::new(
            Fixed,
            Arc::new(move || defaults.clone()),
            Metrics::new().listener(&addr),
            Drain::default(),
        );
        let mut service = Service::new("ceiling frontend".to_owned(), listener);
        service.add_tcp(&addr);
        server.add_service(service);
    } else {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        let mut service = Service::new("ceiling".to_owned(), Ceiling { options });
        service.add_tcp(&addr);
        server.add_service(service);
    }
    server.run_forever()
}

fn never(never: Infallible) -> HttpError {
    match never {}
}

/// The node front end's handler for the ceiling: the same answer, nothing behind it.
#[derive(Clone)]
struct Fixed;

impl Handler for Fixed {
    type Body = MapErr<Full<Bytes>, fn(Infallible) -> HttpError>;
    type Future = std::future::Ready<http::Response<Self::Body>>;

    fn handle(&self, _request: http::Request<Incoming>, _conn: &Arc<ConnInfo>) -> Self::Future {
        let response = http::Response::builder()
            .header("content-type", "text/plain; charset=utf-8")
            .header("x-guest", "hello")
            .body(Full::new(Bytes::from_static(BODY)).map_err(never as fn(Infallible) -> HttpError))
            .expect("a valid response");
        std::future::ready(response)
    }
}
