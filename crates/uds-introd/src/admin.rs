//! The admin socket: a `SOCK_SEQPACKET` socket private to the daemon's user.
//!
//! Protocol: the client sends one packet with a command (`status`); the
//! daemon answers with one or more packets of UTF-8 text and a last packet
//! `end`. Clients whose uid is neither the daemon's nor root are refused;
//! at most `max_admin_connections` are served at once, each for at most
//! [`ADMIN_TIMEOUT`].

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use nix::sys::socket::SockType;
use tokio_seqpacket::{UnixSeqpacket, UnixSeqpacketListener};

use crate::listen::{BoundPath, ListenError, escape, prepare_socket_path};
use crate::server::{Server, Status};

/// The largest reply packet.
const PACKET: usize = 16 << 10;
/// The packet that ends a reply.
pub const END: &[u8] = b"end";
/// How long an admin client has to send its request, and the longest a
/// reply may take to be read.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest reply [`request`] accepts (a status of about 500,000
/// peers); a longer one is an error, not an unbounded allocation.
pub const MAX_REPLY: usize = 64 << 20;

/// The admin socket path that goes with a listening socket path.
pub fn default_admin_path(socket: &Path) -> PathBuf {
    let mut p = socket.as_os_str().to_owned();
    p.push(".admin");
    PathBuf::from(p)
}

/// A bound admin socket; its file is removed when dropped (unless another
/// process has replaced it).
///
/// Binding needs no async runtime, so that the daemon can bind it before it
/// confines itself; [`serve`](AdminSocket::serve) registers it with the
/// runtime it runs in.
#[derive(Debug)]
pub struct AdminSocket {
    /// The listening socket, until `serve` registers it with the runtime.
    listener: Option<OwnedFd>,
    bound: BoundPath,
}

impl AdminSocket {
    /// Binds the admin socket at `path` (mode 0600), by the same rules as the
    /// listening socket: a private directory, and a leftover file removed
    /// only if it is a socket on which nobody answers.
    pub fn bind(path: &Path) -> Result<AdminSocket, ListenError> {
        use nix::sys::socket::{AddressFamily, Backlog, SockFlag, UnixAddr, bind, listen, socket};
        let what = |w: &str| format!("{w} admin socket {}", path.display());
        let _lock = prepare_socket_path(path, SockType::SeqPacket)?;
        let io = |w: &'static str| {
            move |e: nix::errno::Errno| ListenError::Io {
                what: what(w),
                source: e.into(),
            }
        };
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(io("create"))?;
        let addr = UnixAddr::new(path).map_err(io("address of"))?;
        bind(fd.as_raw_fd(), &addr).map_err(io("bind"))?;
        let bound = BoundPath::new(path).map_err(|source| ListenError::Io {
            what: what("stat"),
            source,
        })?;
        listen(&fd, Backlog::new(128).map_err(io("listen on"))?).map_err(io("listen on"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| ListenError::Io {
                what: what("chmod"),
                source,
            },
        )?;
        Ok(AdminSocket {
            listener: Some(fd),
            bound,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        self.bound.path()
    }

    /// Answers admin requests until the server shuts down. Must run inside
    /// a tokio runtime; it returns at once if the socket cannot be
    /// registered with it (logged) or was already served.
    pub async fn serve(&mut self, server: &Server) {
        let Some(fd) = self.listener.take() else {
            return;
        };
        let mut listener = match UnixSeqpacketListener::try_from(fd) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("admin socket: cannot register it with the runtime: {e}");
                return;
            }
        };
        let own_uid = nix::unistd::geteuid().as_raw();
        let max = server.config().limits.max_admin_connections;
        let active = Arc::new(AtomicUsize::new(0));
        loop {
            let conn = tokio::select! {
                _ = server.stopped() => return,
                c = listener.accept() => c,
            };
            let conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match uds_fdpass::peer_credentials(conn.as_fd()) {
                Ok(c) if c.uid == own_uid || c.uid == 0 => {}
                Ok(c) => {
                    tracing::warn!(
                        pid = c.pid,
                        uid = c.uid,
                        "refused an admin client: not the daemon's user"
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!("refused an admin client: cannot read its credentials: {e}");
                    continue;
                }
            }
            if active.fetch_add(1, Ordering::Relaxed) >= max {
                active.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(
                    "refused an admin client: {max} admin connections are open \
                     (--max-admin-connections)"
                );
                continue;
            }
            let server = server.clone();
            let active = active.clone();
            tokio::spawn(async move {
                let served = tokio::time::timeout(ADMIN_TIMEOUT, answer(&conn, &server)).await;
                active.fetch_sub(1, Ordering::Relaxed);
                match served {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!("admin client: {e}"),
                    Err(_) => tracing::debug!("admin client: timed out"),
                }
            });
        }
    }
}

async fn answer(conn: &UnixSeqpacket, server: &Server) -> io::Result<()> {
    let mut buf = [0u8; 256];
    let info = conn.recv(&mut buf).await?;
    let n = info.bytes_read();
    let reply = if info.truncated() {
        "error: request too long\n".to_owned()
    } else {
        match std::str::from_utf8(&buf[..n]).map(str::trim) {
            Ok("status") => render_status(&server.status()),
            Ok(other) => format!("error: unknown command {other:?}; known: status\n"),
            Err(_) => "error: the request is not UTF-8\n".to_owned(),
        }
    };
    let mut packet = String::new();
    for line in reply.lines() {
        if packet.len() + line.len() + 1 > PACKET {
            conn.send(packet.as_bytes()).await?;
            packet.clear();
        }
        packet.push_str(line);
        packet.push('\n');
    }
    if !packet.is_empty() {
        conn.send(packet.as_bytes()).await?;
    }
    conn.send(END).await?;
    Ok(())
}

/// The text of a `status` reply: one `key: value` line per item (`id`
/// first, then `sandbox` when the status has a confinement report), then
/// one `peer:` line per registered peer.
pub fn render_status(s: &Status) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(&v);
        out.push('\n');
    };
    let r = &s.router;
    let c = &r.counters;
    line("id", s.id.to_string());
    if let Some(report) = &s.sandbox {
        line("sandbox", report.to_string());
    }
    line("uptime-seconds", s.uptime.as_secs().to_string());
    line("clients", r.clients.to_string());
    line("unregistered", r.unregistered.to_string());
    line("registered", r.registered.to_string());
    line("accepted", c.accepted.to_string());
    line("registrations", c.registrations.to_string());
    line("intros-received", c.intros_received.to_string());
    line("intros-forwarded", c.intros_forwarded.to_string());
    line("intros-parked", c.intros_parked.to_string());
    line("intros-dropped", c.intros_dropped.to_string());
    line("intros-waiting", r.parked.to_string());
    line("intros-queued", r.queued.to_string());
    line("sockets-held", r.held_fds.to_string());
    line("intro-bytes-held", r.held_bytes.to_string());
    line("senders-paused", r.paused.to_string());
    line("senders-paused-total", c.senders_paused.to_string());
    line("extra-fds-closed", c.extra_fds_closed.to_string());
    let refusals: Vec<String> = c
        .all_refusals()
        .map(|(reason, n)| format!("{}={n}", reason.name()))
        .collect();
    line("refused", refusals.join(" "));
    for p in &s.peers {
        let since = p
            .since
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        line(
            "peer",
            format!(
                "{} pid={} uid={} gid={} since={}",
                p.designator, p.creds.pid, p.creds.uid, p.creds.gid, since
            ),
        );
    }
    out
}

/// Sends `command` to the admin socket at `path` and returns the reply text.
pub async fn request(path: &Path, command: &str) -> io::Result<String> {
    let conn = UnixSeqpacket::connect(path).await.map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::PermissionDenied => {
                "the admin socket is private to the user the daemon runs as: run this as that user"
            }
            _ => "is uds-introd running? pass --admin PATH",
        };
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach the admin socket {}: {e} ({hint})",
                path.display()
            ),
        )
    })?;
    conn.send(command.as_bytes()).await?;
    let mut reply = String::new();
    let mut buf = vec![0u8; PACKET + 64];
    loop {
        let n = tokio::time::timeout(ADMIN_TIMEOUT, conn.recv(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the daemon did not answer"))??
            .bytes_read();
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the admin connection mid-reply",
            ));
        }
        if &buf[..n] == END {
            return Ok(reply);
        }
        if reply.len() + n > MAX_REPLY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the reply from {} is longer than {MAX_REPLY} bytes: is that really \
                     uds-introd's admin socket?",
                    escape(&path.to_string_lossy())
                ),
            ));
        }
        reply.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}
