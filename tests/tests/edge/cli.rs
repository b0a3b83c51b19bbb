//! The command line: quick mode, `check`, and errors that name what is wrong.

use crate::support::*;

#[tokio::test]
async fn quick_mode_serves_one_guest_with_named_backends() {
    let origin = Origin::start().await;
    let addr = free_addr();
    let guest = example("origin_proxy");
    let backend = format!("origin={}", origin.url());
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "serve",
        "--guest",
        guest.to_str().unwrap(),
        "--backend",
        &backend,
        "--listen",
        &addr.to_string(),
    ];
    let node = Node::spawn(addr, &args, dir, &[addr]).await;
    let response = http1()
        .get(node.url("/quick?x=1"))
        .header("host", "anything.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "origin saw GET /quick?x=1\n"
    );
    assert_eq!(origin.seen().len(), 1);
}

#[tokio::test]
async fn check_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.toml");
    let config = format!(
        "[services.hello]\ndomains = [\"hello.test\"]\nguest = {}\n[services.hello.backends.origin]\nurl = \"https://origin.example\"\n",
        toml_path(&example("hello"))
    );
    std::fs::write(&path, config).unwrap();
    let (ok, out) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("ok: 1 service"), "{out}");
}

/// Each bad config must fail `check` with a message naming the file, the key and a fix.
#[tokio::test]
async fn check_rejects_bad_configs_naming_file_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let hello = toml_path(&example("hello"));
    let not_a_component = dir.path().join("junk.wasm");
    std::fs::write(&not_a_component, b"this is not wasm at all").unwrap();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown-key.toml",
            format!("[services.a]\ndomains = [\"a\"]\nguest = {hello}\ncolour = 1\n"),
            vec!["unknown field `colour`", "line"],
        ),
        (
            "bad-type.toml",
            format!("[services.a]\ndomains = \"a\"\nguest = {hello}\n"),
            vec!["domains", "invalid type"],
        ),
        (
            "missing-guest.toml",
            "[services.a]\ndomains = [\"a\"]\nguest = \"nope/missing.wasm\"\n".into(),
            vec!["services.a.guest", "no file at", "fix:"],
        ),
        (
            "no-services.toml",
            "[server]\nlisten = [\"127.0.0.1:1\"]\n".into(),
            vec!["`services`", "fix:"],
        ),
        (
            "clash.toml",
            format!(
                "[services.a]\ndomains = [\"x.test\"]\nguest = {hello}\n[services.b]\ndomains = [\"X.test\"]\nguest = {hello}\n"
            ),
            vec!["services.b.domains", "also claimed by service `a`"],
        ),
        (
            "bad-url.toml",
            format!(
                "[services.a]\ndomains = [\"a\"]\nguest = {hello}\n[services.a.backends.origin]\nurl = \"ftp://x\"\n"
            ),
            vec![
                "services.a.backends.origin.url",
                "http:// or https://",
                "fix:",
            ],
        ),
        (
            "zero-deadline.toml",
            format!(
                "[services.a]\ndomains = [\"a\"]\nguest = {hello}\nlimits = {{ deadline_ms = 0 }}\n"
            ),
            vec!["services.a.limits.deadline_ms", "fix:"],
        ),
        (
            "junk-guest.toml",
            format!(
                "[services.a]\ndomains = [\"a\"]\nguest = {}\n",
                toml_path(&not_a_component)
            ),
            vec![
                "junk.wasm",
                "not a WebAssembly component",
                "fix:",
                "service `a`",
            ],
        ),
    ];
    for (file, text, needles) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let (ok, out) = run_cli(&["check", "--config", path.to_str().unwrap()]);
        assert!(!ok, "{file} was accepted:\n{out}");
        if file != "junk-guest.toml" {
            assert!(
                out.contains(file),
                "{file}: error does not name the file:\n{out}"
            );
        }
        for needle in needles {
            assert!(
                out.contains(needle),
                "{file}: error lacks `{needle}`:\n{out}"
            );
        }
    }
    // A core module is not a component either, and the error says which it is.
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let (ok, out) = run_cli(&[
        "serve",
        "--guest",
        core.to_str().unwrap(),
        "--listen",
        &free_addr().to_string(),
    ]);
    assert!(!ok);
    assert!(
        out.contains("core WebAssembly module, not a component"),
        "{out}"
    );
}

#[tokio::test]
async fn quick_mode_rejects_a_malformed_backend_flag() {
    let (ok, out) = run_cli(&[
        "serve",
        "--guest",
        example("hello").to_str().unwrap(),
        "--backend",
        "no-equals-sign",
    ]);
    assert!(!ok);
    assert!(out.contains("expected NAME=URL"), "{out}");
}

#[tokio::test]
async fn watch_reloads_a_rebuilt_guest_and_keeps_serving_through_a_broken_one() {
    let addr = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let guest = dir.path().join("guest.wasm");
    std::fs::copy(example("hello"), &guest).unwrap();
    let args = [
        "serve",
        "--guest",
        guest.to_str().unwrap(),
        "--listen",
        &addr.to_string(),
        "--watch",
    ];
    let node = Node::spawn(addr, &args, tempfile::tempdir().unwrap(), &[addr]).await;
    let before = get_text(&node.url("/")).await;
    assert!(before.contains("Hello"), "{before}");

    // A "rebuild": another guest lands in the same file.
    std::fs::copy(test_guest("work"), &guest).unwrap();
    let mut after = String::new();
    for _ in 0..100 {
        after = get_text(&node.url("/?n=10")).await;
        if after != before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        after.trim().len(),
        16,
        "the new guest answers (a 64-bit hash): {after}"
    );
    node.wait_log("reloaded the guest").await;

    // A broken build is reported and the last good version keeps serving.
    std::fs::write(&guest, b"not wasm at all").unwrap();
    let log = node.wait_log("keeping the previous version").await;
    assert!(log.contains("keeping the previous version"), "{log}");
    assert_eq!(get_text(&node.url("/?n=10")).await, after);
}
