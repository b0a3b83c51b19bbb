//! The `outpost` command line: `serve` (config file, quick mode, or the built-in default)
//! and `check`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::config::{BackendConfig, Config, LogFormat, ServiceConfig};
use crate::demo;
use crate::host_pattern::HostPattern;
use crate::logging;
use crate::node::{Node, RunOptions};
use crate::runtime::Runtime;
use crate::runtime::artifact::precompile;

/// Outpost: a self-hostable edge compute node that runs a fresh WebAssembly guest for
/// every request.
#[derive(Debug, Parser)]
#[command(name = "outpost", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve requests. With no options, starts the built-in demo (example guests and a demo
    /// origin); with `--config`, serves a config file; with `--guest`, serves one guest for
    /// every host (quick mode).
    Serve(ServeArgs),
    /// Validate a config file and compile every guest it names, then exit.
    Check {
        /// The config file to check.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Compile a guest ahead of time into a `.cwasm` that starts without compiling. It
    /// loads only on an Outpost of the same build with the same `[runtime]` settings;
    /// anything else refuses it.
    Compile {
        /// The guest component (.wasm).
        guest: PathBuf,
        /// Where to write it (default: the guest's path with `.cwasm`).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// The node config whose `[runtime]` settings the guest will run under (default:
        /// the built-in settings).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Options of `outpost serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A config file (TOML). Cannot be combined with quick-mode options.
    #[arg(long, short, conflicts_with_all = ["guest", "backends"])]
    pub config: Option<PathBuf>,
    /// Quick mode: the guest component (.wasm) that answers every host.
    #[arg(long)]
    pub guest: Option<PathBuf>,
    /// Quick mode: a backend the guest may fetch as `http://NAME/...`, given as NAME=URL.
    /// Repeatable.
    #[arg(long = "backend", value_name = "NAME=URL", requires = "guest")]
    pub backends: Vec<String>,
    /// Address to listen on for plain HTTP (quick mode and the default).
    #[arg(long, default_value = "127.0.0.1:7676", conflicts_with = "config")]
    pub listen: SocketAddr,
    /// Quick mode and the default: serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR", conflicts_with = "config")]
    pub metrics: Option<SocketAddr>,
    /// Quick mode and the default: write the JSON access log to `stdout` or a file.
    #[arg(
        long,
        value_name = "stdout|PATH",
        default_value = "off",
        conflicts_with = "config"
    )]
    pub access_log: String,
    /// Quick mode: a MaxMind-format database (.mmdb) guests look client locations up in.
    #[arg(long, value_name = "PATH", requires = "guest")]
    pub geo_db: Option<PathBuf>,
    /// Reload a guest whenever its .wasm file changes (for an edit-build-reload loop); a
    /// build that does not compile or link keeps the previous version serving.
    #[arg(long)]
    pub watch: bool,
    /// The node log's format: `text` (default) or `json`, for log shippers. Wins over
    /// `log.format` in the config.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Take the listening sockets over from the Outpost running on this config (zero
    /// downtime): start this, then send the old one SIGQUIT within 30 s. SIGUSR2 to the old
    /// one does both.
    #[arg(long)]
    pub upgrade: bool,
    /// Where the built-in demo origin listens (default mode only).
    #[arg(long, default_value = demo::DEMO_ORIGIN, conflicts_with_all = ["config", "guest"])]
    pub demo_origin: SocketAddr,
}

/// Parses the command line and runs it. Usage errors exit with 2 (clap's own exit).
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => {
            logging::init("warn", LogFormat::Text);
            let mut config = Config::load(&config)?;
            // The access log is the running node's: its directory may only exist under the
            // service manager (systemd's LogsDirectory), so `check` does not open it.
            config.log.access = "off".into();
            let services = config.services.len();
            let warnings = config.warnings();
            Node::build(config)?;
            for warning in &warnings {
                println!("warning: {warning}");
            }
            println!("ok: {services} service(s); every guest compiles and links");
            Ok(())
        }
        Command::Compile {
            guest,
            output,
            config,
        } => {
            logging::init("warn", LogFormat::Text);
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            let runtime = Runtime::new(&config.runtime, config.max_guest_memory())
                .context("starting the WebAssembly engine")?;
            let started = std::time::Instant::now();
            let artifact = precompile(&runtime, &guest)?;
            let output = output.unwrap_or_else(|| guest.with_extension("cwasm"));
            std::fs::write(&output, &artifact)
                .with_context(|| format!("writing {}", output.display()))?;
            println!(
                "compiled {} in {} ms into {} ({} KiB)",
                guest.display(),
                started.elapsed().as_millis(),
                output.display(),
                artifact.len().div_ceil(1024)
            );
            Ok(())
        }
        Command::Serve(args) => serve(args),
    }
}

/// A failure and its causes on one line, each cause once: our errors already embed their
/// source's text, context added with `anyhow` does not.
pub fn describe(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

/// The exit code for a failure: 78 (`EX_CONFIG`) when the configuration, or a guest or
/// certificate it names, is at fault; 1 for anything else.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    let config_fault = error.chain().any(|e| {
        e.is::<crate::config::ConfigError>()
            || e.downcast_ref::<crate::node::NodeError>()
                .is_some_and(|e| e.is_config_fault())
    });
    if config_fault { 78 } else { 1 }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (config, demo_origin) = if let Some(path) = &args.config {
        (Config::load(path)?, None)
    } else if let Some(guest) = &args.guest {
        let mut config = quick_config(guest, &args.backends, args.listen)?;
        config.metrics.listen = args.metrics;
        config.log.access = args.access_log.clone();
        config.geo.database = args.geo_db.clone();
        config.validate()?;
        (config, None)
    } else {
        println!("No --config or --guest given: starting the built-in demo");
        let mut config = demo::default_config(args.listen, args.demo_origin)
            .context("writing the built-in example guests to the temp directory")?;
        config.metrics.listen = args.metrics;
        config.log.access = args.access_log.clone();
        (config, Some(args.demo_origin))
    };
    logging::init(
        &config.log.level,
        args.log_format.unwrap_or(config.log.format),
    );
    logging::raise_open_files_limit();
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let node = Node::build(config)?;
    if let Some(origin) = demo_origin {
        demo::spawn_demo_origin(origin).with_context(|| {
            format!("starting the demo origin on {origin} (pick another with --demo-origin)")
        })?;
        let base = format!("{}", args.listen);
        println!("Outpost is serving the built-in demo. Try:");
        println!(
            "  curl http://{base}/                      # origin-proxy guest -> demo origin on {origin}"
        );
        println!(
            "  curl http://hello.localhost:{}/   # hello guest",
            args.listen.port()
        );
        println!("  curl -H 'Host: hello.localhost' http://{base}/");
    } else {
        for url in node.urls() {
            println!("Outpost is serving on {url}");
        }
    }
    if args.watch {
        node.watch_guests();
        println!("Watching the guest files; a new build is served as soon as it is written");
    }
    if !node.is_pooling() {
        println!("warning: running without the pooling allocator; instantiation will be slower");
    }
    node.run(RunOptions {
        upgrade: args.upgrade,
    })?;
    Ok(())
}

/// The config for `serve --guest PATH --backend NAME=URL --listen ADDR`: one service that
/// answers every host.
pub fn quick_config(
    guest: &std::path::Path,
    backends: &[String],
    listen: SocketAddr,
) -> anyhow::Result<Config> {
    let mut named = BTreeMap::new();
    for spec in backends {
        let Some((name, url)) = spec.split_once('=') else {
            bail!(
                "--backend `{spec}`: expected NAME=URL, e.g. --backend origin=http://127.0.0.1:8080"
            );
        };
        if named
            .insert(name.trim().to_owned(), BackendConfig::from_url(url.trim()))
            .is_some()
        {
            bail!("--backend `{name}` is given twice");
        }
    }
    let mut service = ServiceConfig::new(vec![HostPattern::Any], guest);
    service.backends = named;
    let mut config = Config {
        base_dir: std::env::current_dir().context("reading the current directory")?,
        source: "command line".into(),
        ..Config::default()
    };
    config.services.insert("default".to_owned(), service);
    config.server.listen = vec![listen];
    config.validate()?;
    Ok(config)
}
