//! The `uds-introd` command: run the introduction server, create keys,
//! query a running server, or run a program under a private server.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use uds_handshake::Identity;
use uds_introd::admin::{AdminSocket, default_admin_path};
use uds_introd::{
    ActiveListener, Config, Limits, ListenAddr, Listener, Policy, Server, default_socket_path,
};
use uds_sandbox::{Report, SandboxMode};
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
cleanly on SIGTERM, SIGINT or SIGHUP (unless started with SIGHUP ignored,
as by nohup), removing its socket files. Logs go to stderr;
set RUST_LOG (e.g. RUST_LOG=debug) for more detail.

Once its key is loaded and its sockets are bound, it confines itself
(--sandbox, default auto): no new privileges, no filesystem access except
removing its own socket files. Keep the key out of the sockets' directory.
`uds-introd status` shows what is in force on its `sandbox:` line.";

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
    /// Its directory is created 0700 if missing (0711 with --allow-uid or
    /// --allow-gid), must not be writable by others, and nobody else may
    /// control the directories and symlinks on the way to it.
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
    /// Confine the daemon once its key is loaded, its sockets are bound and
    /// (for `spawn`) its child started: no new privileges, and (Linux
    /// Landlock) no filesystem access except removing its own socket files
    /// at shutdown, no TCP/UDP, no connecting to abstract sockets or
    /// signalling processes outside its sandbox (signals stay allowed in
    /// `spawn`, to stop the child). `auto` applies what the kernel supports
    /// and logs what was applied, `require` refuses to start without all of
    /// it, `off` applies nothing. `status` shows what is in force.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse_sandbox)]
    sandbox: SandboxMode,
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
    /// Connections at once from one uid that have not registered yet
    /// [default: 128].
    #[arg(long, value_name = "N")]
    max_unregistered_per_uid: Option<usize>,
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
    /// How long an intro waits for its target, from its arrival: to register,
    /// then to take it [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    park_timeout: Option<Duration>,
    /// How long a client may take to read one intro sent to it before it is
    /// disconnected [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    send_timeout: Option<Duration>,
    /// Intros of one client refused within one park timeout (over its own
    /// budget, or toward a target whose park slots it fills itself) before
    /// that client is disconnected [default: 256].
    #[arg(long, value_name = "N")]
    max_refused_per_sender: Option<usize>,
    /// Server hints kept in each locator of a forwarded intro [default: 8].
    #[arg(long, value_name = "N")]
    max_forwarded_hints: Option<usize>,
    /// Admin connections at once [default: 8].
    #[arg(long, value_name = "N")]
    max_admin_connections: Option<usize>,
}

fn parse_sandbox(s: &str) -> Result<SandboxMode, String> {
    s.parse()
        .map_err(|e: uds_sandbox::ParseModeError| e.to_string())
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
            max_unregistered_per_uid => max_unregistered_per_uid,
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
    let result = match cli.command {
        None => daemon(cli.run, None),
        Some(Command::Spawn { run: args, command }) => daemon(*args, Some(command)),
        Some(Command::Keygen { file }) => keygen(&file),
        Some(Command::Status { admin, socket }) => status(admin, socket),
    };
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

fn status(admin: Option<PathBuf>, socket: Option<PathBuf>) -> Result<ExitCode, BoxError> {
    let path = match admin {
        Some(p) => p,
        None => default_admin_path(&match socket {
            Some(s) => s,
            None => default_socket_path()?,
        }),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let reply = runtime.block_on(uds_introd::admin::request(&path, "status"))?;
    print!("{reply}");
    Ok(ExitCode::SUCCESS)
}

/// Everything the daemon sets up before it confines itself: all that needs
/// the filesystem (or starting a program). Nothing here needs an async
/// runtime, and the process still has a single thread.
struct Prepared {
    identity: Arc<Identity>,
    config: Config,
    listeners: Vec<Listener>,
    admin: Option<AdminSocket>,
    /// The service manager's notification socket, already connected.
    notify: Option<UnixDatagram>,
    child: Option<SpawnedChild>,
    /// The runtime's worker threads, counted before confining (the CPU
    /// quota is read from files under /proc and /sys).
    workers: usize,
}

/// Runs the daemon in three phases: the setup that needs the filesystem, on
/// this single thread without an async runtime; confinement
/// (`--sandbox`), which applies to this thread and to every thread and
/// process it creates afterwards; then the multi-threaded runtime, whose
/// threads inherit the confinement, serving until told to stop.
fn daemon(args: RunArgs, spawn: Option<Vec<String>>) -> Result<ExitCode, BoxError> {
    // SIGTERM, SIGINT and SIGHUP stay pending from here until `serve` has its
    // handlers: one arriving while sockets are bound or a `spawn` child is
    // starting must still get a clean shutdown (sockets removed, child
    // stopped), not kill the daemon. The runtime's threads inherit the
    // mask; `serve` unblocks them on this thread, which then takes them.
    // Children do not inherit it: the standard library clears the signal
    // mask of every process it starts.
    // SIGHUP counts only if it is not ignored already (as under `nohup`):
    // a handler would replace the inherited disposition.
    let hangup = !sighup_ignored();
    stop_signals(hangup)
        .thread_block()
        .map_err(|e| format!("cannot block SIGTERM/SIGINT/SIGHUP until ready: {e}"))?;
    let prepared = prepare(&args, spawn.as_deref())?;
    let report = confine(args.sandbox, &prepared)?;
    tracing::info!("{}", report.status_line());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(prepared.workers)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(serve(args.wire, prepared, report, hangup))
}

/// Where the daemon listens (unless systemd passed its sockets) and where
/// its admin socket goes.
struct Addresses {
    listen: Option<Listen>,
    admin: Option<PathBuf>,
}

enum Listen {
    Path(PathBuf),
    Abstract(String),
}

/// Works out the daemon's addresses from the options (and the sockets
/// systemd passed), once, and refuses those no socket can have (too long,
/// control characters) before anything is created: a key, a directory or
/// another socket.
fn addresses(args: &RunArgs, spawn: bool, activated: &[Listener]) -> Result<Addresses, BoxError> {
    let listen = if !activated.is_empty() {
        if args.socket.is_some() || args.abstract_name.is_some() {
            tracing::warn!("socket activation in use: ignoring --socket/--abstract");
        }
        None
    } else if let Some(name) = &args.abstract_name {
        uds_introd::check_abstract_name(name)?;
        Some(Listen::Abstract(name.clone()))
    } else if let Some(path) = &args.socket {
        uds_introd::check_socket_path(path)?;
        Some(Listen::Path(path.clone()))
    } else if !spawn {
        let path = default_socket_path()?;
        uds_introd::check_socket_path(&path)?;
        Some(Listen::Path(path))
    } else {
        None
    };
    let admin = if args.no_admin {
        None
    } else {
        args.admin.clone().or_else(|| match &listen {
            Some(Listen::Path(p)) => Some(default_admin_path(p)),
            Some(Listen::Abstract(_)) => None,
            None => activated.iter().find_map(|l| match l.addr() {
                ListenAddr::Path(p) => Some(default_admin_path(p)),
                _ => None,
            }),
        })
    };
    if let Some(path) = &admin {
        uds_introd::check_socket_path(path).map_err(|e| admin_error(path, e))?;
    }
    Ok(Addresses { listen, admin })
}

/// An error about the admin socket at `path`, with what to do instead.
fn admin_error(path: &Path, e: impl std::fmt::Display) -> String {
    // Escaped: a control character must not split the line.
    format!(
        "admin socket {}: {e} (pass --admin PATH or --no-admin)",
        ListenAddr::Path(path.to_owned())
    )
}

/// The daemon's confinement: no filesystem access except removing the
/// socket files it created (beneath their directories), no TCP/UDP,
/// abstract-socket scoping, and signal scoping unless it must stop a
/// `spawn` child (started before confining, so outside its domain).
fn confine(mode: SandboxMode, prepared: &Prepared) -> Result<Report, BoxError> {
    let mut policy = uds_sandbox::Policy::new().scope_signals(prepared.child.is_none());
    for path in prepared.listeners.iter().filter_map(Listener::bound_path) {
        policy = policy.allow_remove(path);
    }
    if let Some(admin) = &prepared.admin {
        policy = policy.allow_remove(admin.path());
    }
    Ok(policy.confine(mode)?)
}

fn prepare(args: &RunArgs, spawn: Option<&[String]>) -> Result<Prepared, BoxError> {
    // Systemd sockets first: they must be claimed before anything else
    // could open fds with the same numbers.
    let activated = Listener::from_activation()?;
    // Settings that could serve nobody are refused before anything is
    // created (a key, a directory, a socket).
    let limits = args.limits.apply(Limits::default());
    limits.check()?;
    let addresses = addresses(args, spawn.is_some(), &activated)?;

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
    raise_fd_limit(limits.max_clients + limits.max_held_fds + 64);
    let config = Config {
        wire: args.wire,
        limits,
        policy: Policy {
            own_uid,
            allow_uids: args.allow_uid.clone(),
            allow_gids: args.allow_gid.clone(),
        },
        sandbox: None,
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
        match &addresses.listen {
            Some(Listen::Abstract(name)) => listeners.push(Listener::bind_abstract(name)?),
            Some(Listen::Path(path)) => listeners.push(Listener::bind_path(path, mode)?),
            None => {}
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
    }

    let admin = match &addresses.admin {
        Some(p) => Some(AdminSocket::bind(p).map_err(|e| admin_error(p, e))?),
        None => None,
    };
    let notify = notify_socket();
    let child = match spawn {
        Some(command) => Some(spawn_child(&identity, command)?),
        None => None,
    };
    Ok(Prepared {
        identity,
        config,
        listeners,
        admin,
        notify,
        child,
        workers: worker_threads(),
    })
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

/// The service manager's notification socket (`NOTIFY_SOCKET`: a path, or
/// `@name` for an abstract socket), connected now: once confined, the
/// daemon could not reach an abstract one (scoping), nor a path on kernels
/// that mediate pathname sockets.
fn notify_socket() -> Option<UnixDatagram> {
    let name = std::env::var_os("NOTIFY_SOCKET")?;
    let connect = || -> std::io::Result<UnixDatagram> {
        let socket = UnixDatagram::unbound()?;
        match name.as_bytes().strip_prefix(b"@") {
            Some(abstract_name) => {
                socket.connect_addr(&SocketAddr::from_abstract_name(abstract_name)?)?
            }
            None => socket.connect(&name)?,
        }
        Ok(socket)
    };
    match connect() {
        Ok(socket) => Some(socket),
        Err(e) => {
            tracing::warn!(
                "cannot reach the service manager's NOTIFY_SOCKET {}: {e}",
                name.to_string_lossy()
            );
            None
        }
    }
}

/// Serves until SIGTERM, SIGINT or SIGHUP, or until the `spawn` child
/// exits.
async fn serve(
    wire: WireProfile,
    prepared: Prepared,
    report: Report,
    hangup: bool,
) -> Result<ExitCode, BoxError> {
    // Handle the stop signals from before the ready line on, so a supervisor
    // that signals right after readiness gets a clean shutdown. SIGCHLD is
    // registered before the child's state is first looked at, so that its
    // exit cannot be missed.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // A closed terminal: there is no configuration to reload, so a hangup
    // stops the daemon, cleanly rather than by the default action (which
    // would leave the socket files and a `spawn` child behind) — unless it
    // was started with SIGHUP ignored, which stays so.
    let mut hup = match hangup {
        true => Some(signal(SignalKind::hangup())?),
        false => None,
    };
    // Handled from now on: take any that arrived while they were blocked.
    stop_signals(hangup)
        .thread_unblock()
        .map_err(|e| format!("cannot unblock SIGTERM/SIGINT/SIGHUP: {e}"))?;
    let mut sigchld = match prepared.child {
        Some(_) => Some(signal(SignalKind::child())?),
        None => None,
    };
    let Prepared {
        identity,
        mut config,
        listeners,
        admin,
        notify,
        mut child,
        ..
    } = prepared;
    config.sandbox = Some(report);
    let server = Server::new(identity, config);
    let listeners = listeners
        .into_iter()
        .map(Listener::activate)
        .collect::<Result<Vec<ActiveListener>, _>>()?;
    for l in &listeners {
        tracing::info!(socket = %l.addr(), id = %server.designator(), wire = %wire, "listening");
    }
    if let Some(a) = &admin {
        tracing::info!(admin = %a.path().display(), "admin socket ready");
    }

    match child.as_mut() {
        Some(c) => c.admit(&server)?,
        None => {
            let socket = listeners
                .first()
                .map(|l| l.addr().to_string())
                .unwrap_or_default();
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "uds-introd ready socket={socket} id={} wire={wire}",
                server.designator(),
            )?;
            out.flush()?;
        }
    }
    if let Some(notify) = &notify
        && let Err(e) = notify.send(b"READY=1\n")
    {
        tracing::warn!("could not notify the service manager: {e}");
    }

    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        let server = server.clone();
        tasks.spawn(async move {
            server.serve(l.listener()).await;
            drop(l); // removes the socket file
        });
    }
    if let Some(mut a) = admin {
        let server = server.clone();
        tasks.spawn(async move { a.serve(&server).await });
    }

    let code = tokio::select! {
        _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); ExitCode::SUCCESS }
        _ = int.recv() => { tracing::info!("SIGINT: shutting down"); ExitCode::SUCCESS }
        _ = async {
            match hup.as_mut() {
                Some(hup) => hup.recv().await,
                None => std::future::pending().await,
            }
        } => { tracing::info!("SIGHUP: shutting down"); ExitCode::SUCCESS }
        status = async {
            match (child.as_mut(), sigchld.as_mut()) {
                (Some(c), Some(sigchld)) => c.exited(sigchld).await,
                _ => std::future::pending().await,
            }
        } => {
            let status = status?;
            tracing::info!("child exited ({status}): shutting down");
            status.code().map_or(ExitCode::FAILURE, |c| ExitCode::from(c.clamp(0, 255) as u8))
        }
    };
    if let Some(c) = child.take() {
        // Stops the child if it still runs (SIGKILL), and reaps it.
        tokio::task::spawn_blocking(move || drop(c)).await?;
    }
    server.shutdown();
    // Let the tasks close their sockets and remove their files.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(code)
}

/// The signals that stop the daemon: SIGTERM, SIGINT and (if `hangup`)
/// SIGHUP.
fn stop_signals(hangup: bool) -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    if hangup {
        set.add(Signal::SIGHUP);
    }
    set
}

/// Whether this process started with SIGHUP ignored (`nohup`, or a parent
/// that ignores it): bit 0 of `SigIgn:` in `/proc/self/status`. False when
/// that cannot be read.
fn sighup_ignored() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .is_some_and(|mask| mask & 1 << (nix::libc::SIGHUP - 1) != 0)
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
                    "the fd limit ({hard}) is below --max-clients + --max-held-fds + 64 for its own use ({needed}): \
                     under full load new connections will fail; raise RLIMIT_NOFILE \
                     (LimitNOFILE= in systemd) or lower those limits"
                );
            }
        }
        Err(e) => tracing::warn!("cannot read the fd limit: {e}"),
    }
}

/// The child started by `spawn`, with the daemon's end of its intro
/// socket. Dropping it stops the child (SIGKILL) unless it has exited, and
/// reaps it.
struct SpawnedChild {
    child: std::process::Child,
    /// The daemon's end of the child's intro socket, until it is served.
    ours: Option<OwnedFd>,
    exited: bool,
}

/// Starts `command` with one end of a fresh socketpair as its intro socket
/// (`OCAPN_UDS_INTRO_FD`) and the daemon's id in `OCAPN_UDS_INTRO_ID`. Runs
/// before the daemon confines itself, which forbids executing programs.
fn spawn_child(identity: &Identity, command: &[String]) -> Result<SpawnedChild, BoxError> {
    let (ours, theirs) = uds_fdpass::socketpair()?;
    // Before the child exists, so that its very first bytes carry its
    // credentials.
    uds_fdpass::set_pass_credentials(&ours, true)
        .map_err(|e| format!("cannot enable SO_PASSCRED on the child's socket: {e}"))?;
    let inheritable = uds_fdpass::inherit::inheritable(&theirs)?;
    let child = std::process::Command::new(&command[0])
        .args(&command[1..])
        .env("OCAPN_UDS_INTRO_FD", inheritable.as_raw_fd().to_string())
        .env("OCAPN_UDS_INTRO_ID", identity.designator().to_string())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", command[0]))?;
    drop(inheritable);
    drop(theirs);
    tracing::info!(pid = child.id(), command = %command.join(" "), "started child with a private intro socket");
    Ok(SpawnedChild {
        child,
        ours: Some(ours),
        exited: false,
    })
}

impl SpawnedChild {
    /// Serves the child's intro socket, admitting only the child's pid on
    /// it. Must run inside the runtime.
    fn admit(&mut self, server: &Server) -> Result<(), BoxError> {
        let ours = self
            .ours
            .take()
            .ok_or("the child's socket is already served")?;
        let stream = uds_fdpass::FdStream::try_from_fd(ours)?;
        server.serve_connection(stream, Some(self.child.id() as i32));
        Ok(())
    }

    /// Waits until the child exits and reaps it. `sigchld` must have been
    /// registered before this is first called.
    async fn exited(
        &mut self,
        sigchld: &mut tokio::signal::unix::Signal,
    ) -> std::io::Result<std::process::ExitStatus> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.exited = true;
                return Ok(status);
            }
            if sigchld.recv().await.is_none() {
                return Err(std::io::Error::other("the signal driver is gone"));
            }
        }
    }
}

impl Drop for SpawnedChild {
    fn drop(&mut self) {
        if !self.exited {
            // The child is not reaped yet, so its pid cannot have been
            // reused: the signal reaches the child.
            if let Err(e) = self.child.kill() {
                tracing::warn!(pid = self.child.id(), "could not stop the child: {e}");
            }
            let _ = self.child.wait();
        }
    }
}
