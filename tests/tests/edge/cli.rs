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

#[tokio::test]
async fn exit_codes_tell_usage_config_and_other_failures_apart() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let (code, out) = run_cli_code(&["serve", "--config", missing.to_str().unwrap()]);
    assert_eq!(code, Some(78), "a missing config is EX_CONFIG: {out}");
    assert!(out.contains("missing.toml"), "{out}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nlisten = 7\n").unwrap();
    let (code, out) = run_cli_code(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, Some(78), "{out}");

    let (code, out) = run_cli_code(&["serve", "--no-such-flag"]);
    assert_eq!(code, Some(2), "usage errors exit 2: {out}");

    // A listener that cannot be opened is not the config's fault.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[server]\nlisten = [\"{addr}\"]\n[services.s]\ndomains = [\"*\"]\nguest = {}\n",
            toml_path(&example("hello"))
        ),
    )
    .unwrap();
    let (code, out) = run_cli_code(&["serve", "--config", good.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
}

#[tokio::test]
async fn precompiled_guests_start_without_compiling_and_foreign_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cwasm = dir.path().join("hello.cwasm");
    let (ok, out) = run_cli(&[
        "compile",
        example("hello").to_str().unwrap(),
        "-o",
        cwasm.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("compiled"), "{out}");

    let config = one_service(&cwasm, "", &[]);
    let node = Node::start(&config).await;
    let response = http1()
        .get(node.url("/"))
        .header("host", "hello.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(node.log().contains("loaded precompiled"), "{}", node.log());

    // Another engine's artifact, a damaged one, and a bare wasmtime one: each refused by
    // `check` and `serve` with its reason, never loaded.
    let artifact = std::fs::read(&cwasm).unwrap();
    let mut other_engine = artifact.clone();
    other_engine[20] ^= 1;
    let mut corrupt = artifact.clone();
    let last = corrupt.len() - 100;
    corrupt[last] ^= 1;
    let bare = artifact[56..].to_vec();
    for (name, bytes, reason) in [
        (
            "other.cwasm",
            other_engine,
            "another Outpost or wasmtime build",
        ),
        ("corrupt.cwasm", corrupt, "corrupt"),
        (
            "bare.cwasm",
            bare,
            "not a guest precompiled by `outpost compile`",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let config_path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config_path,
            one_service(&path, "", &[]).replace("{listen}", "127.0.0.1:1"),
        )
        .unwrap();
        let (code, out) = run_cli_code(&["check", "--config", config_path.to_str().unwrap()]);
        assert_eq!(code, Some(78), "{name}: {out}");
        assert!(out.contains(reason), "{name}: {out}");
        assert!(
            out.contains("fix: compile the .wasm again"),
            "{name}: {out}"
        );
    }
}

#[tokio::test]
async fn the_compile_cache_serves_later_starts_and_a_damaged_entry_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("compile-cache");
    let guest = dir.path().join("guest.wasm");
    std::fs::copy(example("hello"), &guest).unwrap();
    let start = || async {
        let addr = free_addr();
        let config = format!(
            "[server]\nlisten = [\"{addr}\"]\n[runtime]\ncompile_cache = {}\n\
             [services.s]\ndomains = [\"*\"]\nguest = {}\n",
            toml_path(&cache),
            toml_path(&guest)
        );
        let node = Node::start_on(addr, &config, &[addr]).await;
        let status = http1()
            .get(node.url("/"))
            .header("host", "hello.test")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        node.log()
    };
    let first = start().await;
    assert!(first.contains("KiB) compiled in"), "{first}");
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one entry, no temporary file left: {entries:?}"
    );

    let second = start().await;
    assert!(second.contains("loaded from the compile cache"), "{second}");

    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&entries[0], bytes).unwrap();
    let third = start().await;
    assert!(third.contains("ignoring compile cache entry"), "{third}");
    assert!(third.contains("compiled in"), "{third}");
    let fourth = start().await;
    assert!(
        fourth.contains("loaded from the compile cache"),
        "rewritten: {fourth}"
    );
}

#[tokio::test]
async fn serve_without_arguments_starts_the_demo_and_says_so_first() {
    let (addr, origin) = (free_addr(), free_addr());
    let node = Node::spawn(
        addr,
        &[
            "serve",
            "--listen",
            &addr.to_string(),
            "--demo-origin",
            &origin.to_string(),
        ],
        tempfile::tempdir().unwrap(),
        &[addr, origin],
    )
    .await;
    let proxied = http1().get(node.url("/some/path")).send().await.unwrap();
    assert_eq!(proxied.status(), 200);
    let hello = http1()
        .get(node.url("/"))
        .header("host", "hello.localhost")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(hello.starts_with("Hello"), "{hello}");
    let stdout = node.stdout();
    assert_eq!(
        stdout.lines().next(),
        Some("No --config or --guest given: starting the built-in demo"),
        "{stdout}"
    );
}
