//! The example gallery, each example in the real node in front of a real origin.

use crate::support::*;

#[tokio::test]
async fn redirects_answers_from_the_config_store_and_forwards_the_rest() {
    let origin = Origin::start().await;
    let node = Node::start(&one_service(
        &example("redirects"),
        r#"config = { "redirect:/old" = "301 /new", "redirect:/broken" = "nonsense" }"#,
        &[("origin", format!("url = \"{}\"", origin.url()))],
    ))
    .await;
    let client = reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let moved = client.get(node.url("/old?ref=mail")).send().await.unwrap();
    assert_eq!(moved.status(), 301);
    assert_eq!(moved.headers()["location"], "/new?ref=mail");
    assert!(origin.hits("/old").is_empty(), "answered at the edge");

    let other = client.get(node.url("/page")).send().await.unwrap();
    assert_eq!(other.text().await.unwrap(), "origin saw GET /page\n");
    let broken = client.get(node.url("/broken")).send().await.unwrap();
    assert_eq!(
        broken.status(),
        200,
        "a malformed rule falls through to the origin"
    );
    node.wait_log("ignoring malformed redirect rule").await;
}

#[tokio::test]
async fn cache_memo_computes_once_and_serves_the_stored_answer() {
    let node = Node::start(&one_service(&example("cache_memo"), "", &[])).await;
    let fetch = async |query: &str| {
        let response = http1()
            .get(node.url(&format!("/primes?{query}")))
            .send()
            .await
            .unwrap();
        let memo = response
            .headers()
            .get("x-memo")
            .map(|v| v.to_str().unwrap().to_owned());
        (
            response.status().as_u16(),
            memo,
            response.text().await.unwrap(),
        )
    };
    let first = fetch("n=100000").await;
    assert_eq!(
        first,
        (
            200,
            Some("computed".into()),
            "9592 primes below 100000\n".into()
        )
    );
    let second = fetch("n=100000").await;
    assert_eq!(
        second,
        (
            200,
            Some("cached".into()),
            "9592 primes below 100000\n".into()
        )
    );
    assert_eq!(fetch("n=10").await.2, "4 primes below 10\n");
    assert_eq!(fetch("n=oops").await.0, 400);
}

#[tokio::test]
async fn ab_test_is_sticky_and_the_cache_keeps_variants_apart() {
    let origin = Origin::start().await;
    origin.set(
        "/home",
        Canned {
            echo_header: Some("x-ab-variant".into()),
            ..Canned::ok(
                "home page, variant ",
                &[("cache-control", "max-age=60"), ("vary", "x-ab-variant")],
            )
        },
    );
    let node = Node::start(&one_service(
        &example("ab_test"),
        "",
        &[("origin", format!("url = \"{}\"", origin.url()))],
    ))
    .await;
    let visit = async |cookie: Option<&str>| {
        let mut request = http1().get(node.url("/home"));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.unwrap();
        let headers = response.headers().clone();
        (headers, response.text().await.unwrap())
    };
    // A new visitor is assigned a variant and told so in a cookie.
    let (headers, body) = visit(None).await;
    let cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    let variant = headers["x-ab-variant"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with(&format!("ab={variant};")), "{cookie}");
    assert_eq!(body, format!("home page, variant {variant}"));
    assert_eq!(headers["vary"], "cookie");

    // Returning visitors keep their variant, and each variant is cached on its own.
    for _ in 0..2 {
        for v in ["a", "b"] {
            let (headers, body) = visit(Some(&format!("theme=dark; ab={v}"))).await;
            assert_eq!(body, format!("home page, variant {v}"));
            assert!(!headers.contains_key("set-cookie"));
        }
    }
    let variants: Vec<String> = origin
        .hits("/home")
        .iter()
        .map(|s| s.header("x-ab-variant").unwrap().to_owned())
        .collect();
    assert_eq!(
        variants.len(),
        2,
        "one origin fetch per variant: {variants:?}"
    );
}

#[tokio::test]
async fn html_rewrite_streams_the_rewritten_page_before_the_origin_finishes() {
    let origin = Origin::start().await;
    // The origin sends the first half (banner spot and a link included), pauses 1.5 s,
    // then sends the rest: a rewriter that buffered the page would show nothing until then.
    let head = r#"<html><head><link href="https://www.example.com/site.css" rel="stylesheet"></head><body><h1>News</h1><a href="https://www.example.com/a">a</a>"#;
    let tail = r#"<p>more</p><a href="https://elsewhere.example/b">b</a><img src="https://www.example.com/i.png"></body></html>"#;
    let page = format!("{head}{}{tail}", " ".repeat(400));
    origin.set(
        "/article",
        Canned {
            trickle: Some(std::time::Duration::from_millis(1500)),
            ..Canned::ok(&page, &[("content-type", "text/html; charset=utf-8")])
        },
    );
    origin.set(
        "/zipped",
        Canned::ok(
            "<body>not really gzip</body>",
            &[("content-type", "text/html"), ("content-encoding", "gzip")],
        ),
    );
    origin.set(
        "/data.json",
        Canned::ok(
            "{\"a\":\"https://www.example.com/x\"}",
            &[("content-type", "application/json")],
        ),
    );
    let node = Node::start(&one_service(
        &example("html_rewrite"),
        r#"config = { banner = "Beta <edge>", link_from = "https://www.example.com", link_to = "" }"#,
        &[("origin", format!("url = \"{}\"", origin.url()))],
    ))
    .await;

    let started = std::time::Instant::now();
    let mut response = http1().get(node.url("/article")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-length").is_none());
    // What the client holds one second in, while the origin is still pausing.
    let (mut early, mut body) = (String::new(), String::new());
    while let Some(chunk) = response.chunk().await.unwrap() {
        let text = std::str::from_utf8(&chunk).unwrap();
        if started.elapsed() < std::time::Duration::from_secs(1) {
            early.push_str(text);
        }
        body.push_str(text);
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1400),
        "the origin's pause did not happen"
    );
    assert!(
        early.contains(r#"<body><div class="edge-banner">Beta &lt;edge&gt;</div><h1>News</h1><a href="/a">a</a>"#),
        "the rewritten top of the page did not arrive before the origin finished: {early:?}"
    );
    assert!(!early.contains("more"), "{early:?}");
    assert!(
        body.contains(r#"<link href="/site.css" rel="stylesheet">"#),
        "{body}"
    );
    assert!(body.contains(r#"<a href="/a">a</a>"#), "{body}");
    assert!(
        body.contains(r#"<a href="https://elsewhere.example/b">b</a>"#),
        "{body}"
    );
    assert!(body.contains(r#"<img src="/i.png">"#), "{body}");
    assert!(body.ends_with("</body></html>"), "{body}");

    // Compressed HTML cannot be rewritten: it passes untouched. The guest asked for none.
    let zipped = http1()
        .get(node.url("/zipped"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    assert_eq!(zipped.text().await.unwrap(), "<body>not really gzip</body>");
    assert_eq!(origin.hits("/zipped")[0].header("accept-encoding"), None);

    // Not HTML: passed through byte for byte, with its length.
    let json = http1().get(node.url("/data.json")).send().await.unwrap();
    assert_eq!(json.headers()["content-length"], "33");
    assert_eq!(
        json.text().await.unwrap(),
        "{\"a\":\"https://www.example.com/x\"}"
    );
}

#[tokio::test]
async fn rate_limit_turns_a_client_away_past_its_limit_and_counts_clients_apart() {
    let origin = Origin::start().await;
    let node = Node::start(&one_service(
        &example("rate_limit"),
        r#"config = { limit = "3", window_secs = "60", key_header = "x-api-key" }"#,
        &[("origin", format!("url = \"{}\"", origin.url()))],
    ))
    .await;
    // Two clients on different loopback addresses.
    let (first, second) = (http1_from(1), http1_from(2));
    for remaining in ["2", "1", "0"] {
        let ok = first.get(node.url("/r")).send().await.unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers()["ratelimit-limit"], "3");
        assert_eq!(ok.headers()["ratelimit-remaining"], remaining);
    }
    let limited = first.get(node.url("/r")).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "60");
    assert_eq!(
        origin.hits("/r").len(),
        3,
        "the limited request reached the origin"
    );

    let other = second.get(node.url("/r")).send().await.unwrap();
    assert_eq!(other.status(), 200, "another client has its own count");
    let keyed = first
        .get(node.url("/r"))
        .header("x-api-key", "k1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        keyed.status(),
        200,
        "an API key is counted apart from the IP"
    );
    node.wait_log("limited ip:127.0.0.1").await;
}

#[tokio::test]
async fn jwt_auth_lets_valid_hs256_and_rs256_tokens_through_and_refuses_the_rest() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

    let make_rsa = || rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let (signer, stranger) = (make_rsa(), make_rsa());
    let pem = |key: &rsa::RsaPrivateKey| key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public_pem = signer
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims =
        |sub: &str, exp: u64, iss: &str| serde_json::json!({ "sub": sub, "exp": exp, "iss": iss });
    let hs = |secret: &[u8], claims: serde_json::Value| {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let rs = |key: &rsa::RsaPrivateKey, claims: serde_json::Value| {
        let key = EncodingKey::from_rsa_pem(pem(key).as_bytes()).unwrap();
        encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
    };
    let iss = "https://issuer.example";

    let origin = Origin::start().await;
    let node = Node::start(&one_service(
        &example("jwt_auth"),
        &format!(
            "secrets = {{ jwt_hs256_secret = \"hs-secret-for-tests\" }}\nconfig = {{ jwt_rs256_public_key = {:?}, jwt_issuer = {iss:?} }}",
            public_pem
        ),
        &[("origin", format!("url = \"{}\"", origin.url()))],
    ))
    .await;
    let call = async |path: &str, token: Option<String>| {
        let mut request = http1().get(node.url(path));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.unwrap();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status().as_u16(), challenge)
    };

    // Accepted: HS256 with the secret, RS256 with the configured key.
    let (status, _) = call(
        "/hs",
        Some(hs(b"hs-secret-for-tests", claims("alice", now + 600, iss))),
    )
    .await;
    assert_eq!(status, 200);
    let seen = origin.hits("/hs");
    assert_eq!(seen[0].header("x-jwt-sub"), Some("alice"));
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "the token is not forwarded"
    );
    assert_eq!(
        call("/rs", Some(rs(&signer, claims("bob", now + 600, iss))))
            .await
            .0,
        200
    );
    assert_eq!(origin.hits("/rs")[0].header("x-jwt-sub"), Some("bob"));

    // Refused, and the origin never sees them.
    let refused = [
        ("/none", None),
        (
            "/wrong-secret",
            Some(hs(b"guessed", claims("eve", now + 600, iss))),
        ),
        (
            "/expired",
            Some(hs(b"hs-secret-for-tests", claims("alice", now - 3600, iss))),
        ),
        (
            "/other-issuer",
            Some(hs(
                b"hs-secret-for-tests",
                claims("alice", now + 600, "https://evil.example"),
            )),
        ),
        (
            "/stranger-key",
            Some(rs(&stranger, claims("eve", now + 600, iss))),
        ),
        // Algorithm confusion: HS256 "signed" with the RSA public key as the HMAC secret.
        (
            "/confused",
            Some(hs(public_pem.as_bytes(), claims("eve", now + 600, iss))),
        ),
        ("/garbage", Some("not.a.token".to_owned())),
    ];
    for (path, token) in refused {
        let (status, challenge) = call(path, token).await;
        assert_eq!(status, 401, "{path}");
        assert!(
            challenge.is_some_and(|c| c.starts_with("Bearer ")),
            "{path}"
        );
        assert!(origin.hits(path).is_empty(), "{path} reached the origin");
    }
    node.wait_log("rejected a token").await;
}

#[tokio::test]
async fn api_aggregate_fetches_both_backends_at_once_and_merges_or_degrades() {
    let origin = Origin::start().await;
    let slow_json = |body: &str| Canned {
        delay: std::time::Duration::from_millis(300),
        ..Canned::ok(body, &[("content-type", "application/json")])
    };
    origin.set("/users/42", slow_json(r#"{"id":"42","name":"Ada"}"#));
    origin.set("/orders", slow_json(r#"[{"id":1},{"id":2}]"#));
    // Both backends are the same origin, so it can tell whether they overlapped.
    let node = Node::start(&one_service(
        &example("api_aggregate"),
        "",
        &[
            ("users", format!("url = \"{}\"", origin.url())),
            ("orders", format!("url = \"{}\"", origin.url())),
        ],
    ))
    .await;

    let whole = http1().get(node.url("/dashboard/42")).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert!(whole.headers().get("x-partial").is_none());
    let merged: serde_json::Value = serde_json::from_slice(&whole.bytes().await.unwrap()).unwrap();
    assert_eq!(
        merged,
        serde_json::json!({"user": {"id": "42", "name": "Ada"}, "orders": [{"id": 1}, {"id": 2}]})
    );
    assert_eq!(origin.hits("/orders")[0].path_and_query, "/orders?user=42");
    assert_eq!(
        origin.most_concurrent(),
        2,
        "the two fetches did not overlap"
    );

    // User 99 is unknown to the origin (its answer is not JSON): the orders still show.
    let partial = http1().get(node.url("/dashboard/99")).send().await.unwrap();
    assert_eq!(partial.status(), 200);
    assert_eq!(partial.headers()["x-partial"], "true");
    let body: serde_json::Value = serde_json::from_slice(&partial.bytes().await.unwrap()).unwrap();
    assert_eq!(body["user"], serde_json::Value::Null);
    assert!(
        body["errors"]["user"]
            .as_str()
            .unwrap()
            .contains("invalid JSON"),
        "{body}"
    );
    assert_eq!(body["orders"], serde_json::json!([{"id": 1}, {"id": 2}]));

    let bad_id = http1()
        .get(node.url("/dashboard/a%2Fb"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad_id.status(),
        404,
        "an id that is not a plain token never reaches a backend"
    );
}

#[tokio::test]
async fn api_aggregate_answers_502_when_every_backend_fails() {
    let nowhere = free_addr();
    let node = Node::start(&one_service(
        &example("api_aggregate"),
        "",
        &[
            ("users", format!("url = \"http://{nowhere}\"")),
            ("orders", format!("url = \"http://{nowhere}\"")),
        ],
    ))
    .await;
    let response = http1().get(node.url("/dashboard/1")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(
        body["errors"]["user"].is_string() && body["errors"]["orders"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn geo_redirect_sends_home_page_visitors_to_their_country_site() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("city.mmdb");
    write_geo_database(&database);
    let origin = Origin::start().await;
    let config = one_service(
        &example("geo_redirect"),
        r#"config = { "country:DE" = "/de/", "country:US" = "https://us.example.com/" }"#,
        &[("origin", format!("url = \"{}\"", origin.url()))],
    )
    .replace(
        "[services.svc]",
        &format!(
            "[geo]\ndatabase = {}\n\n[services.svc]",
            toml_path(&database)
        ),
    );
    let node = Node::start(&config).await;
    // Clients on three loopback addresses: Berlin, New York, and one the database lacks.
    let (germany, usa, unknown) = (http1_from(1), http1_from(2), http1_from(3));

    let to_de = germany.get(node.url("/?utm=mail")).send().await.unwrap();
    assert_eq!(to_de.status(), 302);
    assert_eq!(to_de.headers()["location"], "/de/?utm=mail");
    assert_eq!(to_de.headers()["cache-control"], "private, no-store");
    let to_us = usa.get(node.url("/")).send().await.unwrap();
    assert_eq!(to_us.headers()["location"], "https://us.example.com/");
    assert!(
        origin.hits("/").is_empty(),
        "redirects are answered at the edge"
    );

    // Other pages, opted-out visitors and unknown places reach the origin, told the country.
    let page = germany.get(node.url("/de/news")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        origin.hits("/de/news")[0].header("x-client-country"),
        Some("DE")
    );
    let stayed = usa
        .get(node.url("/"))
        .header("cookie", "theme=dark; geo_redirect=off")
        .send()
        .await
        .unwrap();
    assert_eq!(stayed.status(), 200, "the opt-out cookie is honoured");
    assert_eq!(origin.hits("/")[0].header("x-client-country"), Some("US"));
    let nowhere = unknown.get(node.url("/")).send().await.unwrap();
    assert_eq!(nowhere.status(), 200);
    assert_eq!(origin.hits("/")[1].header("x-client-country"), Some("XX"));
}
