//! The load-test tools run: the in-process benchmark measures every scenario on the real
//! example guests (a scenario that is not what it says, such as a cache hit that misses,
//! is an error), and the ceiling server answers. Timings are printed, never asserted.
//! Being an integration test also makes `cargo test --workspace` build these binaries, so
//! the smoke load test reuses them.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_benchmark_measures_every_scenario() {
    let guests = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-examples/target/wasm32-wasip2/release");
    let out = Command::new(env!("CARGO_BIN_EXE_outpost-bench"))
        .args(["--iterations", "50", "--guests"])
        .arg(&guests)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for scenario in [
        "store + instantiate",
        "hello, fresh instance",
        "hello, reused instance",
        "fetch-cache hit",
        "response-cache hit",
    ] {
        assert!(text.contains(scenario), "{scenario} missing:\n{text}");
    }
    println!("{text}");
}

#[test]
fn both_ceiling_servers_answer() {
    for mode in ["pingora", "frontend"] {
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let mut server = Command::new(env!("CARGO_BIN_EXE_outpost-ceiling"))
            .args([&addr.to_string(), mode])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stream = loop {
            match std::net::TcpStream::connect(addr) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("{mode} ceiling never listened: {e}"),
            }
        };
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: ceiling\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let _ = server.kill();
        let _ = server.wait();
        assert!(answer.starts_with("HTTP/1.1 200"), "{mode}: {answer}");
        assert!(
            answer.ends_with("Hello, world! (from an Outpost guest, GET /)\n"),
            "{mode}: {answer}"
        );
    }
}
