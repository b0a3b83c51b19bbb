//! The load-test tools run: the in-process benchmark measures every scenario on the real
//! example guests (a scenario that is not what it says, such as a cache hit that misses,
//! is an error), the ceiling server answers, and the A/B summary reads run.sh's reports.
//! Timings are printed, never asserted.
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

/// Per scenario: outpost's and nginx's µs/req in one report.
type Rows<'a> = &'a [(&'a str, f64, f64)];

/// One run.sh report with these rows (the other columns as run.sh writes them).
fn report(dir: &Path, name: &str, rows: Rows) -> String {
    let mut text = String::from(
        "# Outpost load test\n\n| scenario | server | requests/s | µs/req | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | req/s vs nginx | p99 vs nginx |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (scenario, outpost, nginx) in rows {
        for (server, us) in [("outpost", outpost), ("nginx", nginx)] {
            text.push_str(&format!(
                "| {scenario} | {server} | 1,000 | {us:.1} | 1.00 | 2.00 | 3.00 | 4.00 | 0 | 1.00x | 1.00x |\n"
            ));
        }
    }
    text.push_str("\n| in-process scenario | median µs | p99 µs | requests |\n|---|---:|---:|---:|\n| hello, fresh instance | 9.0 | 9.0 | 200 |\n");
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// `loadtest/ab.py old new REPORTS...`, as ab.sh runs it.
fn summarize(reports: &[String]) -> std::process::Output {
    Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("ab.py"))
        .args(["old", "new"])
        .args(reports)
        .output()
        .expect("python3 runs loadtest/ab.py")
}

#[test]
fn the_ab_summary_sets_interleaved_rounds_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    // Round 1: B 10% lower on pass, level on hello; round 2: the machine ran 20% slower for
    // both sides (and for nginx), B again 10% lower on pass and this time lower on hello.
    let rounds: [(&str, Rows); 4] = [
        ("a1.md", &[("hello", 50.0, 4.0), ("pass", 100.0, 10.0)]),
        ("b1.md", &[("hello", 50.0, 4.0), ("pass", 90.0, 10.0)]),
        ("a2.md", &[("hello", 60.0, 4.8), ("pass", 120.0, 12.0)]),
        ("b2.md", &[("hello", 54.0, 4.8), ("pass", 108.0, 12.0)]),
    ];
    let reports = rounds.map(|(name, rows)| report(dir.path(), name, rows));
    let out = summarize(&reports);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(
            "| pass | 100.0/120.0 | 90.0/108.0 | 110.0 | 99.0 | -10.0% | 2 of 2 | -10.0% |"
        ),
        "{text}"
    );
    assert!(
        text.contains("| hello | 50.0/60.0 | 50.0/54.0 | 55.0 | 52.0 | -5.5% | 1 of 2 | -5.0% |"),
        "{text}"
    );

    // Reports that do not pair up are refused, not half-summed.
    let odd = summarize(&reports[..3]);
    assert!(!odd.status.success());
    assert!(String::from_utf8_lossy(&odd.stderr).contains("in pairs"));
}
