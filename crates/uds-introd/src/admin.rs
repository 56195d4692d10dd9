//! The admin socket: a `SOCK_SEQPACKET` socket private to the daemon's user.
//!
//! Protocol: the client sends one packet with a command (`status`); the
//! daemon answers with one or more packets of UTF-8 text and a last packet
//! `end`. Clients whose uid is neither the daemon's nor root are refused.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use tokio_seqpacket::{UnixSeqpacket, UnixSeqpacketListener};

use crate::server::{Server, Status};

/// The largest reply packet.
const PACKET: usize = 16 << 10;
/// The packet that ends a reply.
pub const END: &[u8] = b"end";

/// The admin socket path that goes with a listening socket path.
pub fn default_admin_path(socket: &Path) -> PathBuf {
    let mut p = socket.as_os_str().to_owned();
    p.push(".admin");
    PathBuf::from(p)
}

/// A bound admin socket; its file is removed when dropped.
#[derive(Debug)]
pub struct AdminSocket {
    listener: UnixSeqpacketListener,
    path: PathBuf,
}

impl AdminSocket {
    /// Binds the admin socket at `path` (mode 0600). A leftover socket file
    /// is replaced only if nobody answers on it.
    pub async fn bind(path: &Path) -> io::Result<AdminSocket> {
        if path.exists() {
            match UnixSeqpacket::connect(path).await {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("another daemon answers on admin socket {}", path.display()),
                    ));
                }
                Err(_) => std::fs::remove_file(path)?,
            }
        }
        let listener = UnixSeqpacketListener::bind(path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(AdminSocket {
            listener,
            path: path.to_owned(),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers admin requests until the server shuts down.
    pub async fn serve(&mut self, server: &Server) {
        let own_uid = nix::unistd::geteuid().as_raw();
        loop {
            let conn = tokio::select! {
                _ = server.stopped() => return,
                c = self.listener.accept() => c,
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
            let server = server.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(&conn, &server).await {
                    tracing::debug!("admin client: {e}");
                }
            });
        }
    }
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn answer(conn: &UnixSeqpacket, server: &Server) -> io::Result<()> {
    let mut buf = [0u8; 256];
    let info = tokio::time::timeout(Duration::from_secs(5), conn.recv(&mut buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request"))??;
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

/// The text of a `status` reply: one `key: value` line per item, then one
/// `peer:` line per registered peer.
pub fn render_status(s: &Status) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(&v);
        out.push('\n');
    };
    line("id", s.id.to_string());
    line("uptime-seconds", s.uptime.as_secs().to_string());
    line("clients", s.clients.to_string());
    line("unregistered", s.unregistered.to_string());
    line("registered", s.peers.len().to_string());
    line("accepted", s.accepted.to_string());
    line("registrations", s.registrations.to_string());
    line("intros-forwarded", s.intros_forwarded.to_string());
    line("intros-parked", s.intros_parked.to_string());
    line("intros-waiting", s.parked_now.to_string());
    let refusals: Vec<String> = s
        .refusals
        .iter()
        .map(|(name, n)| format!("{name}={n}"))
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
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach the admin socket {}: {e} (is uds-introd running? pass --admin PATH)",
                path.display()
            ),
        )
    })?;
    conn.send(command.as_bytes()).await?;
    let mut reply = String::new();
    let mut buf = vec![0u8; PACKET + 64];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.recv(&mut buf))
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
        reply.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}
