//! Streams the origin's HTML through an HTML rewriter (`lol_html`, the engine behind
//! Cloudflare's HTMLRewriter) without holding the page in memory:
//!
//! - a banner (config key `banner`) goes in at the top of `<body>`;
//! - every `href`/`src` starting with the config key `link_from` (say the origin's public
//!   URL) starts with `link_to` instead (say `""`, so links stay on the edge's host).
//!
//! The head goes to the client at once and every chunk from the origin is rewritten and
//! sent as it arrives. Anything that is not HTML (or arrives compressed anyway) passes
//! through untouched, spliced by the host without entering guest memory.

use std::cell::RefCell;
use std::rc::Rc;

use lol_html::html_content::{ContentType, Element};
use lol_html::{HtmlRewriter, Settings, element};
use outpost::{Error, Request, Response, config};

#[outpost::main]
fn main(mut req: Request) -> Result<Response, Error> {
    // The rewriter reads plain bytes: ask the origin for an uncompressed page.
    req.remove_header("accept-encoding");
    let mut response = req.send("origin")?;
    let is_html = response
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html"));
    let encoded = response
        .header("content-encoding")
        .is_some_and(|e| !e.eq_ignore_ascii_case("identity"));
    if !is_html || encoded {
        return Ok(response);
    }
    let banner = config::get("banner").unwrap_or_else(|| "Served at the edge".to_owned());
    let links = LinkRewrite {
        from: config::get("link_from").unwrap_or_default(),
        to: config::get("link_to").unwrap_or_default(),
    };

    let mut origin_body = response.take_body();
    // The length changes, and the origin's validators describe the origin's bytes.
    response.remove_header("content-length");
    response.remove_header("etag");
    let mut client = response.stream_to_client()?;

    // The rewriter's sink cannot fail or block; it collects the output of one input chunk,
    // which is then written (and flushed) to the client before the next chunk is read.
    let rewritten = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&rewritten);
    let mut rewriter = HtmlRewriter::new(
        Settings::new()
            .append_element_content_handler(element!("body", |el| {
                let html = format!("<div class=\"edge-banner\">{}</div>", escape(&banner));
                el.prepend(&html, ContentType::Html);
                Ok(())
            }))
            .append_element_content_handler(element!("a[href], link[href]", |el| {
                links.apply(el, "href");
                Ok(())
            }))
            .append_element_content_handler(element!("img[src], script[src]", |el| {
                links.apply(el, "src");
                Ok(())
            })),
        move |chunk: &[u8]| sink.borrow_mut().extend_from_slice(chunk),
    );

    while let Some(chunk) = origin_body.read_chunk()? {
        rewriter
            .write(&chunk)
            .map_err(|e| Error::new(outpost::StatusCode::BAD_GATEWAY, e.to_string()))?;
        client.write_chunk(rewritten.take())?;
    }
    rewriter
        .end()
        .map_err(|e| Error::new(outpost::StatusCode::BAD_GATEWAY, e.to_string()))?;
    client.write_chunk(rewritten.take())?;
    client.finish()
}

/// Replaces a URL prefix in one attribute.
struct LinkRewrite {
    from: String,
    to: String,
}

impl LinkRewrite {
    fn apply(&self, el: &mut Element, attribute: &str) {
        if self.from.is_empty() {
            return;
        }
        if let Some(value) = el.get_attribute(attribute)
            && let Some(rest) = value.strip_prefix(&self.from)
        {
            let _ = el.set_attribute(attribute, &format!("{}{rest}", self.to));
        }
    }
}

/// The banner is text, not markup.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
