//! A tiny socket server that confines itself once its socket is bound.
//!
//! ```sh
//! cargo run -p uds-sandbox --example confine            # mode auto
//! cargo run -p uds-sandbox --example confine -- require # or off
//! ```
//!
//! It binds `$XDG_RUNTIME_DIR/uds-sandbox-example/echo.sock` (or a directory
//! under the system's temporary directory), confines itself, shows that files
//! are out of reach while sockets still work, and removes its socket at the
//! end: the one filesystem change the policy allows.

use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use uds_sandbox::{Policy, SandboxMode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode: SandboxMode = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => SandboxMode::Auto,
    };
    let base = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => std::env::temp_dir(),
    };
    let dir = base.join("uds-sandbox-example");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let socket = dir.join("echo.sock");
    let _ = std::fs::remove_file(&socket);

    // Everything that needs the filesystem happens first...
    let listener = UnixListener::bind(&socket)?;

    // ...then, still on the only thread, the process confines itself.
    let report = Policy::new().allow_remove(&socket).confine(mode)?;
    println!("{}", report.status_line());

    match std::fs::read_to_string("/etc/hostname") {
        Ok(_) => println!("reading /etc/hostname: allowed"),
        Err(e) => println!("reading /etc/hostname: {e}"),
    }

    // Threads created now inherit the confinement. A client connects by
    // path (connecting to pathname sockets is not a filesystem access that
    // Landlock mediates before ABI 9; see `Policy::allow_connect`).
    let path = socket.clone();
    let client = std::thread::spawn(move || -> std::io::Result<String> {
        let mut c = UnixStream::connect(&path)?;
        c.write_all(b"hello")?;
        c.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        c.read_to_string(&mut answer)?;
        Ok(answer)
    });
    let (mut conn, _) = listener.accept()?;
    let mut got = Vec::new();
    conn.read_to_end(&mut got)?;
    conn.write_all(&got)?;
    drop(conn);
    let answer = client.join().map_err(|_| "the client thread panicked")??;
    println!("echoed through the socket: {answer}");

    // The one change the policy allows: removing our socket.
    drop(listener);
    std::fs::remove_file(&socket)?;
    println!("removed {}", socket.display());
    Ok(())
}
