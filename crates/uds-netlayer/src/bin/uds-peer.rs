//! `uds-peer`: a command-line OCapN Unix-domain-socket peer, for scripts
//! and for trying the netlayer by hand.
//!
//! ```text
//! uds-peer --intro PATH listen [--echo]   # prints: uds-peer ready locator=<URI>
//! uds-peer --intro PATH connect <URI>      # stdin/stdout <-> the peer
//! ```
//!
//! Connections are end-to-end encrypted by default; `--plaintext` speaks
//! to draft and Goblins peers. `--sandbox[=auto|require]` confines the
//! process once its intro sockets are open.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uds_handshake::Identity;
use uds_netlayer::sandbox::{Policy, SandboxMode};
use uds_netlayer::{Builder, Connection, IntroServer, UdsNetlayer};
use uds_syrup::{Designator, Locator, WireProfile};

const LONG_ABOUT: &str = "\
A command-line peer of the OCapN Unix-domain-socket netlayer.

It registers with one or more introduction servers (uds-introd), then either
listens for connections or connects to a peer given by its ocapn:// locator,
bridging the connection to standard input and output.

Connections are end-to-end encrypted (Noise XX keyed to both peers'
identities) unless --plaintext is given: a lying introduction server can then
drop connections, not read, change or impersonate them. Encrypted peers
refuse plaintext connections. Goblins and draft-only peers speak plaintext:
use --plaintext for them (a plaintext peer accepts both).

`connect` exits 0 once the connection has ended normally, and non-zero with
a message when the peer could not be reached, could not prove its identity
(encrypted mode), or did not answer within --timeout (plaintext mode, where
an answer is the only sign that the peer was reached).

Introduction servers are given with --intro: a socket path, or @NAME for an
abstract socket. Without --intro, the socket inherited in OCAPN_UDS_INTRO_FD
is used if set (as `uds-introd spawn` provides), else
$XDG_RUNTIME_DIR/ocapn/intro.sock. Errors go to stderr with a non-zero exit
status; RUST_LOG=debug shows what the netlayer does.

With --sandbox (or --sandbox=require), once its key is read and its intro
sockets are open it confines itself: no new privileges, no filesystem
access, no TCP/UDP, no signals to other processes (Linux Landlock), and
prints what is in force on stderr (`uds-peer: sandbox: ...`).";

#[derive(Parser)]
#[command(name = "uds-peer", version, about = "A command-line OCapN Unix-domain-socket peer", long_about = LONG_ABOUT)]
struct Cli {
    /// An introduction server: a socket path, or @NAME for an abstract
    /// socket (repeatable).
    #[arg(long, value_name = "PATH", global = true)]
    intro: Vec<String>,
    /// Accept only an introduction server with this id (52-character
    /// designator); applies to every --intro.
    #[arg(long, value_name = "ID", global = true)]
    pin: Option<Designator>,
    /// The identity key file (PKCS#8 PEM), created 0600 if missing.
    /// Without it, a new identity is used for this run only.
    #[arg(long, value_name = "FILE", global = true)]
    key: Option<PathBuf>,
    /// How long to wait for registration with a first server before giving
    /// up, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, global = true)]
    register_timeout: f64,
    /// The message shapes to send to introduction servers: `auto` answers
    /// each server in the shape it used (Goblins' or the draft's); `draft`
    /// or `goblins` forces one.
    #[arg(long, value_name = "PROFILE", default_value = "auto", value_parser = parse_wire, global = true)]
    wire: WireChoice,
    /// Plaintext connections (as the draft and Goblins peers use): dial
    /// without encryption, accept both. Default: end-to-end encrypted.
    #[arg(long, global = true)]
    plaintext: bool,
    /// How long `connect` waits for the peer, in seconds: for its handshake
    /// (encrypted) or its first byte (plaintext); 0 waits forever in
    /// plaintext mode and keeps the netlayer's default (10 s) for the
    /// handshake when encrypted.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, global = true)]
    timeout: f64,
    /// Confine this process once its key is read and its intro sockets are
    /// open: no new privileges, and (Linux Landlock) no filesystem access,
    /// no TCP/UDP, no signals to other processes; reaching its introduction
    /// servers keeps working, also after they restart (for @NAME servers,
    /// abstract-socket scoping stays off). `--sandbox` alone means `auto`
    /// (confine as far as the kernel allows); `--sandbox=require` refuses to
    /// run without all of it. What is in force is printed on stderr.
    #[arg(
        long,
        value_name = "MODE",
        global = true,
        num_args = 0..=1,
        require_equals = true,
        default_value = "off",
        default_missing_value = "auto",
        value_parser = parse_sandbox
    )]
    sandbox: SandboxMode,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register, print `uds-peer ready locator=<URI>`, and serve
    /// connections: echo every one back (--echo), or bridge the first one to
    /// stdin/stdout and exit when both the peer and stdin are done.
    Listen {
        /// Echo every connection back to its sender, forever.
        #[arg(long)]
        echo: bool,
    },
    /// Connect to the peer at URI and bridge stdin/stdout to it; exit when
    /// both the peer and stdin are done.
    Connect {
        /// The peer's locator, `ocapn://<designator>.unix-domain-socket?<server>=1`
        uri: String,
    },
}

/// `--wire`: `auto` (`None`) or a forced shape.
#[derive(Clone, Copy, Debug)]
struct WireChoice(Option<WireProfile>);

fn parse_sandbox(s: &str) -> Result<SandboxMode, String> {
    s.parse()
        .map_err(|e: uds_netlayer::sandbox::ParseModeError| e.to_string())
}

fn parse_wire(s: &str) -> Result<WireChoice, String> {
    if s == "auto" {
        return Ok(WireChoice(None));
    }
    s.parse()
        .map(|p| WireChoice(Some(p)))
        .map_err(|e: uds_syrup::WireError| format!("{e}, or \"auto\""))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    // Everything that needs the filesystem happens here, on this single
    // thread, then the confinement; the runtime's threads inherit it.
    let prepared = match prepare(&cli) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("uds-peer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(prepared.workers)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("uds-peer: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli, prepared)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("uds-peer: {e}");
            ExitCode::FAILURE
        }
    };
    // Everything to wait for was awaited; a read of stdin may still be
    // pending on a blocking thread (the peer failed or ended first), and it
    // must not keep the process alive until the user presses Enter.
    runtime.shutdown_background();
    code
}

/// What `main` sets up before the runtime starts.
struct Prepared {
    builder: Builder,
    target: Option<Locator>,
    wait: std::time::Duration,
    timeout: std::time::Duration,
    /// The runtime's worker threads, counted before confining (the CPU
    /// quota is read from files).
    workers: usize,
}

/// Checks the arguments (before any I/O), reads the key, takes the
/// inherited intro socket, configures the netlayer and, with `--sandbox`,
/// confines the process (which opens the intro sockets first).
fn prepare(cli: &Cli) -> Result<Prepared, BoxError> {
    let target: Option<Locator> = match &cli.command {
        Command::Connect { uri } => {
            let peer: Locator = uri.parse().map_err(|e| format!("{uri}: {e}"))?;
            peer.designator_key().map_err(|e| format!("{uri}: {e}"))?;
            Some(peer)
        }
        Command::Listen { .. } => None,
    };
    let wait = duration_arg("--register-timeout", cli.register_timeout)?;
    let timeout = duration_arg("--timeout", cli.timeout)?;
    let identity = match &cli.key {
        Some(path) => Identity::load_or_generate(path)?.0,
        None => Identity::generate(),
    };
    let mut builder = UdsNetlayer::builder()
        .identity(Arc::new(identity))
        .wire(cli.wire.0);
    if cli.plaintext {
        builder = builder.plaintext();
    }
    if !timeout.is_zero() {
        builder = builder.answer_timeout(timeout);
    }
    let pin = |s: IntroServer| match cli.pin {
        Some(d) => s.pinned(d),
        None => s,
    };
    if cli.intro.is_empty() {
        match IntroServer::from_env()? {
            Some(s) => builder = builder.intro(pin(s)),
            None => {
                let dir = std::env::var_os("XDG_RUNTIME_DIR")
                    .filter(|d| !d.is_empty())
                    .ok_or(
                        "no --intro given, no OCAPN_UDS_INTRO_FD, and XDG_RUNTIME_DIR is not set",
                    )?;
                builder = builder.intro(pin(IntroServer::path(
                    PathBuf::from(dir).join("ocapn").join("intro.sock"),
                )));
            }
        }
    }
    for intro in &cli.intro {
        let server = match intro.strip_prefix('@') {
            Some(name) => IntroServer::abstract_name(name),
            None => IntroServer::path(intro),
        };
        builder = builder.intro(pin(server));
    }
    let workers = worker_threads();
    if cli.sandbox != SandboxMode::Off {
        let report = builder.confine(cli.sandbox, Policy::new())?;
        eprintln!("uds-peer: {}", report.status_line());
    }
    Ok(Prepared {
        builder,
        target,
        wait,
        timeout,
        workers,
    })
}

async fn run(cli: Cli, prepared: Prepared) -> Result<ExitCode, BoxError> {
    let Prepared {
        builder,
        target,
        wait,
        timeout,
        ..
    } = prepared;
    let net = builder.build()?;
    tokio::time::timeout(wait, net.registered())
        .await
        .map_err(|_| {
            format!(
                "could not register with any introduction server within {wait:?} ({}); is uds-introd running?",
                net.servers()
                    .iter()
                    .map(|s| s.address.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    match (cli.command, target) {
        (Command::Listen { echo }, _) => {
            println!("uds-peer ready locator={}", net.location());
            if echo {
                loop {
                    let conn = net.accept().await?;
                    tracing::info!(
                        peer = %conn.peer(),
                        encrypted = conn.is_encrypted(),
                        relayed = conn.info().relayed,
                        "echoing a connection"
                    );
                    tokio::spawn(async move {
                        let (mut r, mut w) = tokio::io::split(conn);
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                        let _ = w.shutdown().await;
                    });
                }
            } else {
                let conn = net.accept().await?;
                eprintln!("uds-peer: connection from {}", describe(&conn));
                bridge(conn, None).await
            }
        }
        (Command::Connect { .. }, Some(peer)) => {
            if cli.plaintext {
                // Only an answer shows that a plaintext peer was reached.
                let conn = net.connect(&peer).await?;
                bridge(conn, (!timeout.is_zero()).then_some(timeout)).await
            } else {
                let conn = net.connect(&peer).await?;
                bridge(conn, None).await
            }
        }
        (Command::Connect { .. }, None) => Err("no locator to connect to".into()),
    }
}

/// The number of worker threads: `TOKIO_WORKER_THREADS` if set, else the
/// CPUs available to this process (which reads the cgroup CPU quota from
/// files, so it must run before confining).
fn worker_threads() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn duration_arg(name: &str, secs: f64) -> Result<std::time::Duration, BoxError> {
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("{name} {secs}: {e}").into())
}

/// How a connection came, for the listener's message.
fn describe(conn: &Connection) -> String {
    let info = conn.info();
    let mut s = info.peer.to_string();
    if info.encrypted {
        s.push_str(" (end-to-end encrypted, identity proven)");
    } else {
        s.push_str(" (plaintext: only the introduction server vouches for it)");
    }
    if info.relayed {
        s.push_str(" (WARNING: relayed by the introduction server)");
    }
    s
}

/// Copies stdin to the connection and the connection to stdout. Ends when
/// both directions are done: the peer has closed its side and stdin has
/// ended (or the peer no longer accepts writes).
///
/// With `answer_within` (plaintext connect), the peer must send something
/// (or close after sending something) within that time: in plaintext mode
/// that is the only sign it was reached. A connection that ends before the
/// peer sent anything is then an error.
async fn bridge(
    conn: Connection,
    answer_within: Option<std::time::Duration>,
) -> Result<ExitCode, BoxError> {
    let encrypted = conn.is_encrypted();
    let (mut r, mut w) = tokio::io::split(conn);
    let to_peer = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let copied = tokio::io::copy(&mut stdin, &mut w).await;
        let _ = w.shutdown().await;
        copied
    });
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; 64 << 10];
    let mut received = 0usize;
    const UNREACHED: &str = "the connection closed before the peer sent anything: it was \
        probably never reached (is it registered with a shared introduction server?)";
    loop {
        let read = r.read(&mut buf);
        let n = match (answer_within, received) {
            (Some(t), 0) => match tokio::time::timeout(t, read).await {
                Ok(r) => r,
                Err(_) => {
                    to_peer.abort();
                    return Err(format!(
                        "the peer did not answer within {t:?}: in plaintext mode that means it \
                         was probably never reached (use --timeout to wait longer)"
                    )
                    .into());
                }
            },
            _ => read.await,
        };
        let n = match n {
            Ok(n) => n,
            Err(e) if received == 0 && !encrypted => {
                to_peer.abort();
                return Err(format!("{e}: {UNREACHED}").into());
            }
            Err(e) => {
                to_peer.abort();
                return Err(e.into());
            }
        };
        if n == 0 {
            break;
        }
        received += n;
        stdout.write_all(&buf[..n]).await?;
        stdout.flush().await?;
    }
    if received == 0 && answer_within.is_some() {
        to_peer.abort();
        return Err(UNREACHED.into());
    }
    // The peer is done sending; finish sending it our input.
    match to_peer.await {
        Ok(Err(e)) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("uds-peer: sending to the peer failed: {e}");
            return Ok(ExitCode::FAILURE);
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}
