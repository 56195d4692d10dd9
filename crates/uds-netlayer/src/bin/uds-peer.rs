//! `uds-peer`: a command-line OCapN Unix-domain-socket peer, for scripts
//! and for trying the netlayer by hand.
//!
//! ```text
//! uds-peer --intro PATH listen [--echo]   # prints: uds-peer ready locator=<URI>
//! uds-peer --intro PATH connect <URI>      # stdin/stdout <-> the peer
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uds_handshake::Identity;
use uds_netlayer::{Connection, IntroServer, UdsNetlayer};
use uds_syrup::{Designator, Locator, WireProfile};

const LONG_ABOUT: &str = "\
A command-line peer of the OCapN Unix-domain-socket netlayer.

It registers with one or more introduction servers (uds-introd), then either
listens for connections or connects to a peer given by its ocapn:// locator,
bridging the connection to standard input and output.

Introduction servers are given with --intro: a socket path, or @NAME for an
abstract socket. Without --intro, the socket inherited in OCAPN_UDS_INTRO_FD
is used if set (as `uds-introd spawn` provides), else
$XDG_RUNTIME_DIR/ocapn/intro.sock. Errors go to stderr with a non-zero exit
status; RUST_LOG=debug shows what the netlayer does.";

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
    /// The message shapes to send to introduction servers.
    #[arg(long, value_name = "PROFILE", default_value = "draft", value_parser = parse_wire, global = true)]
    wire: WireProfile,
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

fn parse_wire(s: &str) -> Result<WireProfile, String> {
    s.parse().map_err(|e: uds_syrup::WireError| e.to_string())
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("uds-peer: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("uds-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, BoxError> {
    let identity = match &cli.key {
        Some(path) => Identity::load_or_generate(path)?.0,
        None => Identity::generate(),
    };
    let mut builder = UdsNetlayer::builder()
        .identity(Arc::new(identity))
        .wire(cli.wire);
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
    let net = builder.build()?;
    let wait = std::time::Duration::try_from_secs_f64(cli.register_timeout)
        .map_err(|e| format!("--register-timeout: {e}"))?;
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
    match cli.command {
        Command::Listen { echo } => {
            println!("uds-peer ready locator={}", net.location());
            if echo {
                loop {
                    let conn = net.accept().await?;
                    tracing::info!(peer = %conn.peer(), relayed = conn.info().relayed, "echoing a connection");
                    tokio::spawn(async move {
                        let (mut r, mut w) = tokio::io::split(conn);
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                        let _ = w.shutdown().await;
                    });
                }
            } else {
                let conn = net.accept().await?;
                eprintln!(
                    "uds-peer: connection from {}{}",
                    conn.peer(),
                    if conn.info().relayed {
                        " (WARNING: relayed by the introduction server)"
                    } else {
                        ""
                    }
                );
                bridge(conn).await
            }
        }
        Command::Connect { uri } => {
            let peer: Locator = uri.parse()?;
            let conn = net.dial(&peer).await?;
            bridge(conn).await
        }
    }
}

/// Copies stdin to the connection and the connection to stdout. Ends when
/// both directions are done: the peer has closed its side and stdin has
/// ended (or the peer no longer accepts writes). Says so if the connection
/// closed before the peer sent anything (the usual sign that it could not
/// be reached).
async fn bridge(conn: Connection) -> Result<ExitCode, BoxError> {
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
    const UNREACHED: &str = "the connection closed before the peer sent anything; if the \
        peer was never reached, is it registered with a shared introduction server?";
    loop {
        let n = match r.read(&mut buf).await {
            Ok(n) => n,
            Err(e) if received == 0 => return Err(format!("{e}: {UNREACHED}").into()),
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        received += n;
        stdout.write_all(&buf[..n]).await?;
        stdout.flush().await?;
    }
    if received == 0 {
        eprintln!("uds-peer: {UNREACHED}");
    }
    // The peer is done sending; finish sending it our input.
    match to_peer.await {
        Ok(Err(e)) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("uds-peer: sending to the peer failed: {e}");
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}
