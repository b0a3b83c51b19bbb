//! The load test's ceiling: a minimal pingora server with the node's listener and thread
//! settings that answers every request with the hello guest's body and no guest at all.
//! Its cost per request is what pingora itself costs on this machine, so every other
//! figure in the report reads as "pingora + guest + glue".
//!
//! Usage: `outpost-ceiling ADDR` (one worker thread, plain HTTP/1.1 and h2c).

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
use pingora_http::ResponseHeader;

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
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7790".to_owned());
    let conf = ServerConf {
        threads: 1,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    let mut service = Service::new("ceiling".to_owned(), Ceiling { options });
    service.add_tcp(&addr);
    server.add_service(service);
    server.run_forever()
}
