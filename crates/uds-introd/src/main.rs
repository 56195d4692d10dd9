//! The `uds-introd` command: run the introduction server, create keys,
//! query a running server, or run a program under a private server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use uds_handshake::Identity;
use uds_introd::admin::{AdminSocket, default_admin_path};
use uds_introd::{Config, Limits, ListenAddr, Listener, Policy, Server, default_socket_path};
use uds_syrup::WireProfile;

const ABOUT: &str = "Introduction server for the OCapN Unix-domain-socket netlayer";

const LONG_ABOUT: &str = "\
Introduction server for the OCapN Unix-domain-socket netlayer.

Peers register their identity (an Ed25519 key) with this server over a Unix
stream socket, then ask it to pass a fresh socket to another registered peer.
The server only introduces; it never relays traffic, and connections it has
introduced keep working if it exits.

When ready, it prints one line on stdout:
  uds-introd ready socket=<PATH or @NAME> id=<52-character designator> wire=<goblins|draft>
and notifies systemd (READY=1) when NOTIFY_SOCKET is set. It shuts down
cleanly on SIGTERM or SIGINT, removing its socket files. Logs go to stderr;
set RUST_LOG (e.g. RUST_LOG=debug) for more detail.";

#[derive(Parser)]
#[command(name = "uds-introd", version, about = ABOUT, long_about = LONG_ABOUT)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new identity key file (PKCS#8 PEM, mode 0600) and print its id.
    Keygen {
        /// Where to write the key; an existing file is never overwritten.
        file: PathBuf,
    },
    /// Show a running server's state: peers, connections, intros, refusals.
    Status {
        /// The server's admin socket [default: the socket path + ".admin"].
        #[arg(long, value_name = "PATH")]
        admin: Option<PathBuf>,
        /// The server's listening socket, to find its admin socket
        /// [default: $XDG_RUNTIME_DIR/ocapn/intro.sock].
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Run CMD with a private, pre-connected intro socket.
    ///
    /// The child finds the socket's number in OCAPN_UDS_INTRO_FD and this
    /// server's id in OCAPN_UDS_INTRO_ID. Only the child's pid may use that
    /// socket. The server listens on no path unless --socket or --abstract is
    /// given, and exits with the child's exit status when the child ends.
    Spawn {
        #[command(flatten)]
        run: Box<RunArgs>,
        /// The program and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

#[derive(Args, Clone, Default)]
struct RunArgs {
    /// Listen on this filesystem socket [default: $XDG_RUNTIME_DIR/ocapn/intro.sock].
    /// Its directory is created 0700 if missing, and must not be writable
    /// by others.
    #[arg(long, value_name = "PATH", conflicts_with = "abstract_name")]
    socket: Option<PathBuf>,
    /// Listen on an abstract socket name instead. Abstract names have no
    /// permissions and can be taken over by anyone once the server exits:
    /// peers should pin the server's key.
    #[arg(long = "abstract", value_name = "NAME")]
    abstract_name: Option<String>,
    /// The identity key file (PKCS#8 PEM), created if missing. Without it the
    /// server makes a new identity at every start, so peers' locators do not
    /// survive a restart.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The message shapes to emit: Goblins' (the default: every known
    /// client accepts them — Goblins requires them, this project's netlayer
    /// takes both) or the draft specification's (for clients that accept
    /// only the draft's). Clients may send either.
    #[arg(long, value_name = "PROFILE", default_value = "goblins", value_parser = parse_wire)]
    wire: WireProfile,
    /// The admin socket (SOCK_SEQPACKET, private to this user) for
    /// `uds-introd status` [default: the socket path + ".admin"].
    #[arg(long, value_name = "PATH")]
    admin: Option<PathBuf>,
    /// Do not open an admin socket.
    #[arg(long, conflicts_with = "admin")]
    no_admin: bool,
    /// Also admit clients running as this uid (repeatable). By default only
    /// the server's own uid is admitted.
    #[arg(long, value_name = "UID")]
    allow_uid: Vec<u32>,
    /// Also admit clients whose primary gid is this (repeatable).
    #[arg(long, value_name = "GID")]
    allow_gid: Vec<u32>,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args, Clone, Default)]
#[command(
    next_help_heading = "Limits (each refusal closes one connection or one intro, and is counted in `status`)"
)]
struct LimitArgs {
    /// Largest message on the intro channel, in bytes [default: 65536].
    #[arg(long, value_name = "BYTES")]
    max_message: Option<usize>,
    /// Deepest nesting of a message [default: 32].
    #[arg(long, value_name = "N")]
    max_depth: Option<usize>,
    /// Time a client has to register [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    registration_timeout: Option<Duration>,
    /// Connections at once [default: 4096].
    #[arg(long, value_name = "N")]
    max_clients: Option<usize>,
    /// Connections at once from one uid [default: 1024].
    #[arg(long, value_name = "N")]
    max_clients_per_uid: Option<usize>,
    /// Connections at once that have not registered yet [default: 256].
    #[arg(long, value_name = "N")]
    max_unregistered: Option<usize>,
    /// Intros one client may have queued or waiting at once, toward all
    /// targets; beyond it the client is slowed down (deliverable intros) or
    /// refused (intros to unregistered targets) [default: 64].
    #[arg(long, value_name = "N")]
    max_intros_per_sender: Option<usize>,
    /// The same budget in bytes of intro records [default: 65536].
    #[arg(long, value_name = "BYTES")]
    max_intro_bytes_per_sender: Option<usize>,
    /// Intros one client may have queued or waiting at once toward one
    /// target [default: 16].
    #[arg(long, value_name = "N")]
    max_intros_per_target: Option<usize>,
    /// The same budget in bytes [default: 16384].
    #[arg(long, value_name = "BYTES")]
    max_intro_bytes_per_target: Option<usize>,
    /// Intros waiting at once for one unregistered target, from all clients
    /// [default: 64].
    #[arg(long, value_name = "N")]
    max_parked_per_target: Option<usize>,
    /// Passed sockets held at once, queued, waiting or being sent, across
    /// all clients [default: 8192].
    #[arg(long, value_name = "N")]
    max_held_fds: Option<usize>,
    /// Bytes of intro records held at once across all clients
    /// [default: 8388608].
    #[arg(long, value_name = "BYTES")]
    max_held_bytes: Option<usize>,
    /// How long an intro waits for its target to register [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    park_timeout: Option<Duration>,
    /// How long a client may take to read one intro sent to it before it is
    /// disconnected [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    send_timeout: Option<Duration>,
    /// Intros of one client refused within one park timeout before that
    /// client is disconnected [default: 256].
    #[arg(long, value_name = "N")]
    max_refused_per_sender: Option<usize>,
    /// Server hints kept in each locator of a forwarded intro [default: 8].
    #[arg(long, value_name = "N")]
    max_forwarded_hints: Option<usize>,
    /// Admin connections at once [default: 8].
    #[arg(long, value_name = "N")]
    max_admin_connections: Option<usize>,
}

fn parse_wire(s: &str) -> Result<WireProfile, String> {
    s.parse().map_err(|e: uds_syrup::WireError| e.to_string())
}

/// `5`, `5s`, `500ms`, `2m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 5s, 500ms or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

impl LimitArgs {
    fn apply(&self, mut l: Limits) -> Limits {
        macro_rules! set {
            ($($f:ident => $g:ident),*) => {$( if let Some(v) = self.$f { l.$g = v; } )*};
        }
        set!(
            max_message => max_message_len,
            max_depth => max_depth,
            registration_timeout => registration_timeout,
            max_clients => max_clients,
            max_clients_per_uid => max_clients_per_uid,
            max_unregistered => max_unregistered,
            max_intros_per_sender => max_intros_per_sender,
            max_intro_bytes_per_sender => max_intro_bytes_per_sender,
            max_intros_per_target => max_intros_per_target,
            max_intro_bytes_per_target => max_intro_bytes_per_target,
            max_parked_per_target => max_parked_per_target,
            max_held_fds => max_held_fds,
            max_held_bytes => max_held_bytes,
            park_timeout => park_timeout,
            send_timeout => send_timeout,
            max_refused_per_sender => max_refused_per_sender,
            max_forwarded_hints => max_forwarded_hints,
            max_admin_connections => max_admin_connections
        );
        l
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("uds-introd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            None => run(cli.run, None).await,
            Some(Command::Spawn { run: args, command }) => run(*args, Some(command)).await,
            Some(Command::Keygen { file }) => keygen(&file),
            Some(Command::Status { admin, socket }) => status(admin, socket).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("uds-introd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(file: &Path) -> Result<ExitCode, BoxError> {
    let id = Identity::generate();
    id.save(file)?;
    println!("wrote {} id={}", file.display(), id.designator());
    Ok(ExitCode::SUCCESS)
}

async fn status(admin: Option<PathBuf>, socket: Option<PathBuf>) -> Result<ExitCode, BoxError> {
    let path = match admin {
        Some(p) => p,
        None => default_admin_path(&match socket {
            Some(s) => s,
            None => default_socket_path()?,
        }),
    };
    let reply = uds_introd::admin::request(&path, "status").await?;
    print!("{reply}");
    Ok(ExitCode::SUCCESS)
}

async fn run(args: RunArgs, spawn: Option<Vec<String>>) -> Result<ExitCode, BoxError> {
    // Systemd sockets first: they must be claimed before anything else
    // could open fds with the same numbers.
    let activated = Listener::from_activation()?;

    let identity = match &args.key {
        Some(path) => {
            let (id, created) = Identity::load_or_generate(path)?;
            if created {
                tracing::info!(key = %path.display(), "created a new identity key");
            }
            id
        }
        None => {
            tracing::warn!(
                "no --key given: using a new identity for this run only; peers will have to \
                 learn the new id after a restart"
            );
            Identity::generate()
        }
    };
    let identity = Arc::new(identity);
    let own_uid = nix::unistd::geteuid().as_raw();
    let limits = args.limits.apply(Limits::default());
    raise_fd_limit(limits.max_clients + limits.max_held_fds + 64);
    let config = Config {
        wire: args.wire,
        limits,
        policy: Policy {
            own_uid,
            allow_uids: args.allow_uid.clone(),
            allow_gids: args.allow_gid.clone(),
        },
    };
    let mode = if !config.policy.allow_uids.is_empty() {
        0o666
    } else if !config.policy.allow_gids.is_empty() {
        0o660
    } else {
        0o600
    };

    let mut listeners = activated;
    if listeners.is_empty() {
        if let Some(name) = &args.abstract_name {
            listeners.push(Listener::bind_abstract(name)?);
        } else if let Some(path) = &args.socket {
            listeners.push(Listener::bind_path(path, mode)?);
        } else if spawn.is_none() {
            listeners.push(Listener::bind_path(&default_socket_path()?, mode)?);
        }
        // Clients of an allowed group can reach the socket only if the file
        // belongs to that group.
        if let [gid, ..] = config.policy.allow_gids[..]
            && config.policy.allow_uids.is_empty()
        {
            for l in &listeners {
                l.set_group(gid)?;
            }
            if config.policy.allow_gids.len() > 1 {
                tracing::warn!(
                    "the socket file belongs to group {gid}: clients whose primary group is \
                     another --allow-gid can reach it only if they are also in group {gid}"
                );
            }
        }
    } else if args.socket.is_some() || args.abstract_name.is_some() {
        tracing::warn!("socket activation in use: ignoring --socket/--abstract");
    }

    let admin_path = if args.no_admin {
        None
    } else {
        args.admin.clone().or_else(|| {
            listeners.iter().find_map(|l| match l.addr() {
                ListenAddr::Path(p) => Some(default_admin_path(p)),
                _ => None,
            })
        })
    };
    let mut admin = match &admin_path {
        Some(p) => Some(AdminSocket::bind(p).map_err(|e| {
            format!(
                "admin socket {}: {e} (pass --admin PATH or --no-admin)",
                p.display()
            )
        })?),
        None => None,
    };

    // Handle SIGTERM/SIGINT from before the ready line on, so a supervisor
    // that signals right after readiness gets a clean shutdown.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let server = Server::new(identity.clone(), config);
    for l in &listeners {
        tracing::info!(socket = %l.addr(), id = %server.designator(), wire = %args.wire, "listening");
    }
    if let Some(a) = &admin {
        tracing::info!(admin = %a.path().display(), "admin socket ready");
    }

    let mut child = match &spawn {
        Some(command) => Some(spawn_child(&server, command)?),
        None => {
            let socket = listeners
                .first()
                .map(|l| l.addr().to_string())
                .unwrap_or_default();
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "uds-introd ready socket={socket} id={} wire={}",
                server.designator(),
                args.wire
            )?;
            out.flush()?;
            None
        }
    };
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready])
    {
        tracing::warn!("could not notify systemd: {e}");
    }

    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        let server = server.clone();
        tasks.spawn(async move {
            server.serve(l.listener()).await;
            drop(l); // removes the socket file
        });
    }
    if let Some(mut a) = admin.take() {
        let server = server.clone();
        tasks.spawn(async move { a.serve(&server).await });
    }

    let code = tokio::select! {
        _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); ExitCode::SUCCESS }
        _ = int.recv() => { tracing::info!("SIGINT: shutting down"); ExitCode::SUCCESS }
        status = async { match child.as_mut() { Some(c) => c.wait().await, None => std::future::pending().await } } => {
            let status = status?;
            tracing::info!("child exited ({status}): shutting down");
            status.code().map_or(ExitCode::FAILURE, |c| ExitCode::from(c.clamp(0, 255) as u8))
        }
    };
    server.shutdown();
    // Let the tasks close their sockets and remove their files.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(code)
}

/// Raises the soft fd limit to the hard one; warns if even that is below
/// what the limits may need.
fn raise_fd_limit(needed: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
                tracing::warn!("could not raise the fd limit from {soft} to {hard}");
            }
            if (hard as usize) < needed {
                tracing::warn!(
                    "the fd limit ({hard}) is below --max-clients + --max-held-fds ({needed}): \
                     under full load new connections will fail; raise RLIMIT_NOFILE \
                     (LimitNOFILE= in systemd) or lower those limits"
                );
            }
        }
        Err(e) => tracing::warn!("cannot read the fd limit: {e}"),
    }
}

/// Starts `command` with one end of a fresh socketpair as its intro socket;
/// the server keeps the other end and admits only the child's pid on it.
fn spawn_child(server: &Server, command: &[String]) -> Result<tokio::process::Child, BoxError> {
    let (ours, theirs) = uds_fdpass::FdStream::pair_with_owned()?;
    // Before the child exists, so that its very first bytes carry its
    // credentials.
    ours.set_pass_credentials(true)
        .map_err(|e| format!("cannot enable SO_PASSCRED on the child's socket: {e}"))?;
    let inheritable = uds_fdpass::inherit::inheritable(std::os::fd::AsFd::as_fd(&theirs))?;
    let fd_number = std::os::fd::AsRawFd::as_raw_fd(&inheritable);
    let child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env("OCAPN_UDS_INTRO_FD", fd_number.to_string())
        .env("OCAPN_UDS_INTRO_ID", server.designator().to_string())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", command[0]))?;
    drop(inheritable);
    drop(theirs);
    let pid = child
        .id()
        .ok_or("the child exited before it could be admitted")?;
    tracing::info!(pid, command = %command.join(" "), "started child with a private intro socket");
    server.serve_connection(ours, Some(pid as i32));
    Ok(child)
}
